"""A comparison group read back: one row per run, model and evaluation, and the over-seed summary.

The runs of one ``ael compare`` share a group name (recorded in each manifest). :func:`group_rows`
reads their final and best evaluations (best by :func:`ael.runs.best_evaluation`, never a
checkpoint picked silently), :func:`write_group_csv` writes them one row each, and
:func:`summarize_group` gives per method and model the mean ± std over seeds of mIoU and of the
tail classes' mean IoU (:func:`ael.runs.compare.tail_mean`), final and best, and the paired
difference (same seed) to the first method. :func:`rows_of_runs` does what :func:`group_rows` does
for runs already open (the dashboard's cached tailers), and :func:`group_curves` pools each
method's mIoU curves over its seeds (mean and spread at each evaluation step).
"""

from __future__ import annotations

import csv
import math
import os
import re
import statistics
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ael.runs.compare import mean_curve, tail_mean
from ael.runs.listing import list_runs
from ael.runs.reader import Run, open_run
from ael.runs.records import best_evaluation

__all__ = ["GroupRow", "group_class_iou", "group_curves", "group_rows", "rows_of_runs", "runs_pooled", "seeds_legend",
           "summarize_group", "write_group_csv"]


@dataclass(frozen=True)
class GroupRow:
    """One evaluation of one model of one run of a group.

    Attributes:
        run_id, method, seed: the run, its label (its method unless given) and its ``train.seed``.
        model: ``teacher`` or ``student``.
        which: ``final`` (the last evaluation) or ``best`` (the highest mIoU).
        step: the evaluation's step.
        miou: mean IoU over the classes present.
        tail_miou: mean IoU of the tail classes (NaN when none is evaluated).
        iou: ``(C,)`` per-class IoU.
        class_names: the C class names.
    """

    run_id: str
    method: str
    seed: int
    model: str
    which: str
    step: int
    miou: float
    tail_miou: float
    iou: np.ndarray
    class_names: tuple[str, ...]


def runs_pooled(rows: Sequence[GroupRow], model: str) -> dict[str, int]:
    """Label -> how many runs (seeds) of it have evaluations of ``model``: what its mean pools over,
    in its curve (:func:`group_curves`) and its bars (:func:`group_class_iou`) alike."""
    pooled: dict[str, set[str]] = {}
    for row in rows:
        if row.model == model:
            pooled.setdefault(row.method, set()).add(row.run_id)
    return {label: len(runs) for label, runs in sorted(pooled.items())}


def seeds_legend(method: str, seeds: int) -> str:
    """A method's name in a group's charts: ``"ael (mean of 3 seeds)"``, or ``"ael (1 seed)"``."""
    return f"{method} (mean of {seeds} seeds)" if seeds != 1 else f"{method} (1 seed)"


def _label(run: Run, group: str, labels: Mapping[str, str] | None) -> str:
    named = re.fullmatch(rf"{re.escape(group)}-(.+)-s\d+", run.run_id)
    return (labels or {}).get(run.run_id) or (named.group(1) if named else None) or run.method or "?"


def _seed(run: Run) -> int:
    return int(((run.config.get("train") or {}).get("seed")) or 0)


def group_rows(runs_dir: str | os.PathLike[str], group: str,
               labels: Mapping[str, str] | None = None) -> list[GroupRow]:
    """The final and best evaluation of each model of each run of ``group``.

    Args:
        runs_dir: the folder of the group's runs.
        group: the group name their manifests record.
        labels: run id -> the label to report it under; default: the ``<label>`` of a run named
            ``<group>-<label>-s<seed>`` as ``ael compare`` names them (the overlay it was given:
            several ablations of AEL are all method ``ael``), else the run's method.
    """
    runs = [open_run(runs_dir, s.run_id) for s in list_runs(runs_dir) if s.group == group]
    return rows_of_runs(runs, group, labels)


def rows_of_runs(runs: Iterable[Run], group: str, labels: Mapping[str, str] | None = None) -> list[GroupRow]:
    """:func:`group_rows` of runs already open (a dashboard's cached tailers): those of ``group``
    among ``runs``, as they were last polled."""
    rows = []
    for run in runs:
        if run.group != group:
            continue
        frequencies = run.class_frequencies()
        seed = _seed(run)
        label = _label(run, group, labels)
        for model in sorted({e.model for e in run.evals()}):
            evals = run.evals(model)
            for which, record in (("final", evals[-1]), ("best", best_evaluation(evals))):
                rows.append(GroupRow(run.run_id, label, seed, model, which, record.step,
                                     float(record.miou), tail_mean(record.iou, frequencies), record.iou,
                                     tuple(run.class_names)))
    return sorted(rows, key=lambda r: (r.method, r.seed, r.model, r.which))


