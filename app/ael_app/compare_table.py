"""The Compare page's runs table and config diff, as DataFrames.

One row per run (read from the open run, or from its manifest and evaluations only): method,
group, status, last step, the key config (:func:`ael.runs.compare.key_config`), the final and best
mIoU of the teacher (else the model evaluated) and the final tail mean
(:func:`ael.runs.compare.tail_mean`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ael.runs import Run, RunSummary, best_evaluation
from ael.runs.compare import ABSENT, RunOverview, config_diff, key_config, tail_mean
from ael_app.render import latest_step

COLUMNS = ("run", "method", "group", "status", "last step", "of", "dataset", "labeled", "seed", "iterations",
           "backbone", "final mIoU", "best mIoU", "tail mean", "eval step")


def model_evals(run: Run) -> list:
    """The evaluations a run is compared by: the teacher's, else every model's."""
    return run.evals("teacher") or run.evals()


def _pct(value: float | None) -> float | None:
    return 100 * float(value) if value is not None and math.isfinite(value) else None


def details(config: Mapping[str, Any], evals: Sequence, frequencies) -> dict[str, Any]:
    """The columns read from a run's config and evaluations: key config, final and best mIoU,
    final tail mean and the final evaluation's step."""
    final = evals[-1] if evals else None
    best = best_evaluation(evals)
    key = key_config(config)
    return {"labeled": str(key["labeled"]) if key["labeled"] is not None else None, "seed": key["seed"],
            "iterations": key["iterations"], "backbone": key["backbone"],
            "final mIoU": _pct(final.miou) if final else None, "best mIoU": _pct(best.miou) if best else None,
            "tail mean": _pct(tail_mean(final.iou, frequencies)) if final else None,
            "eval step": final.step if final else None}


def overview_details(overview: RunOverview) -> dict[str, Any]:
    """:func:`details` of a run not opened (read by :func:`ael.runs.compare.read_overview`)."""
    return details(overview.config, overview.evals, overview.frequencies)


def run_row(summary: RunSummary, run: Run | None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The table row of one run: from the open run when there is one (its latest step), else its
    manifest summary and ``extra`` (:func:`overview_details`)."""
    row = {"run": summary.run_id, "method": summary.method, "group": summary.group, "status": summary.status,
           "last step": summary.step, "of": summary.total_steps, "dataset": summary.dataset,
           "labeled": summary.split, "final mIoU": _pct(summary.last_miou), "best mIoU": _pct(summary.best_miou)}
    if run is not None:
        row.update(method=run.method, group=run.group, status=run.status(), **{"last step": latest_step(run)},
                   of=run.total_steps)
        row.update({k: v for k, v in details(run.config, model_evals(run), run.class_frequencies()).items()
                    if v is not None or k not in row})
    elif extra is not None:
        row.update({k: v for k, v in extra.items() if v is not None or k not in row})
        if row.get("eval step") is not None and row["last step"] is not None:
            row["last step"] = max(row["last step"], row["eval step"])  # as latest_step counts it
    return row


def runs_frame(summaries: Sequence[RunSummary], runs: Mapping[str, Run],
               extras: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """One row per summary, in the order given (newest first, as listed): from the open ``runs``,
    else from ``extras`` (run id -> :func:`overview_details`), else the summary alone."""
    frame = pd.DataFrame([run_row(s, runs.get(s.run_id), (extras or {}).get(s.run_id)) for s in summaries],
                         columns=list(COLUMNS))
    for column in ("last step", "of", "seed", "iterations", "eval step"):
        frame[column] = pd.array(frame[column], dtype="Int64")
    for column in ("final mIoU", "best mIoU", "tail mean"):
        frame[column] = frame[column].astype("float64")
    return frame


def filter_frame(frame: pd.DataFrame, text: str = "", methods: Sequence[str] = ()) -> pd.DataFrame:
    """The rows whose run id, method, group, status, dataset or backbone contain every word of
    ``text`` (case-insensitive), and whose method is one of ``methods`` (all when empty)."""
    keep = pd.Series(True, index=frame.index)
    if methods:
        keep &= frame["method"].isin(list(methods))
    words = text.lower().split()
    if words:
        haystack = frame[["run", "method", "group", "status", "dataset", "backbone"]].astype("string").fillna("")
        joined = haystack.apply(lambda row: " ".join(row).lower(), axis=1)
        for word in words:
            keep &= joined.str.contains(word, regex=False)
    return frame[keep].reset_index(drop=True)


def _cell(value: Any) -> str:
    # One text column per run: lists and None read as JSON, so 0.5 and "0.5" stay apart.
    return value if value == ABSENT else json.dumps(value)


def diff_frame(configs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The config keys that differ between the runs: index the dotted key, one column per run
    (``run.name`` left out: it always differs)."""
    diff = config_diff(configs, ignore=["run.name"])
    return pd.DataFrame({run_id: [_cell(diff[k][run_id]) for k in diff] for run_id in configs},
                        index=pd.Index(list(diff), name="config key"))
