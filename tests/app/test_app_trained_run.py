"""Every dashboard page on a run written by the real trainer (a seconds-long CPU run)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from canvas_support import bar_rows

from ael.config import config_from_dict
from ael.engine.trainer import train
from ael.runs import open_run

PAGES = ("views/training.py", "views/confidence.py", "views/pseudo_labels.py", "views/lab.py")


def tiny_config(runs_dir: Path) -> dict:
    """ResNet-18 at 32 px on 5 synthetic classes, 12 iterations, every kind of record written."""
    return {
        "method": {"ohem": {"min_kept": 200}, "copy_paste": {"num_categories": 2}},
        "model": {"backbone": "resnet18", "output_stride": 16, "aspp_channels": 16, "low_level_channels": 8},
        "data": {"synthetic": {"num_classes": 5, "image_size": 32, "num_labeled": 8, "num_unlabeled": 16,
                               "num_val": 4},
                 "crop_size": 32, "batch_size_labeled": 2, "batch_size_unlabeled": 2, "num_workers": 0},
        "train": {"iterations": 12, "lr": 0.01, "device": "cpu", "classes_every": 3, "media_every": 5,
                  "checkpoint_every": 0, "eval": {"every": 6, "model": "both", "batch_size": 4}},
        "run": {"runs_dir": str(runs_dir), "heartbeat_s": 0.5},
    }


def _array(value) -> np.ndarray:
    """A plotly spec array: a list, or plotly's ``{"dtype", "bdata"}`` base64 encoding."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
    return np.asarray(value)


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("trained") / "runs"
    train(config_from_dict(tiny_config(runs)), progress=False)
    return runs


def test_every_page_on_a_trained_run(trained_runs, app_factory):
    at = app_factory(trained_runs)
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert table["status"].tolist() == ["finished"] and table["progress"].tolist() == [1.0]
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
    at.switch_page("views/training.py").run()
    assert at.metric[1].value == "12 / 12"  # the same step as Runs: 12 iterations done
    assert len(at.get("plotly_chart")) >= 4  # losses, lr, throughput/step time, mIoU
    at.switch_page("views/confidence.py").run()
    # The bars at the latest step hold the bank the trainer logged there, as the reader returns it.
    run_id = at.sidebar.selectbox(key="run").value
    bank = open_run(trained_runs, run_id).class_vectors("bank")
    bars = bar_rows(at)
    assert bars[0]["title"] == f"confidence bank Conf (step {int(bank.steps[-1])})"
    np.testing.assert_array_equal(bars[0]["values"], bank.values[-1])
    assert bank.steps.tolist() == [0, 3, 6, 9, 11]  # classes_every 3 over 12 iterations, and the last
    at.switch_page("views/pseudo_labels.py").run()
    assert len(at.get("image")) == 5
    kinds = at.selectbox[0].options  # shown as "kind: what the stream is"
    assert {"pseudo", "cutmix", "copy_paste"} <= {k.split(":")[0] for k in kinds}
    at.selectbox[0].set_value("cutmix").run()
    assert not at.exception and len(at.get("image")) >= 4
    at.switch_page("views/lab.py").run()
    assert len(at.get("image")) == 8