def group_curves(runs: Iterable[Run], group: str, model: str, labels: Mapping[str, str] | None = None,
                 ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Label -> the mIoU of ``model`` over evaluations pooled over the label's seeds:
    ``(steps, mean, std, count)`` as :func:`ael.runs.compare.mean_curve` gives them."""
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for run in runs:
        if run.group != group:
            continue
        evals = run.evals(model)
        if evals:
            curves.setdefault(_label(run, group, labels), []).append(
                (np.array([e.step for e in evals]), np.array([e.miou for e in evals])))
    return {label: mean_curve(curves[label]) for label in sorted(curves)}


def write_group_csv(rows: Sequence[GroupRow], path: str | os.PathLike[str]) -> Path:
    """``method,seed,model,which,step,miou,tail_miou`` then one column per class (IoU), a row each."""
    path = Path(path)
    names = rows[0].class_names if rows else ()
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["method", "seed", "model", "which", "step", "miou", "tail_miou", *names])
        for r in rows:
            out.writerow([r.method, r.seed, r.model, r.which, r.step, f"{r.miou:.6f}", f"{r.tail_miou:.6f}",
                          *(f"{v:.6f}" for v in r.iou)])
    return path


def _mean_std(values: Sequence[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    mean = 100 * statistics.fmean(finite)
    std = 100 * statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def summarize_group(rows: Sequence[GroupRow], methods: Sequence[str] | None = None) -> str:
    """A Markdown table per model: each method's final and best mIoU and tail mean over its seeds,
    with the paired difference (the same seeds) to the first method."""
    methods = list(methods) if methods else sorted({r.method for r in rows})
    lines = []
    for model in sorted({r.model for r in rows}):
        lines += [f"### {model}", "",
                  "| method | seeds | final mIoU | final tail | best mIoU | best tail | Δ final mIoU | Δ final tail |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        of_model = [r for r in rows if r.model == model]
        base = methods[0]
        # Paired by seed; runs are counted one each, so two runs that recorded the same seed (or
        # none) both count instead of one hiding the other.
        base_runs = [r for r in of_model if r.method == base and r.which == "final"]
        base_final = {r.seed: r for r in base_runs} if len({r.seed for r in base_runs}) == len(base_runs) else {}
        for method in methods:
            final = [r for r in of_model if r.method == method and r.which == "final"]
            best = [r for r in of_model if r.method == method and r.which == "best"]
            if not final:
                continue
            own = {r.seed: r for r in final}
            paired = sorted(set(own) & set(base_final)) if len(own) == len(final) else []
            delta_miou = [own[s].miou - base_final[s].miou for s in paired]
            delta_tail = [own[s].tail_miou - base_final[s].tail_miou for s in paired]
            deltas = ("—", "—") if method == base else (_mean_std(delta_miou), _mean_std(delta_tail))
            lines.append(f"| {method} | {len(final)} | {_mean_std([r.miou for r in final])} | "
                         f"{_mean_std([r.tail_miou for r in final])} | {_mean_std([r.miou for r in best])} | "
                         f"{_mean_std([r.tail_miou for r in best])} | {deltas[0]} | {deltas[1]} |")
        lines.append("")
    lines.append(f"mean ± std over seeds, in %; Δ: paired by seed against {methods[0]!r}; tail: classes whose "
                 "labeled pixel share is under a quarter of the uniform share.")
    return "\n".join(lines)


def group_class_iou(rows: Sequence[GroupRow], model: str, which: str = "final") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Label -> ``(mean, std)`` over seeds of the per-class IoU of ``model``'s ``which`` evaluation
    (NaN where a class was never evaluated; std 0 for a single seed)."""
    out = {}
    for label in sorted({r.method for r in rows}):
        picked = [r.iou for r in rows if r.method == label and r.model == model and r.which == which]
        if not picked:
            continue
        stack = np.stack(picked)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a class no seed evaluated: NaN, said above
            mean = np.nanmean(stack, axis=0)
            std = np.nanstd(stack, axis=0, ddof=1) if len(picked) > 1 else np.zeros(stack.shape[1])
        out[label] = (mean, std)
    return out
