"""The plotly figure builders: reduction of long series, WebGL switch, shapes of what is drawn."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from ael.viz.class_figures import class_bars_figure, grouped_bars_figure
from ael.viz.figures import WEBGL_THRESHOLD, class_heatmap_figure, class_lines_figure, scalar_lines_figure
from ael.viz.series import lowest_classes, reduce_steps


def test_reduce_mean_exact_buckets():
    steps = np.arange(10)
    values = np.arange(10, dtype=np.float64)
    s, v = reduce_steps(steps, values, 5, mode="mean")
    np.testing.assert_array_equal(s, [1, 3, 5, 7, 9])
    np.testing.assert_allclose(v, [0.5, 2.5, 4.5, 6.5, 8.5])


def test_reduce_mean_uneven_last_bucket_and_nan():
    steps = np.arange(7)
    values = np.array([[0, 1], [2, np.nan], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13]], dtype=np.float64)
    s, v = reduce_steps(steps, values, 3, mode="mean")  # buckets of 3: [0..2], [3..5], [6]
    np.testing.assert_array_equal(s, [2, 5, 6])
    np.testing.assert_allclose(v, [[2, 3], [8, 9], [12, 13]])


def test_reduce_minmax_keeps_spikes_in_order():
    values = np.zeros(1000)
    values[123] = 50.0
    values[877] = -40.0
    s, v = reduce_steps(np.arange(1000), values, 10, mode="minmax")
    assert len(s) <= 20
    assert np.all(np.diff(s) > 0)
    assert 50.0 in v and -40.0 in v
    assert s[list(v).index(50.0)] == 123 and s[list(v).index(-40.0)] == 877


def test_reduce_short_series_untouched_and_errors():
    s, _v = reduce_steps(np.arange(5), np.ones(5), 10)
    assert len(s) == 5
    with pytest.raises(ValueError, match="max_points"):
        reduce_steps(np.arange(5), np.ones(5), 0)
    with pytest.raises(ValueError, match="differ in length"):
        reduce_steps(np.arange(5), np.ones(4), 2)
    with pytest.raises(ValueError, match=r"\(T,\) series"):
        reduce_steps(np.arange(50), np.ones((50, 2)), 2, mode="minmax")


def test_lowest_classes_skips_nan():
    assert lowest_classes(np.array([0.5, np.nan, 0.1, 0.3]), 2) == [2, 3]
    assert lowest_classes(np.array([np.nan, np.nan]), 3) == []


def test_class_lines_40k_steps_150_classes_is_bounded():
    steps = np.arange(0, 40_000, 10)
    values = np.random.default_rng(0).random((len(steps), 150))
    names = [f"c{i}" for i in range(150)]
    fig = class_lines_figure(steps, values, names, highlight=[3, 7], max_points=600)
    # The two highlighted classes are traces of their own, the other 148 one faded bundle.
    assert [t.name for t in fig.data] == ["c3", "c7", "148 other classes"]
    assert all(isinstance(t, go.Scatter) for t in fig.data)  # the point budget keeps it SVG-light
    assert sum(len(t.x) for t in fig.data) <= 40_000
    assert fig.data[0].line.width > fig.data[2].line.width
    assert fig.data[2].opacity < 1.0 and fig.data[0].opacity == 1.0
    fig = class_lines_figure(steps, values, names, max_total_points=200_000, max_points=600)
    assert all(isinstance(t, go.Scattergl) for t in fig.data)  # past WEBGL_THRESHOLD points
    assert 150 * 500 < len(fig.data[0].x) <= 150 * 601
    assert isinstance(class_lines_figure(steps, values, names, webgl=True).data[0], go.Scattergl)


def test_small_figures_use_svg_traces():
    fig = class_lines_figure(np.arange(10), np.zeros((10, 3)), ["a", "b", "c"])
    assert all(isinstance(t, go.Scatter) for t in fig.data)
    assert WEBGL_THRESHOLD >= 10 * 3


def test_heatmap_is_one_trace_classes_by_columns():
    steps = np.arange(0, 40_000, 10)
    values = np.random.default_rng(0).random((len(steps), 150))
    fig = class_heatmap_figure(steps, values, [f"c{i}" for i in range(150)], max_columns=500)
    assert len(fig.data) == 1
    z = np.asarray(fig.data[0].z)
    assert z.shape == (150, 500)
    np.testing.assert_allclose(z[:, 0], values[:8].mean(axis=0))


def test_shape_errors_name_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(T, 3\)"):
        class_lines_figure(np.arange(4), np.zeros((4, 2)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="bank"):
        class_bars_figure({"bank": np.zeros(2)}, ["a", "b", "c"])
    with pytest.raises(ValueError, match="run-a"):
        grouped_bars_figure({"run-a": np.zeros(4)}, ["a", "b", "c"])


def test_bars_and_scalars():
    fig = class_bars_figure({"bank": np.array([0.1, 0.9]), "cutmix": np.array([0.6, 0.4])}, ["a", "b"],
                            palette=[[0, 0, 0], [200, 10, 10]], highlight=[1])
    assert len(fig.data) == 2
    np.testing.assert_allclose(fig.data[1].y, [0.6, 0.4])
    assert fig.data[0].marker.color[0] == "rgb(110,110,110)"  # black lifted to grey
    fig = scalar_lines_figure({"loss": (np.arange(5000), np.ones(5000))}, max_points=100, uirevision="r")
    assert len(fig.data[0].x) <= 200 and fig.layout.uirevision == "r"


def test_hidden_classes_stay_in_the_legend():
    fig = class_lines_figure(np.arange(10), np.zeros((10, 3)), ["a", "b", "c"], visible=[1])
    assert [t.visible for t in fig.data] == ["legendonly", True, "legendonly"]
    fig = class_lines_figure(np.arange(10), np.zeros((10, 3)), ["a", "b", "c"])
    assert all(t.visible is True for t in fig.data)
