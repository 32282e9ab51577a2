"""The data of the Compare page's canvas charts: runs on shared axes each with its own steps, bucket
means of long runs with the zoomed range's records on request, a group's mean in a band of its
seed spread, and bars with whiskers in the runs' colours, all decoding to the numbers given."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from canvas_support import decoded

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))
from ael_app.canvas_views import grouped_bars_view
from ael_app.compare_views import (
    PANEL_POINTS,
    band_curves_view,
    class_panels_view,
    panel_grid,
    run_colours,
    run_curves_view,
)

from ael.viz.style import METHOD_COLOURS, SERIES_COLOURS


@pytest.mark.parametrize(("count", "grid"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 1)), (4, (2, 2)), (5, (3, 2)),
                                             (6, (3, 2)), (7, (3, 3))])
def test_panels_fill_their_grid(count, grid):
    assert panel_grid(count) == grid


def test_a_run_keeps_its_colour_as_others_are_chosen_or_dropped():
    listed = [f"r{i}" for i in range(12)]  # oldest first
    assert run_colours(["r3", "r1"], listed) == {"r3": SERIES_COLOURS[3], "r1": SERIES_COLOURS[1]}
    assert run_colours(["r0", "r1", "r3"], listed)["r3"] == SERIES_COLOURS[3]  # r0 chosen too: r3 unchanged
    # r1 and r11 would share a colour: the newer takes the next free one (r2 keeps its own).
    assert run_colours(["r1", "r11", "r2"], listed) == {"r1": SERIES_COLOURS[1], "r11": SERIES_COLOURS[3],
                                                        "r2": SERIES_COLOURS[2]}
    # Two runs ten places apart compete for one colour: the older keeps it, whatever the order chosen.
    listed = [f"r{i:02d}" for i in range(12)]
    assert run_colours(["r10", "r00"], listed) == {"r10": SERIES_COLOURS[1], "r00": SERIES_COLOURS[0]}
    assert list(run_colours(["r10", "r00"], listed)) == ["r10", "r00"]  # in the order given
    # Without a listing, in the order given; past ten runs colours repeat.
    ids = [f"x{i}" for i in range(len(SERIES_COLOURS) + 1)]
    colours = run_colours(ids)
    assert list(colours.values())[:len(SERIES_COLOURS)] == list(SERIES_COLOURS)
    assert colours[ids[-1]] == SERIES_COLOURS[0]


def test_panels_hold_each_runs_own_steps_and_values_and_mark_the_tail():
    short = (np.arange(0, 50, 10), np.arange(10, dtype=np.float64).reshape(5, 2) / 10)
    long = (np.arange(0, 80, 10), np.full((8, 2), 0.5))
    long[1][3, 1] = np.nan  # a run without that class at one step
    view = decoded(class_panels_view({"a": short, "b": long}, ["ring", "disc"], view="compare/panels/bank",
                                     colours={"a": "#111111", "b": "#222222"}, tail=["disc"], y_title="bank"))
    assert (view["kind"], view["columns"], view["y_title"], view["x_title"]) == ("curves", 2, "bank", "step")
    assert [p["title"] for p in view["panels"]] == ["ring", "disc (tail)"]
    assert [(e["id"], e["colour"]) for e in view["entries"]] == [("a", "#111111"), ("b", "#222222")]
    assert [(s["entry"], s["panel"]) for s in view["series"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for s, (steps, values, p) in zip(view["series"], [(*short, 0), (*short, 1), (*long, 0), (*long, 1)]):
        np.testing.assert_array_equal(s["x"], steps)
        np.testing.assert_array_equal(s["y"], values[:, p].astype(np.float32))
        assert not s["reduced"] and "detail" not in s
    assert view["height"] == 40 + 230  # one row of panels


def test_long_runs_are_bucket_means_and_a_zoom_brings_each_runs_records():
    steps = np.arange(0, 40_000, 10)
    values = np.stack([np.sin(steps / 500), np.cos(steps / 700)], axis=1)
    other = (steps[::2], values[::2] + 1)
    series = {"a": (steps, values), "b": other}
    whole = decoded(class_panels_view(series, ["x", "y"], view="v", colours=run_colours(["a", "b"])))
    first = whole["series"][0]
    assert first["reduced"] and len(first["x"]) == PANEL_POINTS and first["first_step"] == 0
    bucket = len(steps) // PANEL_POINTS
    assert first["x"][0] == steps[bucket - 1]
    assert first["y"][0] == pytest.approx(values[:bucket, 0].mean(), abs=1e-6)
    zoomed = decoded(class_panels_view(series, ["x", "y"], view="v", colours=run_colours(["a", "b"]),
                                       zoom=(1000.0, 1500.0)))
    assert zoomed["zoom"] == [1000.0, 1500.0] and zoomed["version"] != whole["version"]
    for s in zoomed["series"]:
        run_steps, run_values = series["ab"[s["entry"]]]
        inside = (run_steps >= 1000) & (run_steps <= 1500)
        first_in, last_in = np.flatnonzero(inside)[[0, -1]]
        kept = slice(first_in - 1, last_in + 2)  # one record either side, so lines reach the edges
        detail = s["detail"]
        assert detail["range"] == [1000.0, 1500.0] and not detail["reduced"]
        np.testing.assert_array_equal(detail["x"], run_steps[kept])
        np.testing.assert_array_equal(detail["y"], run_values[kept, s["panel"]].astype(np.float32))
    # The whole runs' bucket means are still sent beside the detail.
    for s, before in zip(zoomed["series"], whole["series"]):
        np.testing.assert_array_equal(s["x"], before["x"])
        np.testing.assert_array_equal(s["y"], before["y"])


def test_a_run_whose_values_do_not_fit_the_panels_is_named():
    with pytest.raises(ValueError, match=r"run 'a': values of shape \(3, 3\) .* expected \(3, 2\)"):
        class_panels_view({"a": (np.arange(3), np.zeros((3, 3)))}, ["x", "y"], view="v", colours={"a": "#000000"})


def test_run_curves_keep_every_evaluation_exactly():
    series = {"a": (np.array([100, 200, 300]), np.array([41.25, 43.5, 47.125])), "b": (np.array([100]), np.array([40.0]))}
    view = decoded(run_curves_view(series, view="compare/miou", colours={"a": "#1", "b": "#2"}, y_title="mIoU (%)"))
    assert view["markers"] and view["panels"] == [{"title": ""}] and view["columns"] == 1
    assert [e["name"] for e in view["entries"]] == ["a", "b"]
    np.testing.assert_array_equal(view["series"][0]["y"], [41.25, 43.5, 47.125])
    assert view["series"][0]["y"].dtype == np.float64
    np.testing.assert_array_equal(view["series"][1]["x"], [100])


def test_band_curves_carry_the_mean_the_spread_and_the_seed_count():
    curves = {"ael": (np.array([100, 200]), np.array([0.4, 0.5]), np.array([0.01, np.nan]), np.array([3, 1])),
              "supervised": (np.array([100]), np.array([0.3]), np.array([0.02]), np.array([2]))}
    view = decoded(band_curves_view(curves, view="compare/group/g/teacher", y_title="mIoU (%)"))
    assert [e["name"] for e in view["entries"]] == ["ael (mean of 3 seeds)", "supervised (mean of 2 seeds)"]
    assert [e["id"] for e in view["entries"]] == ["ael", "supervised"]
    assert [e["colour"] for e in view["entries"]] == list(METHOD_COLOURS[:2])  # not the runs' colours
    assert not set(METHOD_COLOURS) & set(SERIES_COLOURS)
    ael = view["series"][0]
    np.testing.assert_array_equal(ael["y"], [40.0, 50.0])
    np.testing.assert_array_equal(ael["spread"], [1.0, np.nan])  # one seed: no spread to give
    np.testing.assert_array_equal(ael["count"], [3, 1])
    one = decoded(band_curves_view({"ael": (np.array([100]), np.array([0.4]), np.array([0.0]), np.array([1]))},
                                   view="v", colours={"ael": "#123456"}))
    assert [(e["name"], e["colour"]) for e in one["entries"]] == [("ael (1 seed)", "#123456")]
    assert np.isnan(one["series"][0]["spread"]).all()
    np.testing.assert_array_equal(view["series"][1]["spread"], [2.0])


def test_grouped_bars_take_whiskers_and_run_colours_and_fit_the_whiskers():
    bars = {"r1": np.array([50.0, 20.0]), "r2": np.array([40.0, 0.0])}
    view = decoded(grouped_bars_view(bars, ["a", "b"], view="compare/final-iou", labels={"r1": "r1 (step 200)"},
                                     errors={"r1": np.array([5.0, 1.0])}, colours={"r2": "#abcdef"}))
    assert [(e["id"], e["name"], e["colour"]) for e in view["entries"]] == [
        ("r1", "r1 (step 200)", SERIES_COLOURS[0]), ("r2", "r2", "#abcdef")]
    np.testing.assert_array_equal(view["groups"][0]["errors"], [5.0, 1.0])
    assert "errors" not in view["groups"][1]
    assert view["range"] == [0.0, pytest.approx(55.0 * 1.1)]  # the highest whisker, with room above
    with pytest.raises(ValueError):
        grouped_bars_view(bars, ["a", "b"], view="v", errors={"r1": np.array([1.0, 2.0, 3.0])})


def test_bad_inputs_name_the_run_label_or_key_at_fault():
    with pytest.raises(ValueError, match=r"no colour given for 'b'"):
        run_curves_view({"a": (np.arange(2), np.ones(2)), "b": (np.arange(2), np.ones(2))}, view="v",
                        colours={"a": "#000000"})
    with pytest.raises(ValueError, match=r"run 'a': steps and values must be 1-D of one length.*\(3,\), \(2,\)"):
        run_curves_view({"a": (np.arange(3), np.ones(2))}, view="v", colours={"a": "#000000"})
    with pytest.raises(ValueError, match=r"'ael': steps and values must be 1-D"):
        band_curves_view({"ael": (np.arange(2), np.ones((2, 2)), np.ones(2), np.ones(2))}, view="v")
    bars = {"r1": np.array([50.0, 20.0])}
    with pytest.raises(ValueError, match="linear axis only"):
        grouped_bars_view(bars, ["a", "b"], view="v", log_y=True, errors={"r1": np.ones(2)})
    with pytest.raises(ValueError, match=r"errors given for 'r9', which are not among the groups 'r1'"):
        grouped_bars_view(bars, ["a", "b"], view="v", errors={"r9": np.ones(2)})


def test_a_group_legend_names_the_seeds_pooled_even_when_they_share_no_step():
    # Three seeds evaluated at staggered steps: each step holds one of them.
    curves = {"ael": (np.array([100, 120, 150]), np.array([0.4, 0.5, 0.6]), np.zeros(3), np.array([1, 1, 1]))}
    view = decoded(band_curves_view(curves, view="v", seeds={"ael": 3}))
    assert view["entries"][0]["name"] == "ael (mean of 3 seeds)"
    assert np.isnan(view["series"][0]["spread"]).all()  # one seed a step: no spread drawn

