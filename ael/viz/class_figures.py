"""Plotly figures of per-class vectors at one step: bars per vector, groups side by side, IoU
against pixel frequency.

Every builder takes plain numpy arrays and returns a ``plotly.graph_objects.Figure``; plotly is
imported when a figure is built. Figures over steps are :mod:`ael.viz.figures`'.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ael.viz.style import LEGEND_TOP, label_margin, legend_right, palette_colours, plotly_go, series_colour

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["ZERO_LABEL", "LogBarAxis", "bar_rows_height", "checked_vectors", "class_bars_figure", "grouped_bars_figure", "iou_frequency_figure",
           "log_bar_axis", "log_ticks", "zero_bar_label"]

#: Text over the bar of a class whose value is exactly zero (e.g. a class the teacher never predicts).
ZERO_LABEL = "0 — never predicted"


def class_bars_figure(
    vectors: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    *,
    palette: np.ndarray | Sequence[Sequence[int]] | None = None,
    highlight: Sequence[int] = (),
    title: str = "",
    height_per_row: int = 170,
    uirevision: str | None = None,
) -> go.Figure:
    """Several per-class vectors at one step, one row each over a shared class axis.

    Rows have their own y scale: the bank lives in [0, 1] while a class distribution sums to 1
    over C classes. Bars take the class colours; highlighted classes get an outline.

    Args:
        vectors: row title -> ``(C,)`` values.
        class_names: C names.
        palette: ``(C, 3)`` class colours.
        highlight: class indices outlined.
        title: figure title.
        height_per_row: pixels per row.
        uirevision: keeps zoom across redraws while it stays the same.
    """
    go = plotly_go()
    from plotly.subplots import make_subplots

    names = [str(n) for n in class_names]
    rows = max(1, len(vectors))
    layout = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                           subplot_titles=list(vectors) or None).layout.to_plotly_json()
    colours = palette_colours(palette, len(names))
    outlined = set(int(c) for c in highlight)
    widths = [2.5 if c in outlined else 0 for c in range(len(names))]
    traces = []
    for r, (label, vector) in enumerate(checked_vectors(vectors, len(names)).items(), start=1):
        traces.append({"type": "bar", "x": names, "y": vector, "name": label, "showlegend": False,
                       "marker": {"color": colours, "line": {"color": "black", "width": widths}},
                       "hovertemplate": "%{x}: %{y:.4f}<extra>" + label + "</extra>",
                       "xaxis": "x" if r == 1 else f"x{r}", "yaxis": "y" if r == 1 else f"y{r}"})
    layout.pop("template", None)
    layout.update(title={"text": title} if title else None, height=bar_rows_height(rows, height_per_row), bargap=0.15,
                  margin={"l": 50, "r": 10, "t": 50 if title else 30, "b": label_margin(names, base=16)},
                  uirevision=uirevision)
    # Plain checked data without plotly's per-property validation (150 colours a row): a third
    # of the time to build the figure.
    return go.Figure(data=traces, layout=layout, _validate=False)


def log_ticks(low: float, high: float, *, percent: bool = False) -> tuple[list[float], list[str]]:
    """Tick values and labels at every decade from ``low`` to ``high`` (both > 0), written plainly:
    ``0.001``, ``0.01``, ... or, for shares with ``percent``, ``0.1 %``, ``1 %``, ``10 %``, ``100 %``."""
    first, last = int(np.floor(np.log10(low))), int(np.ceil(np.log10(high)))
    shift, unit = (2, " %") if percent else (0, "")
    # Decimals from the exponent itself: log10 of 10.0 ** -4 * 100 may land a hair under -2.
    labels = [f"{10.0 ** (e + shift):.{max(0, -(e + shift))}f}{unit}" for e in range(first, last + 1)]
    return [10.0**e for e in range(first, last + 1)], labels


def bar_rows_height(rows: int, per_row: int = 170) -> int:
    """Pixels of ``rows`` rows of per-class bars (:func:`class_bars_figure`), ``per_row`` each."""
    return 40 + per_row * max(1, rows)


def checked_vectors(vectors: Mapping[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """``vectors`` (name -> per-class values) as float64 arrays, each checked to hold ``count`` classes
    (a ``ValueError`` names the vector that does not)."""
    checked = {}
    for label, vector in vectors.items():
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (count,):
            raise ValueError(f"{label}: expected shape ({count},), got {vector.shape}")
        checked[label] = vector
    return checked


def zero_bar_label(zero_label: str | Mapping[str, str] | None, group: str, *, log_y: bool) -> str:
    """The text over a zero bar of ``group`` (:func:`grouped_bars_figure`'s ``zero_label``)."""
    text = zero_label.get(group) if isinstance(zero_label, Mapping) else zero_label
    return text or ("0" if log_y else "")


class LogBarAxis(NamedTuple):
    """The log y axis of bars that may be zero (:func:`log_bar_axis`)."""

    stub: float  #: the height a zero bar is drawn at
    range: tuple[float, float]  #: log10 of the axis' ends
    tickvals: list[float]
    ticktext: list[str]


def log_bar_axis(vectors: Iterable[np.ndarray], *, percent: bool = False) -> LogBarAxis:
    """A log axis for bars of ``vectors`` where a zero is drawn, not dropped: the axis starts at a
    floor a decade below the smallest positive value, a zero bar is a stub a third of a decade
    above it (visible, and clearly below every real bar), and half a decade of headroom above the
    tallest bar keeps the zero labels inside the plot. Ticks at each decade (:func:`log_ticks`)."""
    values = np.concatenate([v[np.isfinite(v)] for v in (np.asarray(v, dtype=np.float64) for v in vectors)]
                            or [np.zeros(0)])
    positive = values[values > 0]
    high = float(positive.max()) if positive.size else 1.0
    floor = 10.0 ** (np.floor(np.log10(positive.min())) - 1) if positive.size else high / 1000
    tickvals, ticktext = log_ticks(floor, high, percent=percent)
    return LogBarAxis(float(floor * 10**0.3), (float(np.log10(floor)), float(np.log10(high)) + 0.5), tickvals,
                      ticktext)


def grouped_bars_figure(
    groups: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    *,
    title: str = "",
    y_title: str = "",
    log_y: bool = False,
    height: int = 360,
    errors: Mapping[str, np.ndarray] | None = None,
    percent: bool = False,
    zero_label: str | Mapping[str, str] | None = None,
    uirevision: str | None = None,
    colours: Mapping[str, str] | None = None,
) -> go.Figure:
    """Per-class vectors side by side (e.g. pixel frequency in labels vs pseudo-labels, or the
    final per-class IoU of several runs), one bar colour per group.

    A value of exactly zero is drawn, never dropped: on a log axis (where zero has no place) its
    bar is a short cross-hatched stub at the axis floor, a decade below the smallest positive
    value, labelled ``0`` or ``zero_label`` (hover gives the true 0); on a linear axis it is
    labelled only when ``zero_label`` is given. A class
    nobody predicts is the signal to see, not a missing bar.

    Args:
        groups: legend name -> ``(C,)`` values.
        class_names: C names.
        title, y_title: labels.
        log_y: logarithmic y axis (frequencies of long-tailed classes), ticks at each decade.
        height: pixels.
        errors: legend name -> ``(C,)`` error bar half-lengths (the spread over seeds), optional.
        percent: the values are shares in [0, 1]: log ticks read ``0.1 %``, ``1 %``, ...
        zero_label: text over a zero bar, one for all groups or per group name (e.g.
            :data:`ZERO_LABEL` for pseudo-labels); None: ``0`` on a log axis, nothing on a linear one.
        uirevision: keeps zoom and legend toggles across redraws while it stays the same.
        colours: legend name -> bar colour (e.g. :func:`~ael.viz.style.method_colour` for the
            methods of a comparison group); the series colours otherwise.
    """
    go = plotly_go()
    colours = colours or {}
    names = [str(n) for n in class_names]
    vectors = checked_vectors(groups, len(names))
    axis = log_bar_axis(vectors.values(), percent=percent) if log_y else None
    stub = axis.stub if axis else None
    traces = []
    for n, (label, vector) in enumerate(vectors.items()):
        zero = vector == 0
        label_zero = zero_bar_label(zero_label, label, log_y=log_y)
        trace = {"type": "bar", "x": names, "y": np.where(zero, stub, vector) if log_y else vector, "name": label,
                 "customdata": vector, "textposition": "outside", "cliponaxis": False, "textfont": {"size": 10},
                 "marker": {"color": colours.get(label, series_colour(n)),
                            "pattern": {"shape": ["x" if z else "" for z in zero], "solidity": 0.4}},
                 "text": [label_zero if z else "" for z in zero],
                 "hovertemplate": "%{x}: %{customdata:.4g}<extra>" + label + "</extra>"}
        if errors is not None and label in errors:
            trace["error_y"] = {"type": "data", "array": np.asarray(errors[label], dtype=np.float64), "visible": True}
        traces.append(trace)
    yaxis: dict = {"title": {"text": y_title} if y_title else None}
    if axis is not None:
        yaxis.update(type="log", range=list(axis.range), tickvals=axis.tickvals, ticktext=axis.ticktext)
    layout = {"barmode": "group", "title": {"text": title} if title else None, "height": height, "yaxis": yaxis,
              "margin": {"l": 60, "r": 10, "t": 40 if title else LEGEND_TOP, "b": label_margin(names, base=16)},
              "legend": legend_right(), "uirevision": uirevision}
    # Plain checked data without plotly's per-property validation (per-bar patterns and labels).
    return go.Figure(data=traces, layout=layout, _validate=False)


def iou_frequency_figure(
    frequencies: np.ndarray,
    ious: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    *,
    tail_share: float | None = None,
    title: str = "",
    height: int = 420,
) -> go.Figure:
    """Per-class IoU against pixel frequency (log x): one marker series per run, the same class
    joined across runs by a thin grey line, so the tail classes' gains read at a glance.

    Args:
        frequencies: ``(C,)`` pixel shares (classes with a share <= 0 or NaN are left out).
        ious: legend name -> ``(C,)`` IoU (any unit; NaN where absent).
        class_names: C names (hover text and labels).
        tail_share: draw a dashed vertical line at this share (the tail boundary).
        title: figure title.
        height: pixels.
    """
    go = plotly_go()
    names = [str(n) for n in class_names]
    frequencies = np.asarray(frequencies, dtype=np.float64)
    if frequencies.shape != (len(names),):
        raise ValueError(f"frequencies: expected shape ({len(names)},), got {frequencies.shape}")
    shown = np.isfinite(frequencies) & (frequencies > 0)
    x = frequencies[shown]
    labels = [n for n, keep in zip(names, shown) if keep]
    fig = go.Figure()
    vectors = {label: vector[shown] for label, vector in checked_vectors(ious, len(names)).items()}
    if len(vectors) > 1:
        stacked = np.stack(list(vectors.values()))  # (R, C')
        xs = np.repeat(x[:, None], len(vectors) + 1, axis=1)
        ys = np.concatenate([stacked.T, np.full((len(x), 1), np.nan)], axis=1)
        xs[:, -1] = np.nan
        fig.add_trace(go.Scatter(x=xs.ravel(), y=ys.ravel(), mode="lines", line={"color": "#bbbbbb", "width": 1},
                                 hoverinfo="skip", showlegend=False, name="same class"))
    for n, (label, vector) in enumerate(vectors.items()):
        fig.add_trace(go.Scatter(x=x, y=vector, mode="markers+text" if n == 0 else "markers", name=label,
                                 text=labels if n == 0 else None, textposition="top center",
                                 marker={"size": 9, "color": series_colour(n)},
                                 customdata=labels,
                                 hovertemplate="%{customdata}: share %{x:.3g}, IoU %{y:.2f}<extra>" + label
                                               + "</extra>"))
    if tail_share is not None and tail_share > 0:
        # A trace, not a shape: shape coordinates on a log axis are easy to get wrong.
        values = np.concatenate([v[np.isfinite(v)] for v in vectors.values()] or [np.zeros(0)])
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        fig.add_trace(go.Scatter(x=[tail_share, tail_share], y=[low, high], mode="lines", name="tail boundary",
                                 line={"dash": "dash", "color": "#888888", "width": 1}, hoverinfo="skip"))
    fig.update_layout(title=title or None, height=height, margin={"l": 50, "r": 10, "t": 40 if title else LEGEND_TOP, "b": 40},
                      xaxis_title="pixel share (labeled)", yaxis_title="IoU", legend=legend_right())
    fig.update_xaxes(type="log")
    return fig
