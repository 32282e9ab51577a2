"""Plotly figures of a run over its steps: scalar curves, per-class curves, a classes x steps heatmap.

Every builder takes plain numpy arrays (as :mod:`ael.runs` returns them) and returns a
``plotly.graph_objects.Figure``. Long runs stay light: series are reduced to a bounded number of
points per trace (:func:`~ael.viz.series.reduce_steps`), per-class lines switch to WebGL
(``scattergl``) past a few thousand points, and a classes x steps view is one heatmap built from a
numpy array. Per-class figures at one step are :mod:`ael.viz.class_figures`'.

Plotly is imported when a figure is built, so ``import ael.viz`` works without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np

from ael.viz.series import ema, reduce_steps
from ael.viz.style import LEGEND_TOP, label_margin, legend_right, palette_colours, plotly_go, series_colour

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "BUNDLES",
    "MAX_LEGEND_ENTRIES",
    "WEBGL_THRESHOLD",
    "BundleStyle",
    "ClassLine",
    "bundle_name",
    "bundle_style",
    "checked_matrix",
    "class_heatmap_figure",
    "class_line_roles",
    "class_lines_figure",
    "heatmap_height",
    "scalar_lines_figure",
]

#: Total points in a figure above which line traces use WebGL (``scattergl``). Figures are
#: first reduced to a point budget (see :func:`class_lines_figure`), and below it SVG draws
#: faster than WebGL in a browser without a GPU (software GL): on a 2-core machine a live
#: 150-class figure kept within one refresh of the writer with SVG and fell ~15 s behind with
#: WebGL. Pass ``webgl=True`` for more points on a GPU browser (a notebook's).
WEBGL_THRESHOLD = 50_000

#: Most legend entries of a per-class figure. A 150-entry legend is unreadable and was a third of
#: the time to draw the figure in a browser; past it only the highlighted or chosen classes are
#: listed (the others still name themselves on hover).
MAX_LEGEND_ENTRIES = 40


def _compact(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steps as int32 where they fit (exactly the same numbers): plotly sends numpy arrays as typed
    binary, and a per-class figure repeats its steps once per class. Values stay float64, the
    run store's own numbers."""
    steps = np.asarray(steps)
    if steps.dtype.kind in "iu" and (steps.size == 0 or int(np.abs(steps).max()) < 2**31):
        steps = steps.astype(np.int32)
    return steps, values


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
    smoothing: float = 0.0,
) -> go.Figure:
    """Scalar series over steps, one trace each, in one figure.

    With ``smoothing`` each series is drawn twice in its colour: the debiased EMA
    (:func:`~ael.viz.series.ema`, computed on every record before reduction) solid, and the raw
    series faint behind it, in one legend group so a legend click hides both.

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
        smoothing: EMA weight in [0, 1); 0 draws the raw series only.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    go = plotly_go()
    raw = {name: (np.asarray(s), np.asarray(v, dtype=np.float64)) for name, (s, v) in series.items()}
    reduced = {name: reduce_steps(s, v, max_points, mode=mode) for name, (s, v) in raw.items()}
    # The mean of each bucket of the smoothed curve: it is smooth, so min/max would only thicken it.
    smoothed = {name: reduce_steps(s, ema(v, smoothing), max_points, mode="mean") for name, (s, v) in raw.items()
                } if smoothing else {}
    total = sum(len(s) for s, _ in reduced.values()) + sum(len(s) for s, _ in smoothed.values())
    trace = go.Scattergl if (total > WEBGL_THRESHOLD if webgl is None else webgl) else go.Scatter
    fig = go.Figure()
    line_mode = "lines+markers" if markers else "lines"
    for n, (name, (steps, values)) in enumerate(reduced.items()):
        colour = series_colour(n)
        if smoothing:
            fig.add_trace(trace(x=steps, y=values, name=name, legendgroup=name, showlegend=False, mode=line_mode,
                                opacity=0.25, line={"color": colour, "width": 1}, hoverinfo="skip"))
            steps, values = smoothed[name]
        fig.add_trace(trace(x=steps, y=values, name=name, legendgroup=name, mode=line_mode,
                            line={"color": colour, "width": 1.5}))
    fig.update_layout(title=title or None, height=height, margin={"l": 50, "r": 10, "t": 40 if title else LEGEND_TOP, "b": 40},
                      xaxis_title="step", yaxis_title=y_title or None, uirevision=uirevision,
                      showlegend=True, legend=legend_right())
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
    max_total_points: int = 20_000,
    markers: bool = False,
    uirevision: str | None = None,
    height: int = 420,
    webgl: bool | None = None,
) -> go.Figure:
    """Per-class curves over steps in one figure: one trace per class, toggled from the legend.

    Highlighted classes (e.g. the tail) are drawn thick and opaque, the rest thin and faded, except
    the classes of ``visible`` when given: a class the user chose to see is never faded.
    Long series are reduced first (bucket means), to ``max_points`` per class and
    ``max_total_points`` in all; past :data:`WEBGL_THRESHOLD` points the traces are ``scattergl``.

    Past :data:`MAX_LEGEND_ENTRIES` classes only the highlighted (or the ``visible``) classes are
    listed in the legend, each its own trace; every other class is a line of a grey bundle, one
    trace per kind (more highlighted classes, other classes, classes not chosen), listed as one
    legend entry, and names itself on hover. A browser spends about a millisecond per trace on a
    2-core machine: 150 class traces took 150 ms to draw, 10 classes and one bundle about 40 ms.

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
            150 classes stay as light as a dozen for the browser (133 points per class then: a
            chart a thousand pixels wide shows no more).
        markers: draw markers (for a handful of evaluations).
        uirevision: keeps zoom and legend toggles across redraws while it stays the same.
        height: pixels.
        webgl: force ``scattergl`` (True) or SVG (False); None: past :data:`WEBGL_THRESHOLD` points.
    """
    go = plotly_go()
    values = checked_matrix(values, len(class_names))
    per_class = max(100, min(max_points, max_total_points // max(1, len(class_names))))
    steps, values = _compact(*reduce_steps(np.asarray(steps), values, per_class, mode="mean"))
    colours = palette_colours(palette, len(class_names))
    kind = "scattergl" if (values.size > WEBGL_THRESHOLD if webgl is None else webgl) else "scatter"
    mode = "lines+markers" if markers else "lines"
    columns = np.ascontiguousarray(values.T)  # (C, K): one contiguous row per trace
    traces = []
    bundles: dict[str, list[int]] = {label: [] for label in BUNDLES}
    for c, (name, role) in enumerate(zip(class_names, class_line_roles(len(class_names), highlight, visible))):
        if role.bundle is not None:
            bundles[role.bundle].append(c)
            continue
        traces.append({
            "type": kind, "x": steps, "y": columns[c], "name": str(name), "mode": mode,
            "line": {"color": colours[c], "width": role.width}, "opacity": role.opacity,
            "legendrank": role.rank, "visible": True if role.drawn else "legendonly",
        })
    alone = not traces  # no class listed on its own
    for label, members in bundles.items():
        if members:
            traces.append(_bundle(label, bundle_name(label, len(members), alone=alone), members, steps, columns,
                                  class_names, kind=kind, mode=mode, style=bundle_style(label, highlight)))
    layout = {"title": {"text": title} if title else None, "height": height,
              "margin": {"l": 50, "r": 10, "t": 40 if title else LEGEND_TOP, "b": 40},
              "xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": y_title} if y_title else None},
              "uirevision": uirevision,
              "legend": {**legend_right(), "itemclick": "toggle", "itemdoubleclick": "toggleothers"}}
    # Built from checked plain data without plotly's per-property validation, which costs
    # ~2 ms a trace: 150 classes redrawn every refresh would spend most of it there.
    return go.Figure(data=traces, layout=layout, _validate=False)


#: The bundles of a wide per-class figure (classes not listed in its legend), in legend order.
BUNDLES = _MORE_HIGHLIGHTED, _OTHERS, _NOT_CHOSEN = "more highlighted classes", "other classes", "classes not chosen"


class ClassLine(NamedTuple):
    """How one class's line is drawn in a per-class figure (:func:`class_line_roles`)."""

    bundle: str | None  #: the :data:`BUNDLES` entry it is drawn in, None when the legend lists it
    drawn: bool  #: drawn at first (else hidden, one legend click away)
    width: float  #: line width (px)
    opacity: float
    rank: int  #: legend order: highlighted classes first


