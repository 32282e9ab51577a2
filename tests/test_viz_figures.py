"""The figure builders: legends clear of titles, EMA smoothing, distinct class colours, zeros drawn on
log axes, chosen classes never faded."""

import itertools
import re

import numpy as np
import pytest

from ael.data.info import default_palette
from ael.data.synthetic import SyntheticSegmentation, synthetic_palette
from ael.viz.class_figures import ZERO_LABEL, grouped_bars_figure, iou_frequency_figure, log_ticks
from ael.viz.figures import class_lines_figure, scalar_lines_figure
from ael.viz.series import ema
from ael.viz.style import (
    LEGEND_TOP,
    MAX_LABEL_PX,
    MIN_DELTA_E,
    delta_e,
    label_margin,
    palette_colours,
    register_white_theme,
)

STEPS = np.arange(5)


def _rgb(css: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in re.findall(r"\d+", css)[:3])


def _legend_clear_of_title(fig) -> None:
    """A legend right of the plot area (x >= 1, anchored left) and top-aligned with it (y <= 1,
    anchored top) cannot reach the title, which plotly puts above the plot area."""
    legend = fig.layout.legend
    assert legend.x >= 1.0 and legend.xanchor == "left"
    assert legend.y <= 1.0 and legend.yanchor == "top"
    assert legend.orientation in (None, "v")


def test_every_legend_of_a_titled_figure_stays_clear_of_the_title():
    names = ["background", "road", "pole"]
    lines = {"loss/total": (STEPS, np.ones(5)), "loss/sup": (STEPS, np.ones(5) / 2)}
    figures = [
        scalar_lines_figure(lines, title="Losses"),
        scalar_lines_figure(lines, title="AEL diagnostics", smoothing=0.6),
        class_lines_figure(STEPS, np.zeros((5, 3)), names, title="Conf"),
        grouped_bars_figure({"labels": np.ones(3), "pseudo-labels": np.ones(3)}, names, title="Frequency"),
        iou_frequency_figure(np.array([0.5, 0.3, 0.2]), {"a": np.ones(3), "b": np.ones(3)}, names, title="IoU"),
    ]
    for fig in figures:
        assert fig.layout.title.text
        _legend_clear_of_title(fig)
    # Untitled, the plot area (and the legend's first entry) starts below plotly's toolbar.
    for fig in (scalar_lines_figure(lines), class_lines_figure(STEPS, np.zeros((5, 3)), names),
                grouped_bars_figure({"labels": np.ones(3)}, names)):
        _legend_clear_of_title(fig)
        assert fig.layout.margin.t >= LEGEND_TOP


def test_ema_is_tensorboards_debiased_average():
    # w = 0.5: s = 0.5, 1.25, 2.125 over debias 0.5, 0.75, 0.875.
    assert ema(np.array([1.0, 2.0, 3.0]), 0.5) == pytest.approx([1.0, 5 / 3, 17 / 7], abs=1e-12)
    # A NaN stays where it is and does not enter the average.
    out = ema(np.array([1.0, np.nan, 3.0]), 0.5)
    # after 1 and 3: s = 0.5 * 0.5 + 0.5 * 3 = 1.75 over 1 - 0.25.
    assert out[0] == 1.0 and np.isnan(out[1]) and out[2] == pytest.approx(1.75 / 0.75, abs=1e-12)
    assert np.array_equal(ema(np.array([4.0, 1.0]), 0.0), [4.0, 1.0])
    with pytest.raises(ValueError, match="smoothing"):
        ema(np.ones(3), 1.0)


def test_smoothed_lines_draw_the_ema_solid_and_the_raw_faint_in_one_legend_group():
    values = np.array([1.0, 2.0, 3.0, 2.0, 1.0])
    fig = scalar_lines_figure({"loss/total": (STEPS, values), "lr": (STEPS, np.ones(5))}, smoothing=0.5)
    assert len(fig.data) == 4
    raw, smooth = fig.data[0], fig.data[1]
    assert list(raw.y) == list(values) and raw.showlegend is False and raw.opacity < 0.5
    assert smooth.y == pytest.approx(ema(values, 0.5).tolist(), abs=1e-12)
    assert smooth.showlegend is not False and (smooth.opacity is None or smooth.opacity == 1)
    assert raw.legendgroup == smooth.legendgroup == "loss/total"
    assert raw.line.color == smooth.line.color
    assert fig.data[2].line.color != raw.line.color
    # Off: one trace per series, the raw values.
    plain = scalar_lines_figure({"loss/total": (STEPS, values)})
    assert len(plain.data) == 1 and list(plain.data[0].y) == list(values)
    with pytest.raises(ValueError, match="smoothing"):
        scalar_lines_figure({"x": (STEPS, values)}, smoothing=-0.1)


