"""The class-vector page on runs the real trainer wrote: a baseline without a bank, and AEL's
pseudo-label quality drawn as per-class curves with the values the reader returns."""

from __future__ import annotations

import numpy as np
import pytest
from canvas_support import canvas_views

from ael.config import config_from_dict
from ael.engine.trainer import train
from ael.runs import open_run


def _tiny(runs_dir, method: str) -> dict:
    return {
        "method": {"name": method, "ohem": {"min_kept": 200}},
        "model": {"backbone": "resnet18", "output_stride": 16, "aspp_channels": 16, "low_level_channels": 8},
        "data": {"synthetic": {"num_classes": 5, "image_size": 32, "num_labeled": 8, "num_unlabeled": 16,
                               "num_val": 4},
                 "crop_size": 32, "batch_size_labeled": 2, "batch_size_unlabeled": 2, "num_workers": 0},
        "train": {"iterations": 6, "device": "cpu", "eval": {"every": 3, "model": "teacher", "batch_size": 4},
                  "classes_every": 2, "media_every": 0, "checkpoint_every": 0},
        "run": {"runs_dir": str(runs_dir), "name": f"{method}-run"},
    }


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for method in ("mean_teacher", "ael"):
        train(config_from_dict(_tiny(runs, method)), progress=False)
    return runs


def _values(data) -> np.ndarray:
    """A plotly array as JSON holds it: a list, or (plotly >= 6) a base64 typed array."""
    if isinstance(data, dict):
        import base64

        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).astype(float)
    return np.array([np.nan if v is None else v for v in data], dtype=float)


def _problems(at) -> list[str]:
    return [e.value for e in at.exception] + [e.value for e in at.error]


def test_a_baseline_without_a_bank_shows_its_pseudo_label_quality(trained_runs, app_factory):
    at = app_factory(trained_runs)
    at.sidebar.selectbox(key="run").set_value("mean_teacher-run").run()
    at.switch_page("views/confidence.py").run()
    assert not _problems(at)
    assert any("keeps no confidence bank" in info.value for info in at.info)
    vector = at.selectbox(key="conf_vector_mean_teacher-run")
    assert vector.options[:3] == ["pseudo_iou: IoU of the teacher's pseudo-labels with the ground truth",
                                  "pseudo_precision: share of the teacher's pseudo-labels of the class that are "
                                  "right (unlabeled images against their ground truth)",
                                  "pseudo_recall: share of the class's true pixels the teacher's pseudo-labels find"]


def test_ael_pseudo_label_curves_hold_the_readers_values(trained_runs, app_factory):
    at = app_factory(trained_runs)
    at.sidebar.selectbox(key="run").set_value("ael-run").run()
    at.switch_page("views/confidence.py").run()
    assert not _problems(at)
    at.selectbox(key="conf_vector_ael-run").set_value("sampling_kept").run()
    assert not _problems(at)
    lines = canvas_views(at)["conf_vector"]
    assert lines["y_title"] == "sampling_kept"
    run = open_run(trained_runs, "ael-run")
    run.poll()
    series = run.class_vectors("sampling_kept")
    # Every class its own line and legend entry, holding the reader's values (sent as float32).
    assert lines["names"] == list(series.class_names)
    assert [lines["entries"][s["entry"]]["name"] for s in lines["series"]] == list(series.class_names)
    np.testing.assert_array_equal(lines["x"], series.steps.astype(np.float32))
    shown = lines["y"].reshape(len(series.class_names), -1)
    np.testing.assert_allclose(shown, series.values.T.astype(np.float32), rtol=0, equal_nan=True)


@pytest.fixture(scope="module")
def group_runs(tmp_path_factory):
    """A comparison group as ``ael compare`` names it: two methods x two seeds."""
    runs = tmp_path_factory.mktemp("group")
    for seed in (0, 1):
        for method in ("supervised", "ael"):
            data = _tiny(runs, method)
            data["train"].update(iterations=4, seed=seed)
            data["run"].update(name=f"g-{method}-s{seed}", group="g")
            train(config_from_dict(data), progress=False)
    return runs


def test_the_compare_page_shows_a_group_as_mean_and_spread_over_seeds(group_runs, app_factory):
    from ael.runs.groups import group_class_iou, group_rows

    at = app_factory(group_runs)
    at.switch_page("views/compare.py").run()
    assert not _problems(at)
    assert at.selectbox(key="cmp_group").value == "g"
    table = "\n".join(m.value for m in at.markdown)
    assert "| ael | 2 |" in table and "| supervised | 2 |" in table and "±" in table
    expected = group_class_iou(group_rows(group_runs, "g"), "teacher")
    view = canvas_views(at)["cmp_group_bars"]
    assert view["y_title"] == "final IoU (%)"
    bars = {entry["name"]: group for entry, group in zip(view["entries"], view["groups"])}
    for label, (mean, std) in expected.items():
        group = bars[f"{label} (mean of 2 seeds)"]
        assert np.array_equal(group["values"], 100 * mean, equal_nan=True)
        assert np.array_equal(group["errors"], 100 * std, equal_nan=True)
