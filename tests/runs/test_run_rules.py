"""The three rules the run store owns for every view: tail classes, the row at a step, the best evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ael.runs import (
    TAIL_SHARE,
    ClassSeries,
    EvalRecord,
    best_evaluation,
    row_at,
    tail_boundary,
    tail_classes,
    tail_indices,
)


def test_tail_classes_are_below_a_quarter_of_the_uniform_share():
    assert TAIL_SHARE == 0.25
    assert tail_boundary(5) == 0.05 and tail_boundary(0) == 0.0
    freq = [0.6, 0.3, 0.07, 0.02, 0.01]  # boundary 0.25 / 5 = 0.05
    assert tail_classes(freq) == [False, False, False, True, True]
    assert tail_indices(freq) == [3, 4]
    assert tail_classes(np.array([0.5, 0.375, 0.125, 0.0])) == [False, False, False, True]  # boundary 1/16
    assert tail_classes([0.0625, 0.9375, 0.0, 0.0]) == [False, False, True, True]  # exactly on it: not tail
    assert tail_classes([math.nan, 0.5, 0.5]) == [False, False, False]  # unknown share: never tail
    assert tail_classes([]) == [] and tail_indices(None) == []


def _series() -> ClassSeries:
    return ClassSeries(name="bank", steps=np.array([10, 20, 40]), values=np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
                       class_names=["a", "b"])


@pytest.mark.parametrize(("step", "expected"), [
    (None, (40, [5.0, 6.0])), (0, (10, [1.0, 2.0])), (10, (10, [1.0, 2.0])), (19, (10, [1.0, 2.0])),
    (20, (20, [3.0, 4.0])), (39, (20, [3.0, 4.0])), (40, (40, [5.0, 6.0])), (10**6, (40, [5.0, 6.0])),
])
def test_row_at_is_the_latest_row_at_or_before_the_step(step, expected):
    series = _series()
    for found in (row_at(series, step), series.row_at(step)):
        assert found is not None
        assert (found[0], found[1].tolist()) == expected
        assert found[1].dtype == np.float64


def test_row_at_of_an_empty_series():
    empty = ClassSeries(name="bank", steps=np.zeros(0, np.int64), values=np.zeros((0, 2)), class_names=["a", "b"])
    assert row_at(empty, 5) is None and row_at(empty, None) is None


def _evals(*mious: float) -> list[EvalRecord]:
    return [EvalRecord(step=100 * (i + 1), time=0.0, model="teacher", miou=m, iou=np.zeros(2))
            for i, m in enumerate(mious)]


def test_best_evaluation_is_the_highest_finite_miou_earliest_on_ties():
    assert best_evaluation(_evals(0.5, 0.75, 0.75, 0.25)).step == 200
    assert best_evaluation(_evals(math.nan, 0.25, math.inf, 0.125)).step == 200  # non-finite never wins
    assert best_evaluation(_evals(0.0)).step == 100
    assert best_evaluation(_evals(math.nan, math.nan)).step == 200  # none finite: the last
    assert best_evaluation([]) is None
    # The trainer's records are dicts; the same rule applies.
    dicts = [{"step": 1, "miou": 0.5}, {"step": 2, "miou": math.nan}, {"step": 3, "miou": 0.5}]
    assert best_evaluation(dicts) == {"step": 1, "miou": 0.5}
    assert best_evaluation(iter(dicts[1:2])) is dicts[1]  # any iterable; none finite: the last


def test_the_manifest_summary_and_the_reader_pick_the_same_best(make_writer, runs_dir):
    from ael.runs import list_runs, open_run

    writer = make_writer()
    for step, miou in ((100, math.nan), (200, 0.5), (300, 0.625), (400, 0.625), (500, 0.25)):
        writer.log_eval(step, miou=miou, iou=np.full(4, 0.5))
    writer.finish()
    run = open_run(runs_dir, "run1")
    assert run.manifest["evals"]["teacher"] == {"best_miou": 0.625, "best_step": 300, "last_miou": 0.25,
                                                "last_step": 500}
    assert (run.best_eval().step, run.best_eval("teacher").miou) == (300, 0.625)
    assert list_runs(runs_dir)[0].best_miou == 0.625


def test_a_run_with_no_finite_miou_reports_its_last(make_writer, runs_dir):
    from ael.runs import open_run

    writer = make_writer()
    writer.log_eval(1, miou=math.nan, iou=np.full(4, 0.5))
    writer.log_eval(2, miou=math.nan, iou=np.full(4, 0.5))
    writer.finish()
    run = open_run(runs_dir, "run1")
    summary = run.manifest["evals"]["teacher"]
    assert summary["best_step"] == 2 and math.isnan(summary["best_miou"])
    assert run.best_eval().step == 2


def test_class_frequencies_feed_the_tail_rule(make_writer, runs_dir):
    from ael.runs import open_run

    recorded = [0.7, 0.26, 0.03, 0.01]
    writer = make_writer("recorded", extra={"class_frequencies": recorded})
    writer.log_classes(0, {"freq_labeled": np.full(4, 0.25)})
    run = open_run(runs_dir, "recorded")
    assert run.class_frequencies().tolist() == recorded  # the trainer's record wins over logged rows
    assert tail_indices(run.class_frequencies()) == [2, 3]
    writer = make_writer("logged")
    assert open_run(runs_dir, "logged").class_frequencies() is None
    writer.log_classes(0, {"freq_labeled": np.array([0.5, 0.5, 0.0, 0.0])})
    writer.log_classes(1, {"freq_labeled": np.array([0.5, 0.25, 0.25, 0.0])})
    run = open_run(runs_dir, "logged")
    assert run.class_frequencies().tolist() == [0.5, 0.375, 0.125, 0.0]  # the mean of the rows
    assert tail_indices(run.class_frequencies()) == [3]
