"""Comparing runs fairly: evaluations at a step every run reached, the config keys that differ,
curves pooled over seeds, the tail mean; and a run's overview read cheaply for a runs table.

The comparisons are pure functions over what :class:`ael.runs.Run` returns (evaluation records,
config dicts, arrays), shared by the dashboard's Compare page and the notebooks, so "compared at
step N" and "the tail mean" mean the same thing in every view. :func:`read_overview` reads only a
run's manifest and evaluations (not its scalars, vectors or samples), so a table of many long
runs costs a few small files each.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ael.runs.classes import tail_classes
from ael.runs.jsonl import JsonlTail
from ael.runs.manifest import read_manifest
from ael.runs.records import EvalRecord
from ael.runs.schema import EVALS_FILE, MANIFEST_FILE, resolve_run_dir
from ael.runs.streams import EvalStream

__all__ = [
    "ABSENT",
    "RunOverview",
    "config_diff",
    "evals_at",
    "flatten_config",
    "key_config",
    "matched_step",
    "mean_curve",
    "overview_stamp",
    "read_overview",
    "tail_mean",
]

#: What :func:`config_diff` shows for a key a run's config does not have.
ABSENT = "(absent)"


def matched_step(evals: Mapping[str, Sequence[EvalRecord]]) -> int | None:
    """The last evaluation step every run has: the step at which they can be compared fairly.

    Args:
        evals: run id -> that run's evaluations (of one model), in any order.

    Returns:
        The highest step present in every run's evaluations; None when there is no run, a run
        has no evaluation or they share no step.
    """
    if not evals:
        return None
    shared: set[int] | None = None
    for records in evals.values():
        steps = {int(r.step) for r in records}
        shared = steps if shared is None else shared & steps
    return max(shared) if shared else None


def evals_at(evals: Mapping[str, Sequence[EvalRecord]], step: int | None) -> dict[str, EvalRecord]:
    """Run id -> its evaluation at ``step`` (runs without one left out); with ``step`` None,
    each run's own final (last) evaluation."""
    out = {}
    for run_id, records in evals.items():
        if not records:
            continue
        if step is None:
            out[run_id] = max(records, key=lambda r: r.step)
            continue
        at = [r for r in records if r.step == step]
        if at:
            out[run_id] = at[-1]
    return out


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"train.iterations": 2000, ...}``; lists are kept as values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _same(a: Any, b: Any) -> bool:
    # JSON gives True and 1 apart only by type: a flag switched to a count is a difference.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def config_diff(configs: Mapping[str, Mapping[str, Any]],
                ignore: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """The config keys whose values differ between runs, one value per run.

    Args:
        configs: run id -> its (nested) config.
        ignore: dotted keys left out (e.g. ``run.name``, which always differs).

    Returns:
        Dotted key -> run id -> value (:data:`ABSENT` where a run's config lacks the key), for
        the keys that are not the same in every run, sorted by key; empty for fewer than two runs.
    """
    if len(configs) < 2:
        return {}
    flat = {run_id: flatten_config(config) for run_id, config in configs.items()}
    keys = sorted(set().union(*(f.keys() for f in flat.values())) - set(ignore))
    diff = {}
    for key in keys:
        values = {run_id: f.get(key, ABSENT) for run_id, f in flat.items()}
        first, *rest = values.values()
        if not all(_same(first, v) for v in rest):
            diff[key] = values
    return diff