def class_line_roles(count: int, highlight: Sequence[int] = (), visible: Sequence[int] | None = None) -> list[ClassLine]:
    """The line of each of ``count`` classes: thick and opaque for highlighted classes (and, when
    some are, thin and faded for the rest, except the classes of ``visible``), hidden outside
    ``visible``, and past :data:`MAX_LEGEND_ENTRIES` classes listed only when highlighted (or
    visible), the others in a grey bundle. Every renderer of per-class lines draws by it."""
    emphasised = set(int(c) for c in highlight)
    shown = None if visible is None else set(int(c) for c in visible)
    listed = set(range(count))
    if count > MAX_LEGEND_ENTRIES:
        listed = set(sorted(shown if shown is not None else emphasised)[:MAX_LEGEND_ENTRIES])
    roles = []
    for c in range(count):
        strong = not emphasised or c in emphasised or (shown is not None and c in shown)
        drawn = shown is None or c in shown
        bundle = None
        if c not in listed:
            bundle = _NOT_CHOSEN if not drawn else _MORE_HIGHLIGHTED if emphasised and strong else _OTHERS
        roles.append(ClassLine(bundle, drawn, 2.5 if emphasised and strong else 1.2, 1.0 if strong else 0.35,
                               (0 if c in emphasised else 1000) + c))
    return roles


