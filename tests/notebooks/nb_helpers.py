"""Helpers for the notebook tests: tiny real configs, runs written by the real run writer, and a
notebook executor (nbclient on the ``python3`` kernel of this interpreter, parameters injected
after the cell tagged ``parameters``)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

#: Overrides that make a synthetic run take seconds: 32 px, a narrow head, 2 + 2 images a step.
TINY = [
    "model.aspp_channels=16", "model.low_level_channels=8", "method.ohem.min_kept=200",
    "data.synthetic.num_labeled=8", "data.synthetic.num_unlabeled=16", "data.synthetic.num_val=4",
    "data.batch_size_labeled=2", "data.batch_size_unlabeled=2", "train.eval.batch_size=4",
    "train.classes_every=2", "train.media_every=3", "run.heartbeat_s=0.5",
]


def tiny_config(runs_dir: Path, *, iterations: int = 6, overrides: tuple[str, ...] = (), **kwargs: Any):
    from ael.notebook import notebook_config

    return notebook_config(runs_dir=runs_dir, iterations=iterations, image_size=32, num_classes=5,
                           overrides=[*TINY, *overrides], **kwargs)


def write_run(runs_dir: Path, run_id: str, *, class_names: list[str], config: Mapping[str, Any] | None = None,
              banks: Mapping[int, np.ndarray] | None = None, evals: Mapping[int, np.ndarray] | None = None,
              frequencies: np.ndarray | None = None, losses: Mapping[int, float] | None = None,
              finish: bool = True, group: str | None = None, method: str | None = None):
    """A run folder written by :class:`ael.runs.RunWriter` with the given records; returns the writer."""
    from ael.runs import RunWriter

    extra = {"class_frequencies": [float(f) for f in frequencies]} if frequencies is not None else None
    writer = RunWriter(runs_dir, run_id, class_names=class_names, config=dict(config or {}), dataset="synthetic",
                       total_steps=100, heartbeat_s=0.05, extra=extra, group=group, method=method)
    for step, loss in (losses or {}).items():
        writer.log_scalars(step, {"loss/total": loss, "loss/sup": loss / 2})
    for step, bank in (banks or {}).items():
        writer.log_classes(step, {"bank": np.asarray(bank, dtype=np.float32)})
    for step, iou in (evals or {}).items():
        iou = np.asarray(iou, dtype=np.float64)
        writer.log_eval(step, miou=float(np.nanmean(iou)), iou=iou, model="teacher")
    if finish:
        writer.finish()
    return writer


def execute_notebook(name: str, params: Mapping[str, Any], cwd: Path, timeout: int = 240,
                     append: Sequence[str] = ()):
    """Run ``notebooks/<name>`` top to bottom on a fresh kernel with ``params`` injected; returns the notebook.

    A first injected cell prints the kernel's ``sys.prefix`` (checked against this interpreter's);
    the ``append`` sources run as cells after the notebook's own, on the same kernel (what a user
    types below the notebook, using its objects).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters', found {len(tagged)}"
    source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))
    nb.cells += [nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-after"]}) for source in append]
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    client.execute()
    prefix = "".join(o.get("text", "") for o in nb.cells[0].outputs).strip()
    assert prefix == sys.prefix, f"the notebook ran on {prefix}, not this interpreter's environment {sys.prefix}"
    return nb


def outputs_text(nb) -> str:
    """Every stream and text/plain output of an executed notebook, joined."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def widget_views(nb) -> int:
    """How many widget views (FigureWidget, ipywidgets) the notebook displayed."""
    return sum("application/vnd.jupyter.widget-view+json" in out.get("data", {})
               for cell in nb.cells for out in cell.get("outputs", []))