def key_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a runs table shows: ``iterations``, ``seed``, ``backbone``, ``labeled``
    (labeled images of the synthetic set, else the split's labeled count or list), ``eval every``;
    None where the config does not say."""
    train = config.get("train") or {}
    data = config.get("data") or {}
    split = data.get("split") or {}
    labeled = split.get("labeled") or split.get("labeled_list")
    if labeled is None and data.get("dataset") == "synthetic":
        labeled = (data.get("synthetic") or {}).get("num_labeled")
    return {"iterations": train.get("iterations"), "seed": train.get("seed"),
            "backbone": (config.get("model") or {}).get("backbone"), "labeled": labeled,
            "eval every": (train.get("eval") or {}).get("every")}


def tail_mean(iou: np.ndarray, frequencies: np.ndarray | None) -> float:
    """Mean IoU of the tail classes (:func:`ael.runs.classes.tail_classes`) that were evaluated;
    NaN without frequencies, tail classes or a finite IoU among them."""
    if frequencies is None:
        return float("nan")
    iou = np.asarray(iou, dtype=np.float64)
    tails = np.asarray(tail_classes(list(frequencies)), dtype=bool)
    if tails.shape != iou.shape:
        return float("nan")
    picked = iou[tails]
    picked = picked[np.isfinite(picked)]
    return float(picked.mean()) if picked.size else float("nan")


def mean_curve(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Several seeds' curves pooled at each step: the mean, the standard deviation and the count.

    Args:
        curves: ``(steps (T_i,), values (T_i,))`` per seed.

    Returns:
        ``(steps, mean, std, count)`` over the union of the steps, sorted; at each step only the
        seeds that have it (and a finite value) count; std is the sample std (``ddof=1``), 0
        where one seed has the step.
    """
    steps = np.unique(np.concatenate([np.asarray(s, dtype=np.int64) for s, _ in curves])) if curves else \
        np.zeros(0, dtype=np.int64)
    table = np.full((len(curves), len(steps)), np.nan)
    for i, (s, v) in enumerate(curves):
        table[i, np.searchsorted(steps, np.asarray(s, dtype=np.int64))] = np.asarray(v, dtype=np.float64)
    count = np.sum(np.isfinite(table), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a step no seed has a value at: NaN
        mean = np.nanmean(table, axis=0) if len(curves) else np.zeros(0)
        std = np.where(count > 1, np.nanstd(table, axis=0, ddof=1), 0.0) if len(curves) else np.zeros(0)
    return steps, mean, np.where(count > 0, std, np.nan), count


@dataclass(frozen=True)
class RunOverview:
    """What a runs table shows of a run without opening it: its config, the evaluations of the
    model it is compared by (the teacher's, else every model's; the latest per step, by step) and
    the labeled pixel share of each class the trainer recorded (None when it did not)."""

    config: dict[str, Any]
    evals: list[EvalRecord]
    frequencies: np.ndarray | None


def overview_stamp(runs_dir: str | os.PathLike[str], run_id: str) -> tuple[int, ...]:
    """Changes whenever :func:`read_overview` could read something new (size and mtime of the
    manifest and of the evaluations); a cache key."""
    run_dir = resolve_run_dir(runs_dir, run_id)
    stamp: list[int] = []
    for name in (MANIFEST_FILE, EVALS_FILE):
        try:
            st = (run_dir / name).stat()
            stamp += [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp += [-1, -1]
    return tuple(stamp)


def read_overview(runs_dir: str | os.PathLike[str], run_id: str) -> RunOverview:
    """A run's :class:`RunOverview` from its manifest and ``evals.jsonl`` only.

    Raises:
        RunStoreError: an unsafe id or an unreadable manifest; SchemaVersionError.
    """
    run_dir = Path(resolve_run_dir(runs_dir, run_id))
    manifest = read_manifest(run_dir)
    stream = EvalStream()
    records, _ = JsonlTail(run_dir / EVALS_FILE).poll()
    stream.add(records)
    model = "teacher" if any(r.model == "teacher" for r in stream.records) else None
    latest = {(r.step, r.model): r for r in stream.records if model is None or r.model == model}
    evals = [latest[k] for k in sorted(latest)]
    names = manifest.get("class_names") or []
    frequencies = (manifest.get("extra") or {}).get("class_frequencies")
    try:
        frequencies = (np.asarray(frequencies, dtype=np.float64)
                       if isinstance(frequencies, list) and len(frequencies) == len(names) and names else None)
    except (TypeError, ValueError):
        frequencies = None
    return RunOverview(config=manifest.get("config") or {}, evals=evals, frequencies=frequencies)