def bundle_name(label: str, members: int, *, alone: bool) -> str:
    """The legend entry of a bundle of ``members`` classes; ``alone`` when no class is listed on its
    own (then "other classes" are simply "classes")."""
    return f"{members} {'classes' if alone and label == _OTHERS else label}"


class BundleStyle(NamedTuple):
    """How a bundle of class lines is drawn (:func:`bundle_style`)."""

    colour: str
    opacity: float
    width: float
    hidden: bool  #: hidden at first (the classes the user did not choose), one legend click away


def bundle_style(label: str, highlight: Sequence[int]) -> BundleStyle:
    """The bundle ``label`` (one of :data:`BUNDLES`) beside the ``highlight`` classes: thin grey
    lines, fainter for the other classes beside highlighted ones."""
    faded = label == _OTHERS and len(highlight) > 0
    colour, opacity = ("rgb(150,150,150)", 0.35) if faded else ("rgb(95,95,95)", 0.8)
    return BundleStyle(colour, opacity, 1.0, label == _NOT_CHOSEN)


def checked_matrix(values: np.ndarray, count: int) -> np.ndarray:
    """``values`` as a float64 ``(T, count)`` array (a ``ValueError`` says the shape it has)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != count:
        raise ValueError(f"values must be (T, {count}), got shape {values.shape}")
    return values


def heatmap_height(rows: int) -> int:
    """Pixels of a classes x steps heatmap of ``rows`` classes: 9 a class, within [260, 900]."""
    return int(min(900, max(260, 60 + 9 * rows)))


def _bundle(label: str, name: str, members: list[int], steps: np.ndarray, columns: np.ndarray,
            class_names: Sequence[str], *, kind: str, mode: str, style: BundleStyle) -> dict:
    """The classes ``members`` as the lines of one trace (a gap between classes), named on hover;
    ``label`` is one of :data:`BUNDLES`, ``name`` the legend entry."""
    gap = np.full((len(members), 1), np.nan)
    y = np.concatenate([columns[members], gap], axis=1).ravel()
    x = np.tile(np.append(steps, steps[-1] if len(steps) else 0), len(members)).astype(steps.dtype, copy=False)
    # A fixed-width string array, not one of objects: plotly deep-copies a figure's arrays twice.
    text = np.repeat(np.array([str(class_names[c]) for c in members]), len(steps) + 1)
    return {"type": kind, "x": x, "y": y, "text": text, "name": name, "mode": mode,
            "hovertemplate": "%{text}<br>step %{x}: %{y:.4g}<extra></extra>", "connectgaps": False,
            "line": {"color": style.colour, "width": style.width},
            "opacity": style.opacity, "legendrank": 5000 + BUNDLES.index(label),
            "visible": "legendonly" if style.hidden else True}


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
    go = plotly_go()
    values = checked_matrix(values, len(class_names))
    steps, values = _compact(*reduce_steps(np.asarray(steps), values, max_columns, mode="mean"))
    fig = go.Figure(go.Heatmap(
        z=np.ascontiguousarray(values.T), x=np.asarray(steps), y=[str(n) for n in class_names],
        zmin=zmin, zmax=zmax, colorscale=colorscale, colorbar={"title": {"text": colorbar_title}},
        hovertemplate="step %{x}<br>%{y}: %{z:.4f}<extra></extra>",
    ))
    rows = len(class_names)
    fig.update_layout(title=title or None, height=height or heatmap_height(rows),
                      margin={"l": label_margin(class_names, base=12), "r": 10, "t": 40 if title else 10, "b": 40},
                      xaxis_title="step",
                      uirevision=uirevision)
    fig.update_yaxes(autorange="reversed")
    return fig
