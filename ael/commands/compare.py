"""``ael compare``: the same data, model and budget for several methods over several seeds.

Examples::

    ael compare --config synthetic_cpu --methods supervised,mean_teacher,cutmix_seg,ael --seeds 0,1,2 --jobs 2
    ael compare --config cityscapes --methods supervised,ael --seeds 0,1,2 --dry-run   # one `ael train` per run

Each method is an overlay of ``configs/ablations`` or a method name; each (method, seed) is a normal
run folder ``OUT/<group>-<method>-s<seed>`` whose manifest records the group. ``--jobs N`` trains N at
a time, splitting the cores between them; ``--dry-run`` prints the commands (for a cluster scheduler).
Running the same command again skips finished runs and resumes interrupted ones; Ctrl-C stops every
run cleanly (each writes a checkpoint). At the end ``OUT/summary.csv`` (one row per run, model and
evaluation: final and best) and ``OUT/summary.md`` (mean ± std over seeds, paired differences to the
first method) are written and the summary printed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ael.config import ConfigError, load_presets, resolve_preset
from ael.config.methods import registered_method_names
from ael.runs import RunStoreError, list_runs
from ael.runs.groups import group_rows, summarize_group, write_group_csv

__all__ = ["PlannedRun", "cli_main", "plan_runs"]


@dataclass(frozen=True)
class PlannedRun:
    """One (method, seed) of a comparison and the command that trains it."""

    method: str
    seed: int
    run_dir: Path
    command: list[str]

    def shell(self) -> str:
        """The command as one shell line."""
        return shlex.join(self.command)


def _method_overlay(method: str) -> list[str]:
    """``--config`` arguments that select ``method``: its ablation overlay, else ``method.name``."""
    shipped = resolve_preset(f"ablations/{method}")
    if shipped.is_file():
        return ["--config", str(shipped)]
    if method in registered_method_names():
        return []
    raise ConfigError(f"--methods: {method!r} is neither an overlay of configs/ablations nor a method "
                      f"({', '.join(registered_method_names())})")


def plan_runs(configs: Sequence[str], methods: Sequence[str], seeds: Sequence[int], out: Path, group: str,
              overrides: Sequence[str]) -> list[PlannedRun]:
    """One run per method and seed, each checked now (a bad config fails before anything trains)."""
    plans = []
    overlays = {method: _method_overlay(method) for method in methods}
    # Seed by seed, so that a partial comparison already pairs every method on the same seeds.
    for seed in seeds:
        for method in methods:
            overlay = overlays[method]
            name = f"{group}-{method}-s{seed}"
            extra = [*overrides, f"train.seed={seed}", f"run.runs_dir={out}", f"run.name={name}",
                     f"run.group={group}", *([] if overlay else [f"method.name={method}"])]
            load_presets([*configs, *overlay[1::2]], extra)
            run_dir = out / name
            if (run_dir / "manifest.json").is_file():
                command = ["ael", "train", "--resume", str(run_dir), "--no-progress"]
            else:
                command = ["ael", "train", *[a for c in configs for a in ("--config", c)], *overlay,
                           "--no-progress", *extra]
            plans.append(PlannedRun(method, seed, run_dir, command))
    return plans


def _finished(out: Path) -> set[str]:
    try:
        return {r.run_id for r in list_runs(out) if r.status == "finished"}
    except RunStoreError:
        return set()


def _run_all(plans: Sequence[PlannedRun], jobs: int, log_dir: Path) -> int:
    """Train ``plans`` ``jobs`` at a time; returns how many failed. Ctrl-C stops them with a checkpoint."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pending, running, failed = list(plans), [], 0
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                plan = pending.pop(0)
                log = open(log_dir / f"{plan.run_dir.name}.log", "a", encoding="utf-8")  # noqa: SIM115
                command = [sys.executable, "-m", "ael.cli", *plan.command[1:]]
                print(f"ael compare: start {plan.run_dir.name} ({threads} threads, log {log.name})", flush=True)
                # Own session: a Ctrl-C in the terminal reaches only this process, which then sends each
                # run one SIGTERM (a second signal would make a run abort without its checkpoint).
                proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                running.append((plan, proc, log))
            time.sleep(1.0)
            for item in list(running):
                plan, proc, log = item
                if proc.poll() is not None:
                    running.remove(item)
                    log.close()
                    failed += proc.returncode != 0
                    print(f"ael compare: {plan.run_dir.name} "
                          f"{'done' if proc.returncode == 0 else f'exited {proc.returncode}'}", flush=True)
    except KeyboardInterrupt:
        print("ael compare: stopping every run (each writes a checkpoint; run the command again to resume)",
              file=sys.stderr, flush=True)
        for _, proc, _ in running:
            proc.send_signal(signal.SIGTERM)
        for _, proc, log in running:
            proc.wait()
            log.close()
        raise
    return failed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ael compare", description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="dataset preset and overlays shared by every run (as for ael train)")
    parser.add_argument("--methods", default="supervised,mean_teacher,cutmix_seg,ael",
                        help="comma-separated overlays of configs/ablations or method names; the first is the "
                             "baseline of the paired differences (default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at a time (the cores are split)")
    parser.add_argument("--out", default=None, help="folder of the runs and summaries (default: runs/compare-<group>)")
    parser.add_argument("--group", default=None, help="the group name (default: the preset names)")
    parser.add_argument("--dry-run", action="store_true", help="print one `ael train` command per run and stop")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides for every run")
    return parser


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``ael compare``; returns the exit code."""
    args = _parser().parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds: {args.seeds!r} is not a comma-separated list of integers") from None
    if not methods or not seeds or args.jobs < 1:
        raise ConfigError("--methods and --seeds need at least one entry each, --jobs at least 1")
    group = args.group or "-".join(Path(c).stem for c in args.config) or "synthetic"
    out = Path(args.out or Path("runs") / f"compare-{group}").absolute()
    plans = plan_runs(args.config, methods, seeds, out, group, args.overrides)
    if args.dry_run:
        for plan in plans:
            print(plan.shell())
        return 0
    done = _finished(out)
    todo = [p for p in plans if p.run_dir.name not in done]
    print(f"ael compare: {len(plans)} runs in {out} ({len(plans) - len(todo)} finished, {len(todo)} to train)")
    failed = _run_all(todo, args.jobs, out / ".logs")
    rows = group_rows(out, group, labels={p.run_dir.name: p.method for p in plans})
    write_group_csv(rows, out / "summary.csv")
    summary = summarize_group(rows, methods=methods)
    (out / "summary.md").write_text(summary + "\n", encoding="utf-8")
    print(summary)
    print(f"\nwritten: {out / 'summary.csv'}, {out / 'summary.md'}")
    return 1 if failed else 0
