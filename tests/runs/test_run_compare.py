"""ael.runs.compare: the matched evaluation step, the config diff, curves pooled over seeds, the tail mean."""

from __future__ import annotations

import math

import numpy as np

from ael.runs.compare import (
    ABSENT,
    config_diff,
    evals_at,
    flatten_config,
    key_config,
    matched_step,
    mean_curve,
    tail_mean,
)
from ael.runs.records import EvalRecord


def _eval(step: int, miou: float) -> EvalRecord:
    return EvalRecord(step=step, time=0.0, model="teacher", miou=miou, iou=np.array([miou, miou]))


def test_runs_are_compared_at_the_last_step_they_all_evaluated():
    evals = {"a": [_eval(640, 0.1), _eval(1280, 0.2), _eval(1920, 0.3)],
             "b": [_eval(640, 0.15), _eval(1280, 0.25)]}
    assert matched_step(evals) == 1280
    at = evals_at(evals, 1280)
    assert {k: (v.step, v.miou) for k, v in at.items()} == {"a": (1280, 0.2), "b": (1280, 0.25)}
    own = evals_at(evals, None)
    assert {k: (v.step, v.miou) for k, v in own.items()} == {"a": (1920, 0.3), "b": (1280, 0.25)}


def test_no_matched_step_without_a_shared_evaluation():
    assert matched_step({"a": [_eval(100, 0.1)], "b": [_eval(200, 0.1)]}) is None
    assert matched_step({"a": [_eval(100, 0.1)], "b": []}) is None
    assert matched_step({}) is None
    assert evals_at({"a": [_eval(100, 0.1)], "b": []}, None).keys() == {"a"}
    assert evals_at({"a": [_eval(100, 0.1)], "b": [_eval(200, 0.2)]}, 200).keys() == {"b"}


def test_config_diff_keeps_only_the_keys_that_differ():
    a = {"train": {"iterations": 2000, "seed": 0, "lr": 0.01}, "method": {"name": "ael", "bank": {"momentum": 0.999}},
         "run": {"name": "a"}}
    b = {"train": {"iterations": 2000, "seed": 1, "lr": 0.01}, "method": {"name": "supervised"}, "run": {"name": "b"}}
    c = {"train": {"iterations": 2000, "seed": 1, "lr": 0.01}, "method": {"name": "ael", "bank": {"momentum": 0.99}},
         "run": {"name": "c"}}
    diff = config_diff({"a": a, "b": b, "c": c}, ignore=["run.name"])
    assert diff == {
        "method.bank.momentum": {"a": 0.999, "b": ABSENT, "c": 0.99},
        "method.name": {"a": "ael", "b": "supervised", "c": "ael"},
        "train.seed": {"a": 0, "b": 1, "c": 1},
    }
    assert list(diff) == sorted(diff)
    assert config_diff({"a": a}) == {}
    assert config_diff({"a": a, "a2": a}) == {}


def test_config_diff_tells_a_flag_from_a_count_and_lists_by_value():
    diff = config_diff({"x": {"k": True, "l": [1, 2], "m": 1.0, "n": float("nan")},
                        "y": {"k": 1, "l": [1, 2], "m": 1, "n": float("nan")}})
    assert diff == {"k": {"x": True, "y": 1}}


def test_flatten_and_key_config():
    config = {"train": {"iterations": 300, "seed": 2, "eval": {"every": 100}},
              "model": {"backbone": "resnet18"},
              "data": {"dataset": "synthetic", "synthetic": {"num_labeled": 64}, "split": {"labeled": None}},
              "empty": {}}
    assert flatten_config(config) == {"train.iterations": 300, "train.seed": 2, "train.eval.every": 100,
                                      "model.backbone": "resnet18", "data.dataset": "synthetic",
                                      "data.synthetic.num_labeled": 64, "data.split.labeled": None, "empty": {}}
    assert key_config(config) == {"iterations": 300, "seed": 2, "backbone": "resnet18", "labeled": 64,
                                  "eval every": 100}
    voc = {"data": {"dataset": "voc", "split": {"labeled": 1464}}}
    assert key_config(voc) == {"iterations": None, "seed": None, "backbone": None, "labeled": 1464,
                               "eval every": None}


def test_tail_mean_uses_the_one_tail_rule():
    # 4 classes: the tail boundary is 0.25 / 4 = 0.0625; classes 2 and 3 are under it.
    frequencies = np.array([0.6, 0.3, 0.06, 0.04])
    assert tail_mean(np.array([0.9, 0.8, 0.2, 0.4]), frequencies) == 0.30000000000000004
    assert tail_mean(np.array([0.9, 0.8, np.nan, 0.4]), frequencies) == 0.4
    assert math.isnan(tail_mean(np.array([0.9, 0.8, np.nan, np.nan]), frequencies))
    assert math.isnan(tail_mean(np.array([0.9, 0.8, 0.2, 0.4]), None))
    assert math.isnan(tail_mean(np.array([0.9, 0.8]), np.array([0.5, 0.5])))


def test_mean_curve_pools_seeds_step_by_step():
    steps, mean, std, count = mean_curve([(np.array([100, 200, 300]), np.array([0.2, 0.4, 0.6])),
                                          (np.array([100, 200]), np.array([0.4, 0.8]))])
    assert steps.tolist() == [100, 200, 300]
    assert np.allclose(mean, [0.3, 0.6, 0.6])
    assert np.allclose(std, [np.std([0.2, 0.4], ddof=1), np.std([0.4, 0.8], ddof=1), 0.0])
    assert count.tolist() == [2, 2, 1]
    steps, mean, std, count = mean_curve([])
    assert len(steps) == len(mean) == len(std) == len(count) == 0


def test_read_overview_reads_config_the_teachers_evaluations_and_frequencies(make_writer, runs_dir):
    from ael.runs.compare import overview_stamp, read_overview

    writer = make_writer("r", config={"train": {"seed": 3}}, extra={"class_frequencies": [0.7, 0.2, 0.05, 0.05]})
    before = overview_stamp(runs_dir, "r")
    for step, miou in ((10, 0.5), (20, 0.4)):
        writer.log_eval(step, miou=miou, iou=np.full(4, miou), model="teacher")
        writer.log_eval(step, miou=miou / 2, iou=np.full(4, miou / 2), model="student")
    writer.log_eval(20, miou=0.45, iou=np.full(4, 0.45), model="teacher")  # a re-evaluation: the latest counts
    writer.finish()
    assert overview_stamp(runs_dir, "r") != before
    overview = read_overview(runs_dir, "r")
    assert overview.config == {"train": {"seed": 3}}
    assert [(e.step, e.model, e.miou) for e in overview.evals] == [(10, "teacher", 0.5), (20, "teacher", 0.45)]
    assert overview.frequencies.tolist() == [0.7, 0.2, 0.05, 0.05]
    assert tail_mean(overview.evals[-1].iou, overview.frequencies) == 0.45
