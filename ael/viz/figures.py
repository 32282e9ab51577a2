"""Plotly figure builders shared by the dashboard and the notebooks.

Every builder takes plain numpy arrays (as :mod:`ael.runs` returns them) and returns a
``plotly.graph_objects.Figure``. Long runs stay light: series are reduced to a bounded number of
points per trace (:func:`reduce_steps`), per-class lines switch to WebGL (``scattergl``) past a
few thousand points, and a classes x steps view is one heatmap built from a numpy array.

Plotly is imported when a figure is built, so ``import ael.viz`` works without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "WEBGL_THRESHOLD",
    "class_bars_figure",
    "class_heatmap_figure",
    "class_lines_figure",
    "grouped_bars_figure",
    "iou_frequency_figure",
    "lowest_classes",
    "reduce_steps",
    "rgb_css",
    "scalar_lines_figure",
]

#: Total points in a figure above which line traces use WebGL (``scattergl``). Figures are
#: first reduced to a point budget (see :func:`class_lines_figure`), and below it SVG draws
#: faster than WebGL in a browser without a GPU (software GL): on a 2-core machine a live
#: 150-class page kept within one refresh of the writer with SVG and fell ~15 s behind with
#: WebGL. Pass ``webgl=True`` for more points on a GPU browser.
WEBGL_THRESHOLD = 50_000

_SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf")


def _go():
    import plotly.graph_objects as go

    return go


def rgb_css(colour: Sequence[int], alpha: float | None = None) -> str:
    """``(r, g, b)`` ints as a CSS colour (``rgba`` when ``alpha`` is given)."""
    r, g, b = (int(v) for v in colour[:3])
    return f"rgb({r},{g},{b})" if alpha is None else f"rgba({r},{g},{b},{alpha:g})"


def _palette_colours(palette: np.ndarray | Sequence[Sequence[int]] | None, count: int) -> list[str]:
    if palette is None or len(palette) < count:
        return [_SERIES_COLOURS[i % len(_SERIES_COLOURS)] for i in range(count)]
    colours = []
    for i in range(count):
        r, g, b = (int(v) for v in palette[i])
        # A near-black class colour (VOC background) would vanish on a dark theme and read as
        # "missing" on a light one: lift it to grey.
        if r + g + b < 60:
            r = g = b = 110
        colours.append(f"rgb({r},{g},{b})")
    return colours


def reduce_steps(
    steps: np.ndarray, values: np.ndarray, max_points: int, *, mode: Literal["mean", "minmax"] = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a series to at most ``max_points`` points (``2 * max_points`` for ``minmax``).

    Consecutive records are grouped into equal buckets. ``mean`` keeps each bucket's mean at its
    last step (right for smooth curves such as the confidence bank); ``minmax`` keeps each
    bucket's minimum and maximum at their own steps, in step order, so spikes in a noisy loss
    stay visible. NaNs are ignored within a bucket.

    Args:
        steps: ``(T,)`` increasing steps.
        values: ``(T,)`` or ``(T, C)``; ``minmax`` needs ``(T,)``.
        max_points: buckets to keep (>= 1).
        mode: ``"mean"`` or ``"minmax"``.

    Returns:
        ``(steps (K,), values (K,) or (K, C))``; the input arrays when already short enough.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64)
    if len(steps) != len(values):
        raise ValueError(f"steps ({len(steps)}) and values ({len(values)}) differ in length")
    total = len(steps)
    if total <= (2 * max_points if mode == "minmax" else max_points):
        return steps, values
    size = math.ceil(total / max_points)
    buckets = math.ceil(total / size)
    pad = buckets * size - total
    if mode == "mean":
        padded = np.concatenate([values, np.full((pad, *values.shape[1:]), np.nan)]) if pad else values
        grouped = padded.reshape(buckets, size, *values.shape[1:])
        counts = np.sum(~np.isnan(grouped), axis=1)
        sums = np.nansum(grouped, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        last = np.minimum(np.arange(1, buckets + 1) * size, total) - 1
        return steps[last], means
    if mode != "minmax":
        raise ValueError(f"mode must be 'mean' or 'minmax', got {mode!r}")
    if values.ndim != 1:
        raise ValueError(f"minmax reduction needs a (T,) series, got shape {values.shape}")
    lo_fill = np.concatenate([values, np.full(pad, np.inf)]) if pad else values
    hi_fill = np.concatenate([values, np.full(pad, -np.inf)]) if pad else values
    lo = np.where(np.isnan(lo_fill), np.inf, lo_fill).reshape(buckets, size)
    hi = np.where(np.isnan(hi_fill), -np.inf, hi_fill).reshape(buckets, size)
    base = np.arange(buckets) * size
    first = base + lo.argmin(axis=1)
    second = base + hi.argmax(axis=1)
    index = np.stack([np.minimum(first, second), np.maximum(first, second)], axis=1).ravel()
    index = np.minimum(index, total - 1)
    index = index[np.concatenate([[True], index[1:] != index[:-1]])]
    return steps[index], values[index]


def lowest_classes(vector: np.ndarray, count: int) -> list[int]:
    """Indices of the ``count`` smallest finite entries (e.g. the tail classes by pixel frequency)."""
    vector = np.asarray(vector, dtype=np.float64)
    finite = np.where(np.isfinite(vector), vector, np.inf)
    order = np.argsort(finite, kind="stable")
    return [int(i) for i in order[: max(0, count)] if np.isfinite(finite[i])]


def scalar_lines_figure(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str = "",
    y_title: str = "",
    max_points: int = 1500,
    log_y: bool = False,
    mode: Literal["mean", "minmax"] = "minmax",
    markers: bool = False,
    uirevision: str | None = None,
    height: int = 320,
    webgl: bool | None = None,
) -> go.Figure:
    """Scalar series over steps, one trace each, in one figure.

    Args:
        series: name -> ``(steps (T,), values (T,))``.
        title: figure title; y_title: the y axis label.
        max_points: points kept per trace (see :func:`reduce_steps`).
        log_y: logarithmic y axis.
        mode: reduction of long series (``minmax`` keeps spikes).
        markers: draw markers too (for sparse series such as evaluations).
        uirevision: keeps zoom and hidden traces across redraws while it stays the same.
        height: pixels.
        webgl: force ``scattergl`` (True) or SVG (False); None: past :data:`WEBGL_THRESHOLD` points.
    """
    go = _go()
    reduced = {name: reduce_steps(s, v, max_points, mode=mode) for name, (s, v) in series.items()}
    total = sum(len(s) for s, _ in reduced.values())
    trace = go.Scattergl if (total > WEBGL_THRESHOLD if webgl is None else webgl) else go.Scatter
    fig = go.Figure()
    for n, (name, (steps, values)) in enumerate(reduced.items()):
        fig.add_trace(trace(x=steps, y=values, name=name, mode="lines+markers" if markers else "lines",
                            line={"color": _SERIES_COLOURS[n % len(_SERIES_COLOURS)], "width": 1.5}))
    fig.update_layout(title=title or None, height=height, margin={"l": 50, "r": 10, "t": 40 if title else 10, "b": 40},
                      xaxis_title="step", yaxis_title=y_title or None, uirevision=uirevision,
                      showlegend=True,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0})
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def class_lines_figure(
    steps: np.ndarray,
    values: np.ndarray,
    class_names: Sequence[str],
    *,
    palette: np.ndarray | Sequence[Sequence[int]] | None = None,
    highlight: Sequence[int] = (),
    visible: Sequence[int] | None = None,
    title: str = "",
    y_title: str = "",
    max_points: int = 600,
    max_total_points: int = 40_000,
    markers: bool = False,
    uirevision: str | None = None,
    height: int = 420,
    webgl: bool | None = None,
) -> go.Figure:
    """Per-class curves over steps in one figure: one trace per class, toggled from the legend.

    Highlighted classes (e.g. the tail) are drawn thick and opaque, the rest thin and faded.
    Long series are reduced first (bucket means), to ``max_points`` per class and
    ``max_total_points`` in all; past :data:`WEBGL_THRESHOLD` points the traces are ``scattergl``.

    Args:
        steps: ``(T,)``.
        values: ``(T, C)``.
        class_names: C names (legend entries).
        palette: ``(C, 3)`` class colours; None: a fixed cycle.
        highlight: class indices to emphasise.
        visible: classes drawn; the others stay in the legend (``legendonly``), one click away.
            None draws every class.
        title, y_title: labels.
        max_points: points kept per class (bucket means, see :func:`reduce_steps`).
        max_total_points: cap on all classes together (at least 100 per class are kept), so
            150 classes stay as light as a dozen for the browser.
        markers: draw markers (for a handful of evaluations).
        uirevision: keeps zoom and legend toggles across redraws while it stays the same.
        height: pixels.
        webgl: force ``scattergl`` (True) or SVG (False); None: past :data:`WEBGL_THRESHOLD` points.
    """
    go = _go()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(class_names):
        raise ValueError(f"values must be (T, {len(class_names)}), got shape {values.shape}")
    per_class = max(100, min(max_points, max_total_points // max(1, len(class_names))))
    steps, values = reduce_steps(np.asarray(steps), values, per_class, mode="mean")
    colours = _palette_colours(palette, len(class_names))
    emphasised = set(int(c) for c in highlight)
    shown = None if visible is None else set(int(c) for c in visible)
    kind = "scattergl" if (values.size > WEBGL_THRESHOLD if webgl is None else webgl) else "scatter"
    columns = np.ascontiguousarray(values.T)  # (C, K): one contiguous row per trace
    traces = []
    for c, name in enumerate(class_names):
        strong = not emphasised or c in emphasised
        traces.append({
            "type": kind, "x": steps, "y": columns[c], "name": str(name),
            "mode": "lines+markers" if markers else "lines",
            "line": {"color": colours[c], "width": 2.5 if (emphasised and strong) else 1.2},
            "opacity": 1.0 if strong else 0.35, "legendrank": (0 if c in emphasised else 1000) + c,
            "visible": True if shown is None or c in shown else "legendonly",
        })
    layout = {"title": {"text": title} if title else None, "height": height,
              "margin": {"l": 50, "r": 10, "t": 40 if title else 10, "b": 40},
              "xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": y_title} if y_title else None},
              "uirevision": uirevision, "legend": {"itemclick": "toggle", "itemdoubleclick": "toggleothers"}}
    # Built from checked plain data without plotly's per-property validation, which costs
    # ~2 ms a trace: 150 classes redrawn every refresh would spend most of it there.
    return go.Figure(data=traces, layout=layout, _validate=False)


def class_heatmap_figure(
    steps: np.ndarray,
    values: np.ndarray,
    class_names: Sequence[str],
    *,
    title: str = "",
    max_columns: int = 400,
    zmin: float | None = 0.0,
    zmax: float | None = 1.0,
    colorscale: str = "Viridis",
    colorbar_title: str = "",
    uirevision: str | None = None,
    height: int | None = None,
) -> go.Figure:
    """Classes x steps as one heatmap (columns are bucket means past ``max_columns`` steps).

    Args:
        steps: ``(T,)``.
        values: ``(T, C)``.
        class_names: C row labels.
        title: figure title.
        max_columns: most columns drawn.
        zmin, zmax: colour range (None: from the data).
        colorscale: a plotly colour scale name.
        colorbar_title: label of the colour bar.
        uirevision: keeps zoom across redraws.
        height: pixels (default grows with C).
    """
    go = _go()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(class_names):
        raise ValueError(f"values must be (T, {len(class_names)}), got shape {values.shape}")
    steps, values = reduce_steps(np.asarray(steps), values, max_columns, mode="mean")
    fig = go.Figure(go.Heatmap(
        z=np.ascontiguousarray(values.T), x=np.asarray(steps), y=[str(n) for n in class_names],
        zmin=zmin, zmax=zmax, colorscale=colorscale, colorbar={"title": {"text": colorbar_title}},
        hovertemplate="step %{x}<br>%{y}: %{z:.4f}<extra></extra>",
    ))
    rows = len(class_names)
    fig.update_layout(title=title or None, height=height or int(min(900, max(260, 60 + 9 * rows))),
                      margin={"l": 90, "r": 10, "t": 40 if title else 10, "b": 40}, xaxis_title="step",
                      uirevision=uirevision)
    fig.update_yaxes(autorange="reversed")
    return fig


def class_bars_figure(
    vectors: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    *,
    palette: np.ndarray | Sequence[Sequence[int]] | None = None,
    highlight: Sequence[int] = (),
    title: str = "",
    height_per_row: int = 170,
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
    """
    go = _go()
    from plotly.subplots import make_subplots

    names = [str(n) for n in class_names]
    rows = max(1, len(vectors))
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=list(vectors) or None)
    colours = _palette_colours(palette, len(names))
    outlined = set(int(c) for c in highlight)
    widths = [2.5 if c in outlined else 0 for c in range(len(names))]
    for r, (label, vector) in enumerate(vectors.items(), start=1):
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (len(names),):
            raise ValueError(f"{label}: expected shape ({len(names)},), got {vector.shape}")
        fig.add_trace(go.Bar(x=names, y=vector, name=label, marker={"color": colours,
                                                                    "line": {"color": "black", "width": widths}},
                             hovertemplate="%{x}: %{y:.4f}<extra>" + label + "</extra>", showlegend=False),
                      row=r, col=1)
    fig.update_layout(title=title or None, height=40 + height_per_row * rows, bargap=0.15,
                      margin={"l": 50, "r": 10, "t": 50 if title else 30, "b": 40})
    return fig


