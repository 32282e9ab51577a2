"""The notebooks' tail classes are ael.runs.classes' (the dashboard's), and notebook 03's default
choice of runs compares something meaningful: a comparison group pooled over seeds, else one run
per method."""

from __future__ import annotations

import numpy as np
import pytest
from nb_helpers import write_run

from ael.config import load_yaml
from ael.notebook import ABLATIONS_DIR, LiveMonitor, RunAnalysis, default_runs, tail_mask
from ael.runs import open_run, tail_indices
from ael.viz.style import method_colour

NAMES5 = ["background", "road", "car", "pole", "rider"]
NAMES8 = [f"c{i}" for i in range(8)]


@pytest.mark.parametrize(("frequencies", "expected"), [
    ([0.55, 0.30, 0.10, 0.03, 0.02], [3, 4]),  # boundary 0.25 / 5 = 0.05
    ([0.50, 0.20, 0.15, 0.10, 0.05], []),  # exactly on the boundary is not tail
    ([0.70, 0.25, 0.049, 0.0, 0.001], [2, 3, 4]),  # a class with no pixel is tail
    ([0.6, 0.4, np.nan, 0.0, 0.0], [3, 4]),  # an unknown share is never tail
    ([0.40, 0.25, 0.12, 0.10, 0.07, 0.035, 0.015, 0.01], [6, 7]),  # boundary 0.25 / 8 = 0.03125
])
def test_notebook_tail_classes_are_the_run_stores(frequencies, expected):
    assert list(np.flatnonzero(tail_mask(np.array(frequencies)))) == tail_indices(frequencies) == expected


def test_unknown_frequencies_have_no_tail():
    assert tail_indices(None) == [] and tail_mask(None, 5).tolist() == [False] * 5


def test_analysis_and_monitor_mark_the_same_tail_classes_as_the_store(runs_dir):
    freq = np.array([0.70, 0.25, 0.049, 0.0, 0.001])
    write_run(runs_dir, "r", class_names=NAMES5, config=load_yaml(ABLATIONS_DIR / "ael.yaml"), frequencies=freq,
              banks={0: np.full(5, 0.5), 4: np.linspace(0.9, 0.3, 5)}, evals={4: np.full(5, 0.5)})
    expected = tail_indices(open_run(runs_dir, "r").class_frequencies())
    assert expected == [2, 3, 4]
    analysis = RunAnalysis(runs_dir)
    assert analysis.tail_classes("r") == ["car", "pole", "rider"]
    assert analysis.summary_table().loc["r", "tail classes"] == 3
    assert list(np.flatnonzero(analysis.per_class_table()["tail"].to_numpy())) == expected
    thick = [c for c, t in enumerate(analysis.bank_figure("r").data) if t.line.width > 2]
    monitor = LiveMonitor(runs_dir, "r")
    monitor.poll()
    assert thick == [c for c, t in enumerate(monitor.confidence.data) if t.line.width > 2] == expected


def _config(overlay: str, seed: int) -> dict:
    config = load_yaml(ABLATIONS_DIR / f"{overlay}.yaml")
    config.setdefault("train", {})["seed"] = seed
    return config


def test_default_is_the_newest_comparison_group_pooled_over_seeds(runs_dir):
    freq = np.array([0.4, 0.3, 0.2, 0.07, 0.03])
    ious = {("ael", 0): [0.9, 0.8, 0.6, 0.4, 0.2], ("ael", 1): [0.9, 0.6, 0.6, 0.2, 0.4],
            ("supervised", 0): [0.8, 0.7, 0.5, 0.1, 0.1], ("supervised", 1): [0.8, 0.7, 0.5, 0.3, 0.1]}
    write_run(runs_dir, "lone-ael", class_names=NAMES5, config=_config("ael", 0), frequencies=freq,
              evals={4: np.full(5, 0.5)}, method="ael")
    for (overlay, seed), iou in ious.items():
        write_run(runs_dir, f"g-{overlay}-s{seed}", class_names=NAMES5, config=_config(overlay, seed),
                  frequencies=freq, evals={2: np.full(5, 0.1), 4: np.array(iou)}, group="g", method=overlay)
    run_ids, why = default_runs(runs_dir)
    assert sorted(run_ids) == sorted(f"g-{o}-s{s}" for o, s in ious) and "comparison group 'g'" in why
    analysis = RunAnalysis(runs_dir, run_ids)
    assert analysis.groups() == ["g"]
    fig = analysis.group_figure("g")
    bars = {t.name: (np.array(t.y), np.array(t.error_y.array)) for t in fig.data if t.type == "bar"}
    # Named and coloured as the dashboard's Compare page names and colours a group's methods.
    assert sorted(bars) == ["ael (mean of 2 seeds)", "supervised (mean of 2 seeds)"]
    assert [t.marker.color for t in fig.data if t.type == "bar"] == [method_colour(0), method_colour(1)]
    for overlay in ("ael", "supervised"):
        stack = 100 * np.array([ious[(overlay, 0)], ious[(overlay, 1)]])
        mean, spread = bars[f"{overlay} (mean of 2 seeds)"]
        assert mean == pytest.approx(stack.mean(axis=0)) and spread == pytest.approx(stack.std(axis=0, ddof=1))
    assert "group_g" in analysis.figures()


def test_default_without_groups_is_one_run_per_method(runs_dir):
    for run_id, overlay in (("a1", "ael"), ("a2", "ael"), ("s1", "supervised"), ("a3", "ael"), ("c1", "cutmix_seg")):
        write_run(runs_dir, run_id, class_names=NAMES5, config=_config(overlay, 0), evals={4: np.full(5, 0.5)})
    write_run(runs_dir, "a4", class_names=NAMES5, config=_config("ael", 0), finish=False)  # not finished
    run_ids, why = default_runs(runs_dir)
    assert run_ids == ["s1", "a3", "c1"]  # the newest finished of each, oldest first
    assert why.startswith("the newest finished run of each method (AEL, CutMix-Seg, supervised)")


def test_per_class_table_names_runs_whose_tail_classes_differ(runs_dir, caplog):
    config = load_yaml(ABLATIONS_DIR / "ael.yaml")
    write_run(runs_dir, "x1", class_names=NAMES5, config=config, frequencies=np.array([0.55, 0.30, 0.10, 0.03, 0.02]),
              evals={4: np.full(5, 0.5)})
    write_run(runs_dir, "x2", class_names=NAMES5, config=config, frequencies=np.array([0.55, 0.30, 0.11, 0.04, 0.0]),
              evals={4: np.full(5, 0.5)})
    write_run(runs_dir, "x3", class_names=NAMES5, config=config, frequencies=np.array([0.50, 0.30, 0.12, 0.07, 0.01]),
              evals={4: np.full(5, 0.5)})
    analysis = RunAnalysis(runs_dir, ["x1", "x2", "x3"])
    with caplog.at_level("WARNING", logger="ael.notebook.analysis"):
        table = analysis.per_class_table()
    assert list(table["tail"]) == [False, False, False, True, True]  # x1's
    assert analysis.tail_classes("x3") == ["rider"]
    assert "these runs have others: {'x3': ['rider']}" in caplog.text  # x2 has x1's tail classes
