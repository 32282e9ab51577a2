"""A/B of the dashboard at two git revisions: fresh-browser opens of one page, alternated.

Each round starts one server per revision (``ael dashboard``'s command line serving that revision's
``app/``, taken with ``git archive``; the ``ael`` library is the installed one), opens the page once to
warm the server, then times ``--opens`` fresh opens (a new browser context each: nothing cached;
request -> fully drawn, by ``dashboard_load.py``'s rules). Rounds alternate the revisions, so a slow
phase of a shared machine falls on both.

Pages:

- ``confidence``: the confidence page of a ``--steps`` (40 000) x ``--classes`` (150) run;
- ``compare``: the comparison page of four finished runs of one group (two methods x two seeds,
  ``--compare-steps`` x ``--compare-classes``), all four chosen.

Usage::

    python benchmarks/dashboard_ab.py d47046f 913307f --page confidence --rounds 4 --opens 4

Prints each revision's median and every time; nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from dashboard_floor import Server, fresh_open
from dashboard_load import CHROMIUM, CHROMIUM_ARGS, COMPARE_DRAWN, COMPARE_RUNS, DRAWN, write_run

REPO = Path(__file__).resolve().parents[1]


def app_at(revision: str, folder: Path) -> Path:
    """The dashboard's ``app/`` at ``revision``, unpacked under ``folder``: its ``dashboard.py``."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "app"], capture_output=True, check=False)
    if archive.returncode:
        raise SystemExit(f"git archive {revision} app: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(folder), "--strip-components=1"], input=archive.stdout, check=True)
    return folder / "dashboard.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="git revision A")
    parser.add_argument("b", help="git revision B")
    parser.add_argument("--page", choices=("confidence", "compare"), default="confidence")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--opens", type=int, default=4, help="timed fresh opens per revision and round")
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--classes", type=int, default=150)
    parser.add_argument("--compare-steps", type=int, default=20_000)
    parser.add_argument("--compare-classes", type=int, default=21)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.opens < 1:
        parser.error(f"--rounds and --opens must be at least 1, got {args.rounds} and {args.opens}")

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        apps = {rev: app_at(rev, Path(tmp) / f"app-{n}") for n, rev in enumerate((args.a, args.b))}
        runs = Path(tmp) / "runs"
        if args.page == "confidence":
            write_run(runs, args.steps, args.classes, 10).finish()
            path, drawn = "/confidence?run=long-wide", DRAWN
        else:
            for run_id, method, seed in COMPARE_RUNS:
                write_run(runs, args.compare_steps, args.compare_classes, 10, run_id=run_id, seed=seed,
                          method=method, group="bench").finish()
            ids = [run_id for run_id, _, _ in COMPARE_RUNS]
            path = f"/compare?run={ids[0]}" + "".join(f"&compare={r}" for r in ids[1:])
            drawn = f"({COMPARE_DRAWN})({len(ids)})"
        times: dict[str, list[float]] = {rev: [] for rev in apps}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(args.rounds):
                for rev, app in apps.items():
                    with Server(runs, app) as server:
                        fresh_open(browser, server.url + path, drawn)  # the server reads the runs
                        times[rev] += [fresh_open(browser, server.url + path, drawn) for _ in range(args.opens)]
            browser.close()
    print(f"{args.page} page, fresh browser, request -> fully drawn, {args.rounds} rounds x {args.opens} opens:")
    for rev, walls in times.items():
        print(f"  {rev}: median {statistics.median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f}) "
              f"[{', '.join(f'{w:.2f}' for w in walls)}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