def grouped_bars_figure(
    groups: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    *,
    title: str = "",
    y_title: str = "",
    log_y: bool = False,
    height: int = 360,
) -> go.Figure:
    """Per-class vectors side by side (e.g. pixel frequency in labels vs pseudo-labels, or the
    final per-class IoU of several runs), one bar colour per group.

    Args:
        groups: legend name -> ``(C,)`` values.
        class_names: C names.
        title, y_title: labels.
        log_y: logarithmic y axis (frequencies of long-tailed classes).
        height: pixels.
    """
    go = _go()
    names = [str(n) for n in class_names]
    fig = go.Figure()
    for n, (label, vector) in enumerate(groups.items()):
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (len(names),):
            raise ValueError(f"{label}: expected shape ({len(names)},), got {vector.shape}")
        fig.add_trace(go.Bar(x=names, y=vector, name=label, marker_color=_SERIES_COLOURS[n % len(_SERIES_COLOURS)]))
    fig.update_layout(barmode="group", title=title or None, height=height, yaxis_title=y_title or None,
                      margin={"l": 50, "r": 10, "t": 40 if title else 10, "b": 40},
                      legend={"orientation": "h", "y": 1.08})
    if log_y:
        fig.update_yaxes(type="log")
    return fig


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
    go = _go()
    names = [str(n) for n in class_names]
    frequencies = np.asarray(frequencies, dtype=np.float64)
    if frequencies.shape != (len(names),):
        raise ValueError(f"frequencies: expected shape ({len(names)},), got {frequencies.shape}")
    shown = np.isfinite(frequencies) & (frequencies > 0)
    x = frequencies[shown]
    labels = [n for n, keep in zip(names, shown) if keep]
    fig = go.Figure()
    vectors = {}
    for label, vector in ious.items():
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (len(names),):
            raise ValueError(f"{label}: expected shape ({len(names)},), got {vector.shape}")
        vectors[label] = vector[shown]
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
                                 marker={"size": 9, "color": _SERIES_COLOURS[n % len(_SERIES_COLOURS)]},
                                 customdata=labels,
                                 hovertemplate="%{customdata}: share %{x:.3g}, IoU %{y:.2f}<extra>" + label
                                               + "</extra>"))
    if tail_share is not None and tail_share > 0:
        # A trace, not a shape: shape coordinates on a log axis are easy to get wrong.
        values = np.concatenate([v[np.isfinite(v)] for v in vectors.values()] or [np.zeros(0)])
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        fig.add_trace(go.Scatter(x=[tail_share, tail_share], y=[low, high], mode="lines", name="tail boundary",
                                 line={"dash": "dash", "color": "#888888", "width": 1}, hoverinfo="skip"))
    fig.update_layout(title=title or None, height=height, margin={"l": 50, "r": 10, "t": 40 if title else 10, "b": 40},
                      xaxis_title="pixel share (labeled)", yaxis_title="IoU", legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(type="log")
    return fig