def _min_distance(colours: list[str]) -> float:
    return min(delta_e(_rgb(a), _rgb(b)) for a, b in itertools.combinations(colours, 2))


def test_palette_colours_are_distinct_for_any_palette():
    # The VOC map: background (black, lifted to grey 110) and class 7 (grey 128) read as one colour.
    voc = default_palette(8)
    assert delta_e((110, 110, 110), voc[7]) < MIN_DELTA_E
    colours = palette_colours(voc, 8)
    assert _min_distance(colours) >= MIN_DELTA_E
    assert colours[:7] == ["rgb(110,110,110)"] + [f"rgb({r},{g},{b})" for r, g, b in voc[1:7]]  # distinct ones kept
    # Twenty classes without a palette: plotly's cycle of ten repeats, so half are replaced.
    assert _min_distance(palette_colours(None, 20)) >= MIN_DELTA_E
    # A palette with exact duplicates.
    assert _min_distance(palette_colours([(200, 0, 0)] * 6, 6)) >= MIN_DELTA_E
    # 150 random classes cannot all be 20 apart, but none is a near-duplicate of another.
    many = palette_colours(np.random.default_rng(0).integers(0, 256, (150, 3)), 150)
    assert len(set(many)) == 150 and _min_distance(many) >= 10


def test_the_synthetic_set_has_distinct_class_colours():
    palette = SyntheticSegmentation("val", num_val=1, num_classes=8, image_size=32).info.palette
    assert tuple(palette) == synthetic_palette(8)
    pairs = itertools.combinations(synthetic_palette(16), 2)
    assert min(delta_e(a, b) for a, b in pairs) >= MIN_DELTA_E
    # Nothing for the chart colours to replace: they are the set's own.
    assert palette_colours(palette, 8) == [f"rgb({r},{g},{b})" for r, g, b in palette]
    assert len(synthetic_palette(20)) == 20


def test_a_chosen_class_is_never_faded():
    names = ["a", "b", "c", "d"]
    fig = class_lines_figure(STEPS, np.zeros((5, 4)), names, highlight=[3], visible=[1, 3])
    opacity = {t.name: t.opacity for t in fig.data}
    visible = {t.name: t.visible for t in fig.data}
    assert opacity["b"] == opacity["d"] == 1.0  # b is chosen though not a tail class
    assert visible["a"] == visible["c"] == "legendonly"
    # Without a choice the tail stands out and the rest are faded.
    fig = class_lines_figure(STEPS, np.zeros((5, 4)), names, highlight=[3])
    assert [t.opacity for t in fig.data] == [0.35, 0.35, 0.35, 1.0]


def test_a_wide_figure_lists_only_the_highlighted_or_chosen_classes():
    names = [f"class_{i}" for i in range(60)]
    values = np.zeros((5, 60))
    listed = lambda fig: [t.name for t in fig.data]  # noqa: E731
    assert listed(class_lines_figure(STEPS, values[:, :40], names[:40])) == names[:40]
    assert listed(class_lines_figure(STEPS, values, names, highlight=[50, 7])) == ["class_7", "class_50",
                                                                                    "58 other classes"]
    assert listed(class_lines_figure(STEPS, values, names, highlight=[50], visible=[3, 4])) == [
        "class_3", "class_4", "58 classes not chosen"]
    assert listed(class_lines_figure(STEPS, values, names)) == ["60 classes"]
    # Steps travel as int32 (the same numbers), values as the run store's float64.
    fig = class_lines_figure(np.arange(5) * 10, np.full((5, 2), 0.1234567890123), names[:2])
    assert fig.data[0].x.dtype == np.int32 and list(fig.data[0].x) == [0, 10, 20, 30, 40]
    assert fig.data[0].y.dtype == np.float64 and fig.data[0].y[0] == 0.1234567890123


