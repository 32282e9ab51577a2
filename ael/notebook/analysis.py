"""Analyse finished runs: tail classes, AEL against baselines and ablations, bank trajectories, export.

:class:`RunAnalysis` reads runs through :mod:`ael.runs` and returns pandas tables and plotly figures
built with :mod:`ael.viz.figures`; :meth:`RunAnalysis.export` writes them as HTML (one shared
``plotly.min.js``, viewable offline) and CSV. :func:`default_runs` picks what is worth comparing
when no run is named: a comparison group (seeds of each method), else one run per method. Tail
classes are :mod:`ael.runs.classes`' (the dashboard's and the live monitor's rule).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ael.runs import Run, best_evaluation, list_runs, open_run, tail_boundary, tail_indices
from ael.runs.groups import group_class_iou, group_rows, runs_pooled, seeds_legend, summarize_group
from ael.viz.class_figures import grouped_bars_figure, iou_frequency_figure
from ael.viz.figures import class_heatmap_figure, class_lines_figure, scalar_lines_figure
from ael.viz.style import method_colour

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["RunAnalysis", "RunResult", "default_runs", "method_label", "tail_mask"]

logger = logging.getLogger(__name__)

_STRATEGIES = (("copy_paste", "adaptive Copy-Paste"), ("cutmix", "adaptive CutMix"),
               ("sampling", "equalization sampling"), ("reweight", "re-weighting"))


def tail_mask(frequencies: np.ndarray | None, num_classes: int | None = None) -> np.ndarray:
    """``(C,)`` bool: the tail classes of :func:`ael.runs.tail_indices` (the dashboard's and the
    monitor's call) as an array; none when the frequencies are unknown (``None``, give ``num_classes``)."""
    size = len(frequencies) if frequencies is not None else int(num_classes or 0)
    mask = np.zeros(size, dtype=bool)
    mask[tail_indices(None if frequencies is None else np.asarray(frequencies, dtype=np.float64).tolist())] = True
    return mask


def default_runs(runs_dir: str | os.PathLike[str]) -> tuple[list[str], str]:
    """The finished runs worth comparing when none are named, and why them (one sentence).

    The comparison group (``ael compare``: methods over seeds) of the newest finished run that has
    one; else the newest finished run of each method (several runs of one method alone say little
    side by side). Oldest first.

    Raises:
        RunNotFoundError: ``runs_dir`` does not exist.
    """
    finished = [r for r in list_runs(runs_dir) if r.status == "finished"]  # newest first
    grouped = [r for r in finished if r.group]
    if grouped:
        group = grouped[0].group
        ids = [r.run_id for r in reversed(finished) if r.group == group]
        return ids, (f"comparison group {group!r}: its {len(ids)} finished runs (RUN_IDS to pick others)")
    newest: dict[str, str] = {}
    for summary in finished:
        label = method_label(open_run(runs_dir, summary.run_id).config)
        newest.setdefault(label, summary.run_id)
    ids = [r.run_id for r in reversed(finished) if r.run_id in newest.values()]
    return ids, (f"the newest finished run of each method ({', '.join(sorted(newest))}); "
                 "RUN_IDS to pick others")


def method_label(config: Mapping[str, Any]) -> str:
    """The method a run's config trains: ``supervised``, ``mean teacher``, ``CutMix-Seg``,
    ``CutMix-Seg + <strategies>`` or ``AEL`` (all four strategies, as ``configs/ablations``);
    another registered method by its name. Reads runs of ael 0.1 (a ``core:`` section) too."""
    method = config.get("method")
    if isinstance(method, Mapping):
        name = method.get("name", "ael")
        if name != "ael":
            return {"supervised": "supervised", "mean_teacher": "mean teacher", "cutmix_seg": "CutMix-Seg"}.get(
                name, str(name))
        options = method
    else:  # ael 0.1: every method was a combination of core.*.enabled switches
        options = config.get("core") or {}

    def on(section: str, key: str = "enabled", default: bool = True) -> bool:
        return bool((options.get(section) or {}).get(key, default))

    if method is None and not on("unsup"):
        return "supervised"
    if method is None and not on("cutmix"):
        return "mean teacher"
    strategies = [label for name, label in _STRATEGIES
                  if (name == "cutmix" or on(name)) and (name not in ("copy_paste", "cutmix") or on(name, "adaptive"))]
    if len(strategies) == len(_STRATEGIES):
        return "AEL"
    return "CutMix-Seg" + ("".join(f" + {s}" for s in strategies))


@dataclass(frozen=True)
class RunResult:
    """The numbers of one run the analysis compares."""

    run_id: str
    method: str
    status: str
    class_names: list[str]
    frequencies: np.ndarray  # (C,) labeled pixel share
    step: int | None  # of the last evaluation
    miou: float  # last evaluation (NaN without one)
    best_miou: float
    iou: np.ndarray  # (C,) last evaluation, NaN where absent


class RunAnalysis:
    """Finished runs side by side.

    Args:
        runs_dir: the runs folder.
        run_ids: the runs to compare (default: every finished run with an evaluation).
        model: whose evaluations (``teacher`` or ``student``; falls back to any model).
        labels: run id -> the name shown (default: ``method (run id)``).

    Raises:
        RunNotFoundError: ``runs_dir`` or a named run does not exist.
        ValueError: no run to analyse.
    """

    def __init__(self, runs_dir: str | os.PathLike[str], run_ids: Sequence[str] | None = None, *,
                 model: str = "teacher", labels: Mapping[str, str] | None = None) -> None:
        self.runs_dir = Path(runs_dir)
        self.model = model
        if run_ids is None:
            run_ids = [r.run_id for r in reversed(list_runs(self.runs_dir)) if r.status == "finished"]
        else:
            run_ids = list(run_ids)
        self.runs: dict[str, Run] = {run_id: open_run(self.runs_dir, run_id) for run_id in run_ids}
        if not self.runs:
            raise ValueError(f"no finished runs to analyse in {self.runs_dir}")
        self.results = {run_id: self._result(run) for run_id, run in self.runs.items()}
        given = dict(labels or {})
        self.labels = {run_id: given.get(run_id, f"{r.method} ({run_id})") for run_id, r in self.results.items()}
        first = next(iter(self.results.values()))
        self.class_names = first.class_names
        self.comparable = [run_id for run_id, r in self.results.items() if r.class_names == self.class_names]
        if len(self.comparable) < len(self.results):
            logger.warning("runs with other classes than %s are left out of the per-class comparison: %s",
                           next(iter(self.results)), sorted(set(self.results) - set(self.comparable)))

    def _evals(self, run: Run) -> list[Any]:
        return run.evals(self.model) or run.evals()

    def _result(self, run: Run) -> RunResult:
        names = run.class_names
        frequencies = run.class_frequencies()
        if frequencies is None:
            frequencies = np.full(len(names), np.nan)
        evals = self._evals(run)
        last = evals[-1] if evals else None
        best = best_evaluation(evals)
        return RunResult(
            run_id=run.run_id, method=method_label(run.config), status=run.status(), class_names=names,
            frequencies=frequencies, step=last.step if last else None,
            miou=last.miou if last else math.nan, best_miou=best.miou if best else math.nan,
            iou=np.asarray(last.iou, dtype=np.float64) if last else np.full(len(names), np.nan))

    # -------------------------------------------------------------------------- tables

    def summary_table(self) -> pd.DataFrame:
        """One row per run: method, status, iterations, final and best mIoU, head and tail mean IoU (%)."""
        import pandas as pd

        rows = []
        for run_id, r in self.results.items():
            tails = tail_mask(r.frequencies)
            head_iou, tail_iou = r.iou[~tails], r.iou[tails]
            rows.append({
                "run": run_id, "method": r.method, "status": r.status, "step": r.step,
                "mIoU": 100 * r.miou, "best mIoU": 100 * r.best_miou,
                "head mIoU": 100 * np.nanmean(head_iou) if np.isfinite(head_iou).any() else math.nan,
                "tail mIoU": 100 * np.nanmean(tail_iou) if np.isfinite(tail_iou).any() else math.nan,
                "tail classes": int(tails.sum()),
            })
        return pd.DataFrame(rows).set_index("run")

    def per_class_table(self) -> pd.DataFrame:
        """One row per class: pixel share (%), tail flag, and each run's final IoU (%).

        Share and tail are the first run's; runs whose labeled splits make other classes tail are
        named in a warning (each run's own tail classes: :meth:`tail_classes`).
        """
        import pandas as pd

        first = self.results[self.comparable[0]]
        others = [r for r in self.comparable if (tail_mask(self.results[r].frequencies) != tail_mask(first.frequencies)).any()]
        if others:
            logger.warning("the tail column is %s's tail classes %s; these runs have others: %s", first.run_id,
                           self.tail_classes(first.run_id), {r: self.tail_classes(r) for r in others})
        table = pd.DataFrame({"share (%)": 100 * first.frequencies, "tail": tail_mask(first.frequencies)},
                             index=pd.Index(self.class_names, name="class"))
        for run_id in self.comparable:
            table[self.labels[run_id]] = 100 * self.results[run_id].iou
        return table

    # -------------------------------------------------------------------------- figures

    def iou_vs_frequency_figure(self) -> go.Figure:
        """Per-class final IoU against labeled pixel share (log x), one marker series per run."""
        first = self.results[self.comparable[0]]
        ious = {self.labels[run_id]: 100 * self.results[run_id].iou for run_id in self.comparable}
        return iou_frequency_figure(first.frequencies, ious, self.class_names,
                                    tail_share=tail_boundary(len(self.class_names)),
                                    title="Per-class IoU against pixel frequency (tail: left of the line)")

    def class_iou_figure(self) -> go.Figure:
        """Final per-class IoU of every run, grouped by class (classes ordered as the dataset)."""
        groups = {self.labels[run_id]: 100 * self.results[run_id].iou for run_id in self.comparable}
        return grouped_bars_figure(groups, self.class_names, title="Final per-class IoU", y_title="IoU (%)")

    def miou_figure(self) -> go.Figure:
        """mIoU over evaluations, one line per run."""
        series = {}
        for run_id, run in self.runs.items():
            evals = self._evals(run)
            if evals:
                series[self.labels[run_id]] = (np.array([e.step for e in evals]),
                                               np.array([100 * e.miou for e in evals]))
        return scalar_lines_figure(series, title="mIoU over evaluations (%)", markers=True, mode="mean",
                                   y_title="mIoU (%)")

    def bank_figure(self, run_id: str, *, heatmap: bool = False) -> go.Figure:
        """A run's confidence-bank trajectories (tail classes thick), or its classes x steps heatmap.

        Raises:
            KeyError: an unknown run, or a run without a bank (a supervised baseline).
        """
        if heatmap:
            bank = self.runs[run_id].class_vectors("bank")
            return class_heatmap_figure(bank.steps, bank.values, bank.class_names, colorbar_title="Conf",
                                        title=f"Confidence bank, {self.labels[run_id]}")
        return self.vector_figure(run_id, "bank", y_title="Conf_c",
                                  title=f"Confidence bank over steps, {self.labels[run_id]}")

    def vector_figure(self, run_id: str, name: str, *, y_title: str | None = None,
                      title: str | None = None) -> go.Figure:
        """A run's per-class vector over steps (``pseudo_iou``, ``sampling_kept``, ...), tail classes thick.

        Raises:
            KeyError: an unknown run, or a vector the run did not log.
        """
        run = self.runs[run_id]
        series = run.class_vectors(name)
        tails = [int(c) for c in np.flatnonzero(tail_mask(self.results[run_id].frequencies))]
        return class_lines_figure(series.steps, series.values, series.class_names, palette=run.palette,
                                  highlight=tails, y_title=y_title or name,
                                  title=title or f"{name} over steps, {self.labels[run_id]}")

    def runs_with(self, name: str) -> list[str]:
        """The runs that logged the per-class vector ``name``."""
        return [run_id for run_id, run in self.runs.items() if name in run.class_vector_names()]

    def runs_with_bank(self) -> list[str]:
        """The runs that logged a confidence bank."""
        return self.runs_with("bank")

    def tail_classes(self, run_id: str) -> list[str]:
        """The tail classes of a run, by name (:func:`ael.runs.tail_indices` of its frequencies)."""
        run = self.runs[run_id]
        return [run.class_names[c] for c in tail_indices(run.class_frequencies())]

    def groups(self) -> list[str]:
        """The comparison groups among the runs."""
        return sorted({run.group for run in self.runs.values() if run.group})

    def group_figure(self, group: str) -> go.Figure:
        """A group's final per-class IoU per method: the mean over its seeds, whiskers one std."""
        rows = group_rows(self.runs_dir, group)
        model = self.model if group_class_iou(rows, self.model) else (rows[0].model if rows else self.model)
        stats = group_class_iou(rows, model)
        names = list(rows[0].class_names) if rows else self.class_names
        # The methods' names and colours as the dashboard's Compare page has them.
        pooled = runs_pooled(rows, model)
        legend = {label: seeds_legend(label, pooled[label]) for label in stats}
        colours = {legend[label]: method_colour(n) for n, label in enumerate(sorted({r.method for r in rows}))
                   if label in legend}
        means = {legend[label]: 100 * m for label, (m, _) in stats.items()}
        errors = {legend[label]: 100 * e for label, (_, e) in stats.items()}
        return grouped_bars_figure(means, names, errors=errors, y_title="IoU (%)", colours=colours,
                                   title=f"Group {group}: final per-class IoU, mean ± std over seeds")

    def group_summaries(self) -> dict[str, str]:
        """Each comparison group (``ael compare``) among the runs: its over-seed summary (Markdown)."""
        return {group: summarize_group(group_rows(self.runs_dir, group)) for group in self.groups()}

    def figures(self) -> dict[str, go.Figure]:
        """Every figure of the analysis by file stem."""
        figures = {"iou_vs_frequency": self.iou_vs_frequency_figure(), "class_iou": self.class_iou_figure(),
                   "miou": self.miou_figure()}
        for run_id in self.runs_with_bank():
            figures[f"bank_{run_id}"] = self.bank_figure(run_id)
        for run_id in self.runs_with("pseudo_iou"):
            figures[f"pseudo_iou_{run_id}"] = self.vector_figure(run_id, "pseudo_iou", y_title="pseudo-label IoU")
        for group in self.groups():
            figures[f"group_{group}"] = self.group_figure(group)
        return figures

    def export(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write every figure as HTML (sharing one ``plotly.min.js``) and the tables as CSV.

        Returns:
            The files written.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for stem, fig in self.figures().items():
            path = folder / f"{stem}.html"
            fig.write_html(path, include_plotlyjs="directory", full_html=True)
            written.append(path)
        for stem, table in (("summary", self.summary_table()), ("per_class_iou", self.per_class_table())):
            path = folder / f"{stem}.csv"
            table.to_csv(path, float_format="%.4f")
            written.append(path)
        logger.info("exported %d files to %s", len(written), folder)
        return written
