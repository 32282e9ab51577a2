"""ael.runs.groups on runs written by the real RunWriter: rows read from open runs equal those read
from the folder, tail means follow the one tail rule, curves pool each method's seeds."""

from __future__ import annotations

import numpy as np
from runs_helpers import CLASS_NAMES

from ael.runs import open_run
from ael.runs.groups import (
    group_class_iou,
    group_curves,
    group_rows,
    rows_of_runs,
    runs_pooled,
    seeds_legend,
    summarize_group,
)

# Classes 2 and 3 are tail: under 0.25 / 4 of the labeled pixels.
FREQUENCIES = [0.6, 0.3, 0.06, 0.04]
EVALS = {  # run id -> [(step, iou per class)]
    "g-ael-s0": [(10, [0.5, 0.5, 0.1, 0.3]), (20, [0.7, 0.6, 0.3, 0.5])],
    "g-ael-s1": [(10, [0.6, 0.5, 0.2, 0.2]), (20, [0.8, 0.6, 0.5, 0.3])],
    "g-supervised-s0": [(10, [0.5, 0.4, 0.0, 0.1]), (20, [0.6, 0.5, 0.1, 0.1])],
    "other-ael-s0": [(10, [0.9, 0.9, 0.9, 0.9])],
}


def _write(make_writer) -> None:
    for run_id, evals in EVALS.items():
        seed = int(run_id[-1])
        writer = make_writer(run_id, group=run_id.split("-")[0], method=run_id.split("-")[1],
                             config={"train": {"seed": seed}}, extra={"class_frequencies": FREQUENCIES})
        for step, iou in evals:
            writer.log_scalars(step, {"loss/total": 1.0})
            iou = np.array(iou)
            writer.log_eval(step, miou=float(iou.mean()), iou=iou, model="teacher")
        writer.finish()


def test_rows_of_open_runs_equal_the_folders_rows(runs_dir, make_writer):
    _write(make_writer)
    rows = group_rows(runs_dir, "g")
    opened = [open_run(runs_dir, run_id) for run_id in EVALS]
    again = rows_of_runs(opened, "g")
    assert len(again) == len(rows) == 6
    for a, b in zip(again, rows, strict=True):
        assert (a.run_id, a.method, a.seed, a.model, a.which, a.step, a.miou, a.tail_miou) == \
            (b.run_id, b.method, b.seed, b.model, b.which, b.step, b.miou, b.tail_miou)
        assert np.array_equal(a.iou, b.iou)
    final = {(r.method, r.seed): r for r in rows if r.which == "final"}
    assert sorted(final) == [("ael", 0), ("ael", 1), ("supervised", 0)]
    assert final[("ael", 0)].step == 20 and final[("ael", 0)].tail_miou == 0.4
    assert final[("ael", 1)].tail_miou == 0.4
    assert final[("supervised", 0)].tail_miou == 0.1
    best = {(r.method, r.seed): r for r in rows if r.which == "best"}
    assert best[("ael", 0)].miou == np.mean([0.7, 0.6, 0.3, 0.5])
    mean, std = group_class_iou(rows, "teacher")["ael"]
    assert np.allclose(mean, [0.75, 0.6, 0.4, 0.4])
    assert np.allclose(std, [np.std([0.7, 0.8], ddof=1), 0.0, np.std([0.3, 0.5], ddof=1), np.std([0.5, 0.3], ddof=1)])
    assert rows[0].class_names == tuple(CLASS_NAMES)


def test_group_curves_pool_each_methods_seeds(runs_dir, make_writer):
    _write(make_writer)
    opened = [open_run(runs_dir, run_id) for run_id in EVALS]
    curves = group_curves(opened, "g", "teacher")
    assert list(curves) == ["ael", "supervised"]
    steps, mean, std, count = curves["ael"]
    assert steps.tolist() == [10, 20]
    s0 = [np.mean(EVALS["g-ael-s0"][i][1]) for i in range(2)]
    s1 = [np.mean(EVALS["g-ael-s1"][i][1]) for i in range(2)]
    assert np.allclose(mean, [(a + b) / 2 for a, b in zip(s0, s1)])
    assert np.allclose(std, [np.std([a, b], ddof=1) for a, b in zip(s0, s1)])
    assert count.tolist() == [2, 2]
    steps, mean, std, count = curves["supervised"]
    assert count.tolist() == [1, 1] and std.tolist() == [0.0, 0.0]
    assert group_curves(opened, "g", "student") == {}


def test_a_methods_legend_names_the_runs_its_mean_pools(runs_dir, make_writer):
    _write(make_writer)
    rows = group_rows(runs_dir, "g")
    assert runs_pooled(rows, "teacher") == {"ael": 2, "supervised": 1}
    assert runs_pooled(rows, "student") == {}
    assert [seeds_legend(m, n) for m, n in runs_pooled(rows, "teacher").items()] == [
        "ael (mean of 2 seeds)", "supervised (1 seed)"]


def _pct(values) -> str:
    return f"{100 * np.mean(values):.2f} ± {100 * (np.std(values, ddof=1) if len(values) > 1 else 0):.2f}"


def test_summary_counts_every_run_and_pairs_by_seed(runs_dir, make_writer):
    _write(make_writer)
    rows = group_rows(runs_dir, "g")
    ael_final = [np.mean(EVALS[r][-1][1]) for r in ("g-ael-s0", "g-ael-s1")]
    sup_final = np.mean(EVALS["g-supervised-s0"][-1][1])
    lines = summarize_group(rows, methods=["supervised", "ael"]).splitlines()
    assert lines[4] == "| supervised | 1 | " + " | ".join([_pct([sup_final]), _pct([0.1]), _pct([sup_final]),
                                                           _pct([0.1]), "—", "—"]) + " |"
    delta = ael_final[0] - sup_final  # only seed 0 is paired
    assert lines[5] == "| ael | 2 | " + " | ".join([_pct(ael_final), _pct([0.4, 0.4]), _pct(ael_final),
                                                    _pct([0.4, 0.4]), _pct([delta]), _pct([0.4 - 0.1])]) + " |"


def test_runs_that_share_a_seed_all_count_and_are_not_paired(runs_dir, make_writer):
    for run_id, iou in (("a", [0.2, 0.4, 0.0, 0.2]), ("b", [0.4, 0.6, 0.2, 0.4]), ("c", [0.1, 0.1, 0.1, 0.1])):
        writer = make_writer(run_id, group="h", method="ael" if run_id != "c" else "supervised",
                             extra={"class_frequencies": FREQUENCIES})
        writer.log_eval(10, miou=float(np.mean(iou)), iou=np.array(iou), model="teacher")
        writer.finish()
    lines = summarize_group(group_rows(runs_dir, "h"), methods=["supervised", "ael"]).splitlines()
    assert lines[5].startswith(f"| ael | 2 | {_pct([0.2, 0.4])} | {_pct([0.1, 0.3])} |")
    assert lines[5].endswith("| - | - |")  # both recorded seed 0: no pairing to trust
