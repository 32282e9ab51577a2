"""The data of the confidence page's canvas charts: the same decisions as the notebooks' plotly figures,
arrays that decode to the run's numbers, a version that changes with the data and only with it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from canvas_support import decoded

from ael.viz.class_figures import ZERO_LABEL, grouped_bars_figure
from ael.viz.figures import class_lines_figure

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))
from ael_app.canvas_views import bar_rows_view, class_lines_view, grouped_bars_view, heatmap_view

NAMES = ["background", "region", "blob-1", "blob-2", "blob-3", "line", "ring", "disc"]


def _series(classes: int, steps: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.arange(0, 10 * steps, 10), rng.random((steps, classes))


def test_class_lines_list_highlighted_classes_first_thick_and_the_rest_faded():
    steps, values = _series(8)
    view = decoded(class_lines_view(steps, values, NAMES, view="run/bank", highlight=[5, 6], y_title="Conf_c"))
    assert [e["name"] for e in view["entries"]] == ["line", "ring", "background", "region", "blob-1", "blob-2",
                                                    "blob-3", "disc"]
    assert [s["width"] for s in view["series"]] == [1.2] * 5 + [2.5, 2.5, 1.2]
    assert [s["alpha"] for s in view["series"]] == [0.35] * 5 + [1.0, 1.0, 0.35]
    assert [view["entries"][s["entry"]]["name"] for s in view["series"]] == NAMES
    assert not any(e["hidden"] for e in view["entries"])
    # The run's numbers, as float32, one row of steps per class.
    assert view["x"].dtype == np.float64  # steps exactly, however long the run
    np.testing.assert_array_equal(view["x"], steps)
    np.testing.assert_array_equal(view["y"].reshape(8, -1), values.T.astype(np.float32))
    assert (view["kind"], view["y_title"], view["x_title"], view["view"]) == ("lines", "Conf_c", "step", "run/bank")
    assert [e["id"] for e in view["entries"]] == [e["name"] for e in view["entries"]]  # a class is known by its name
    assert (view["reduced"], view["first_step"]) == (False, 0)  # every record drawn: a point is a step


def test_class_lines_hide_what_the_filter_leaves_out_as_the_plotly_figure_does():
    steps, values = _series(8)
    view = class_lines_view(steps, values, NAMES, view="v", highlight=[5, 6], visible=[6])
    figure = class_lines_figure(steps, values, NAMES, highlight=[5, 6], visible=[6])
    plotly_hidden = {t.name for t in figure.data if t.visible == "legendonly"}
    assert {e["name"] for e in view["entries"] if e["hidden"]} == plotly_hidden == set(NAMES) - {"ring"}


def test_past_forty_classes_the_others_are_one_grey_bundle_named_as_in_the_plotly_figure():
    names = [f"class_{i:03d}" for i in range(150)]
    steps, values = _series(150, steps=2000)
    view = decoded(class_lines_view(steps, values, names, view="v", highlight=[3, 7, 9]))
    figure = class_lines_figure(steps, values, names, highlight=[3, 7, 9])
    assert [e["name"] for e in view["entries"]] == [t.name for t in figure.data] == [
        "class_003", "class_007", "class_009", "147 other classes"]
    assert view["entries"][3]["id"] == "other classes"  # a legend click on it holds when the count changes
    assert (view["reduced"], view["first_step"]) == (True, 0)  # a point is the mean of a bucket of steps
    bundle = view["entries"][3]
    assert (bundle["colour"], bundle["hidden"]) == ("rgb(150,150,150)", False)
    assert {view["series"][c]["entry"] for c in range(150) if c not in (3, 7, 9)} == {3}
    assert {view["series"][c]["alpha"] for c in range(150) if c not in (3, 7, 9)} == {0.35}
    # At most 20 000 points in all (133 bucket means a class), the steps the plotly figure keeps.
    np.testing.assert_array_equal(view["x"], np.asarray(figure.data[0].x))
    assert len(view["x"]) <= 133 and view["y"].size == len(view["x"]) * 150


def test_with_no_class_listed_the_bundle_is_named_as_the_plotly_figure_names_it():
    names = [f"class_{i:03d}" for i in range(60)]
    steps, values = _series(60)
    for highlight, visible in (((), None), ((), ()), ((3,), ())):
        view = class_lines_view(steps, values, names, view="v", highlight=highlight, visible=visible)
        figure = class_lines_figure(steps, values, names, highlight=highlight, visible=visible)
        assert [e["name"] for e in view["entries"]] == [t.name for t in figure.data], (highlight, visible)
        assert [e["hidden"] for e in view["entries"]] == [t.visible == "legendonly" for t in figure.data]


def test_the_version_follows_the_data_and_nothing_else():
    steps, values = _series(8)
    first = class_lines_view(steps, values, NAMES, view="v")
    assert class_lines_view(steps, values.copy(), NAMES, view="v")["version"] == first["version"]
    changed = values.copy()
    changed[-1, 2] += 0.01
    assert class_lines_view(steps, changed, NAMES, view="v")["version"] != first["version"]


def test_heatmap_keeps_bucket_means_and_grows_with_the_classes():
    steps, values = _series(8, steps=1000)
    view = decoded(heatmap_view(steps, values, NAMES, view="v", colour_title="Conf", max_columns=100))
    assert len(view["x"]) == 100 and view["z"].shape == (800,)
    np.testing.assert_allclose(view["z"].reshape(8, 100)[:, 0], values[:10].mean(axis=0), rtol=1e-6)
    assert view["x"][0] == 90  # a bucket's mean sits at its last step
    assert (view["reduced"], view["first_step"]) == (True, 0)
    assert (view["zmin"], view["zmax"], view["colour_title"], view["height"]) == (0.0, 1.0, "Conf", 260)
    assert heatmap_view(*_series(150), [str(i) for i in range(150)], view="v")["height"] == 900


def test_bar_rows_hold_float64_values_exactly_and_name_a_wrong_row():
    vectors = {"confidence bank Conf (step 40)": np.linspace(0.1, 0.8, 8) / 3,
               "sampling ratio r_c (step 40)": np.full(8, 1 / 7)}
    view = decoded(bar_rows_view(vectors, NAMES, view="v", highlight=[6, 5]))
    assert [r["title"] for r in view["rows"]] == list(vectors)
    for row, values in zip(view["rows"], vectors.values()):
        assert row["values"].dtype == np.float64
        np.testing.assert_array_equal(row["values"], values)
    assert view["outlined"] == [5, 6] and view["height"] == 40 + 2 * 170 and len(view["colours"]) == 8
    with pytest.raises(ValueError, match=r"sampling ratio r_c \(step 40\): expected shape \(8,\), got \(7,\)"):
        bar_rows_view({"sampling ratio r_c (step 40)": np.ones(7)}, NAMES, view="v")


def test_grouped_bars_on_a_log_axis_place_zero_stubs_and_ticks_as_the_plotly_figure():
    groups = {"labels": np.full(8, 1 / 8), "pseudo-labels": np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0.0, 0.0])}
    zero = {"labels": "0 — not in the labels", "pseudo-labels": ZERO_LABEL}
    view = decoded(grouped_bars_view(groups, NAMES, view="v", log_y=True, percent=True, zero_label=zero))
    figure = grouped_bars_figure(groups, NAMES, log_y=True, percent=True, zero_label=zero)
    assert view["range"] == pytest.approx(list(figure.layout.yaxis.range))
    assert [t for _, t in view["ticks"]] == list(figure.layout.yaxis.ticktext) == ["0.1 %", "1 %", "10 %", "100 %"]
    assert [10 ** v for v, _ in view["ticks"]] == pytest.approx(list(figure.layout.yaxis.tickvals))
    assert view["stub"] == pytest.approx(figure.data[1].y[6])
    assert [g["zero_label"] for g in view["groups"]] == ["0 — not in the labels", ZERO_LABEL]
    np.testing.assert_array_equal(view["groups"][1]["values"], groups["pseudo-labels"])
    assert [e["name"] for e in view["entries"]] == ["labels", "pseudo-labels"] and view["percent"]
    labelled = grouped_bars_view(groups, NAMES, view="v", labels={"labels": "labels (step 30)"})
    assert [(e["id"], e["name"]) for e in labelled["entries"]] == [("labels", "labels (step 30)"),
                                                                   ("pseudo-labels", "pseudo-labels")]


def test_grouped_bars_on_a_linear_axis_start_at_zero():
    view = grouped_bars_view({"a": np.array([0.0, 2.0, 4.0, 1.0, 0, 0, 0, 0])}, NAMES, view="v")
    assert view["range"] == pytest.approx([0.0, 4.4]) and view["ticks"] is None and not view["log"]
    assert view["groups"][0]["zero_label"] == ""  # a linear axis labels a zero only when asked


def test_a_zoom_brings_every_record_of_its_range_when_the_run_is_drawn_as_buckets():
    steps, values = _series(8, steps=3000)  # 3000 records, 600 points a class: buckets of 5
    view = decoded(class_lines_view(steps, values, NAMES, view="v", zoom=(10_000.0, 12_000.0)))
    assert view["reduced"] and view["zoomable"]
    detail = view["detail"]
    assert detail["range"] == [10_000.0, 12_000.0] and not detail["reduced"]
    # The 201 records from step 10 000 to 12 000, and one either side.
    np.testing.assert_array_equal(detail["x"], np.arange(9_990, 12_011, 10))
    assert view["zoom"] == [10_000.0, 12_000.0]  # the zoom it was built for, which the chart compares with its own
    np.testing.assert_array_equal(detail["y"].reshape(8, -1), values[999:1202].T.astype(np.float32))
    assert detail["first_step"] == 9_990
    # A short run is drawn record by record already: nothing more to send.
    short = class_lines_view(*_series(8), NAMES, view="v", zoom=(100.0, 200.0))
    assert "detail" not in short and short["zoom"] == [100.0, 200.0]
    assert class_lines_view(*_series(8), NAMES, view="v")["zoom"] is None
    # A zoom past the run's end: its last record, the one before, nothing invented.
    edge = decoded(class_lines_view(steps, values, NAMES, view="v", zoom=(29_990.0, 40_000.0)))
    np.testing.assert_array_equal(edge["detail"]["x"], [29_980, 29_990])
    # The heatmap's columns: the 91 records from step 0 to 900 and the next fit in its 100 columns.
    heat = decoded(heatmap_view(steps, values, NAMES, view="v", max_columns=100, zoom=(0.0, 900.0)))
    np.testing.assert_array_equal(heat["detail"]["x"], np.arange(0, 911, 10))
    assert heat["detail"]["z"].shape == (8 * 92,) and not heat["detail"]["reduced"]
    wider = decoded(heatmap_view(steps, values, NAMES, view="v", max_columns=100, zoom=(0.0, 2_000.0)))
    assert wider["detail"]["reduced"] and len(wider["detail"]["x"]) <= 100


def test_a_reported_zoom_is_read_only_when_it_is_two_finite_increasing_numbers(monkeypatch):
    import streamlit as st
    from ael_app.canvas_chart import zoom_of

    states = {"a": {"zoom": [10, 20.5]}, "b": {"zoom": None}, "c": {"zoom": [20, 10]}, "d": {"zoom": ["x", 1]},
              "e": {"zoom": [0, float("inf")]}, "f": {"zoom": [1, 2, 3]}, "g": {}}
    monkeypatch.setattr(st, "session_state", states)
    assert zoom_of("a") == (10.0, 20.5)
    assert [zoom_of(k) for k in "bcdefgh"] == [None] * 7
