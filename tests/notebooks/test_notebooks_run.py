"""Every notebook, executed top to bottom on a fresh kernel at small scale (parameters injected),
checked by what it produced; and the saved notebooks carry no outputs."""

from __future__ import annotations

import json

import nbformat
import pytest
from nb_helpers import NOTEBOOKS, TINY, execute_notebook, outputs_text, widget_views

from ael.runs import list_runs, open_run

NAMES = ("01_train_and_watch.ipynb", "02_augmentation_explorer.ipynb", "03_analyse_runs.ipynb")


@pytest.mark.parametrize("name", NAMES)
def test_saved_without_outputs_and_one_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{name} is saved with outputs"
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_01_trains_in_the_background_and_shows_it_live(tmp_path):
    runs = tmp_path / "runs"
    nb = execute_notebook("01_train_and_watch.ipynb", {
        "RUNS_DIR": str(runs), "RUN_ID": "nb01", "ITERATIONS": 6, "IMAGE_SIZE": 32, "NUM_CLASSES": 5,
        "OVERRIDES": [*TINY, "train.eval.every=0"], "REFRESH_S": 0.5, "CHECKPOINT_EVERY": 3,
        "WAIT_FOR_END": True, "WAIT_TIMEOUT_S": 150,
    }, cwd=NOTEBOOKS)
    run = open_run(runs, "nb01")
    assert run.status() == "finished"
    assert list(run.scalar("loss/total")[0]) == list(range(6))
    assert "bank" in run.class_vector_names() and run.evals("teacher")
    assert (runs / "nb01" / "checkpoints").is_dir()
    text = outputs_text(nb)
    assert "training process ended: finished (exit 0)" in text
    assert "nb01: finished, step 6 / 6" in text
    # The launcher panel, the monitor and its three FigureWidgets are displayed as widgets.
    assert widget_views(nb) >= 2


def test_02_explores_the_augmentations_and_exports_previews(tmp_path):
    out = tmp_path / "export"
    nb = execute_notebook("02_augmentation_explorer.ipynb", {
        "NUM_IMAGES": 6, "IMAGE_SIZE": 64, "RUNS_DIR": str(tmp_path / "no-runs"), "EXPORT_DIR": str(out),
    }, cwd=NOTEBOOKS)
    assert sorted(p.name for p in out.iterdir()) == ["copy_paste.png", "cutmix.png", "distributions.csv",
                                                     "distributions.html", "plotly.min.js"]
    text = outputs_text(nb)
    assert "synthetic long-tailed set, 8 classes, 64 px" in text
    assert "Copy-Paste (k=3): sampled" in text and "CutMix: class" in text
    rows = (out / "distributions.csv").read_text().splitlines()
    assert rows[0] == ",Conf,Copy-Paste,CutMix,r_c" and float(rows[-1].split(",")[1]) == pytest.approx(0.05)
    assert widget_views(nb) == 1


def test_03_trains_missing_runs_compares_them_and_exports(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "export"
    nb = execute_notebook("03_analyse_runs.ipynb", {
        "RUNS_DIR": str(runs), "METHODS": ["ael", "supervised"], "SEEDS": [0], "GROUP": "nb03", "ITERATIONS": 6,
        "IMAGE_SIZE": 32, "NUM_CLASSES": 5, "OVERRIDES": [*TINY, "train.media_every=0", "train.eval.every=3"],
        "EXPORT_DIR": str(out),
    }, cwd=NOTEBOOKS)
    rows = list_runs(runs)
    assert len(rows) == 2 and all(r.status == "finished" and r.group == "nb03" for r in rows)
    assert sorted(r.run_id for r in rows) == ["nb03-ael-s0", "nb03-supervised-s0"]
    files = sorted(p.name for p in out.iterdir())
    # The bank is AEL's: the supervised baseline declares no bank vector.
    banks = [f"bank_{r.run_id}.html" for r in rows if r.method == "ael"]
    assert len(banks) == 1
    # The AEL run measured its pseudo-labels against the synthetic truth; supervised has none.
    pseudo = [f"pseudo_iou_{r.run_id}.html" for r in rows if r.method == "ael"]
    assert files == sorted(["iou_vs_frequency.html", "class_iou.html", "miou.html", *banks, *pseudo,
                            "group_nb03.html", "summary.csv", "per_class_iou.csv", "plotly.min.js"])
    summary = (out / "summary.csv").read_text()
    assert "AEL" in summary and "supervised" in summary
    text = outputs_text(nb)
    assert "ael seed 0: nb03-ael-s0" in text and "supervised seed 0: nb03-supervised-s0" in text
    # The default compares the group the notebook trained (each method over its seeds).
    assert "comparing comparison group 'nb03': its 2 finished runs" in text
    # iou-vs-frequency, class IoU, mIoU, the AEL run's bank lines, its heatmap, its pseudo-label IoU
    # and the group's per-class IoU over seeds.
    assert widget_views(nb) == 7
    assert "no comparison group among these runs" not in text
    html = (out / "iou_vs_frequency.html").read_text()
    assert 'src="plotly.min.js"' in html and json.dumps("tail boundary") in html