def test_the_classes_a_wide_figure_does_not_list_are_bundles_that_name_each_line():
    names = [f"class_{i}" for i in range(45)]
    values = np.arange(3 * 45, dtype=np.float64).reshape(3, 45)  # value = 45 * step + class
    highlight = list(range(42))  # 42 highlighted: 40 listed, 2 more in their own bundle
    fig = class_lines_figure(np.array([0, 10, 20]), values, names, highlight=highlight)
    assert [t.name for t in fig.data][-2:] == ["2 more highlighted classes", "3 other classes"]
    more, others = fig.data[-2], fig.data[-1]
    # One line per class, a gap (NaN) between classes, every point named by its class.
    np.testing.assert_array_equal(more.y, [40, 85, 130, np.nan, 41, 86, 131, np.nan])
    assert list(more.x) == [0, 10, 20, 20, 0, 10, 20, 20]
    assert list(more.text) == ["class_40"] * 4 + ["class_41"] * 4
    assert list(others.text[::4]) == ["class_42", "class_43", "class_44"]
    assert "%{text}" in others.hovertemplate and others.connectgaps is False
    # The rest of the tail stands out from the faded other classes, and bundles follow the classes.
    assert others.opacity < more.opacity == 0.8
    assert [t.legendrank for t in fig.data][-2:] == [5000, 5001]
    assert max(t.legendrank for t in fig.data[:-2]) < 5000


def test_log_frequency_bars_keep_a_zero_class_flagged_at_the_floor():
    names = ["background", "blob-1", "ring", "disc"]
    groups = {"labels": np.array([0.6, 0.3, 0.002, 0.0005]), "pseudo-labels": np.array([0.7, 0.3, 0.0, 0.0])}
    fig = grouped_bars_figure(groups, names, log_y=True, percent=True, zero_label={"pseudo-labels": ZERO_LABEL})
    pseudo = fig.data[1]
    floor = 10 ** fig.layout.yaxis.range[0]
    assert floor == pytest.approx(1e-5)  # a decade below the smallest positive share, 0.05 %
    for c in (2, 3):  # ring and disc: never predicted, drawn, labelled, hatched, hover says 0
        assert floor < pseudo.y[c] < 0.0005
        assert pseudo.text[c] == ZERO_LABEL and pseudo.marker.pattern.shape[c] == "x"
        assert pseudo.customdata[c] == 0.0
    assert pseudo.text[:2] == ("", "") and list(pseudo.y[:2]) == [0.7, 0.3]
    assert fig.data[0].text == ("",) * 4
    assert list(fig.layout.yaxis.ticktext) == ["0.001 %", "0.01 %", "0.1 %", "1 %", "10 %", "100 %"]
    # Without a label of its own a zero reads "0" on a log axis.
    plain = grouped_bars_figure(groups, names, log_y=True)
    assert plain.data[1].text == ("", "", "0", "0") and floor < plain.data[1].y[3] < 0.0005
    # On a linear axis a zero bar has no height: a given label marks it (an IoU of 0 gets none by default).
    linear = grouped_bars_figure(groups, names, zero_label=ZERO_LABEL)
    assert list(linear.data[1].y[2:]) == [0.0, 0.0] and linear.data[1].text[2:] == (ZERO_LABEL, ZERO_LABEL)
    assert grouped_bars_figure(groups, names).data[1].text == ("",) * 4


def test_log_ticks_read_as_plain_numbers():
    assert log_ticks(0.003, 20) == ([0.001, 0.01, 0.1, 1.0, 10.0, 100.0], ["0.001", "0.01", "0.1", "1", "10", "100"])
    assert log_ticks(2e-4, 0.5, percent=True)[1] == ["0.01 %", "0.1 %", "1 %", "10 %", "100 %"]


def test_label_margin_fits_the_longest_class_name_up_to_a_cap():
    assert label_margin(["sky", "sign-symbol"], base=16) == 16 + 7 * len("sign-symbol")
    assert label_margin([], base=12) == 12
    assert label_margin(["x" * 500], base=10) == 10 + MAX_LABEL_PX


def test_the_white_theme_is_plotly_white_without_automatic_margins():
    import plotly.graph_objects as go
    import plotly.io as pio

    name = register_white_theme()
    theme = pio.templates[name]
    assert theme.layout.plot_bgcolor == "white" and theme.layout.xaxis.gridcolor == "#EBF0F8"
    assert theme.layout.xaxis.automargin is False and theme.layout.yaxis.automargin is False
    assert set(theme.data.to_plotly_json()) == {"bar", "heatmap"}  # not the 20 other trace types
    # Used as the template of a figure (the dashboard makes it the default), it styles that figure.
    fig = go.Figure(layout={"template": name})
    assert fig.layout.template.layout.paper_bgcolor == "white"
