"""Colours shared by the figure builders (class palettes, series, CSS), legend placement, and plotly on
first use.

Plotly is imported when a figure is built (:func:`plotly_go`), so ``import ael.viz`` works
without it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from types import ModuleType

import numpy as np

__all__ = ["LEGEND_TOP", "METHOD_COLOURS", "MIN_DELTA_E", "SERIES_COLOURS", "WHITE_THEME", "delta_e", "label_margin",
           "legend_right", "method_colour", "palette_colours", "plotly_go", "register_white_theme", "rgb_css",
           "series_colour"]

#: Trace colours of series that are not classes (plotly's default cycle).
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf")

#: Smallest CIELAB distance (Delta E 1976) between two class colours of one figure. About 2.3 is
#: the just-noticeable difference on large patches; thin lines and small bars need far more, and
#: at 20 the VOC grey (128, 128, 128) and the lifted black (110, 110, 110) (Delta E ~ 7) count as
#: one colour, as they read on a chart.
MIN_DELTA_E = 20.0


#: Colours of methods pooled over seeds (a comparison group), darker than :data:`SERIES_COLOURS`, so
#: a method does not read as one of the runs drawn in series colours beside it.
METHOD_COLOURS = ("#1b2a6b", "#b2182b", "#1b7837", "#6a3d9a", "#b35806", "#01665e", "#4d4d4d")


def series_colour(n: int) -> str:
    """The colour of the ``n``-th series that is not a class (a run, a group of bars)."""
    return SERIES_COLOURS[n % len(SERIES_COLOURS)]


def method_colour(n: int) -> str:
    """The colour of the ``n``-th method of a comparison group (its mean over seeds)."""
    return METHOD_COLOURS[n % len(METHOD_COLOURS)]


def plotly_go() -> ModuleType:
    """``plotly.graph_objects``, imported on first use."""
    import plotly.graph_objects as go

    return go


#: Pixels per character of a tick label in plotly's 12 px font (a generous average), and the
#: widest room :func:`label_margin` gives labels.
LABEL_CHAR_PX = 7
MAX_LABEL_PX = 220


def label_margin(labels: Sequence[object], *, base: int) -> int:
    """A margin (pixels) that holds the longest of ``labels`` beside an axis, or below it when
    plotly turns them upright, plus ``base`` for the ticks and the gap.

    Figures with class names on an axis size that margin themselves: :data:`WHITE_THEME` draws
    without plotly's automatic margins, and a cut-off class name reads as another class.
    """
    longest = max((len(str(label)) for label in labels), default=0)
    return base + min(MAX_LABEL_PX, LABEL_CHAR_PX * longest)


#: The name :func:`register_white_theme` gives plotly's lean white template.
WHITE_THEME = "ael_white"


def register_white_theme() -> str:
    """Register :data:`WHITE_THEME` with plotly (once) and return its name.

    It is ``plotly_white``'s look (white background, light grid, its fonts and colours) without
    what these figures never use (map, polar, 3-d and ternary styling, the templates of twenty
    other trace types): a quarter of its size in every figure sent to a browser. Axes keep the
    margins a figure sets (no ``automargin``): on a 2-core machine the five charts of the
    confidence page drew in 215 ms instead of 440 ms without it.

    The dashboard makes it plotly's default template, so a figure gets it as it is built, without
    the validated copy of a whole template that ``update_layout(template=...)`` makes each time.
    """
    import plotly.io as pio

    if WHITE_THEME not in pio.templates:
        white = pio.templates["plotly_white"]
        kept = ("xaxis", "yaxis", "font", "paper_bgcolor", "plot_bgcolor", "hoverlabel", "hovermode", "colorway",
                "colorscale", "coloraxis", "title", "autotypenumbers")
        layout = {k: v for k, v in white.layout.to_plotly_json().items() if k in kept}
        for axis in ("xaxis", "yaxis"):
            # Automatic margins measure every tick label and draw the figure a second time: about
            # half of a chart's drawing time. Figures size their margins (:func:`label_margin`).
            layout[axis] = {**layout[axis], "automargin": False}
        data = {kind: traces for kind, traces in white.data.to_plotly_json().items() if kind in ("bar", "heatmap")}
        pio.templates[WHITE_THEME] = plotly_go().layout.Template(layout=layout, data=data)
    return WHITE_THEME


def rgb_css(colour: Sequence[int], alpha: float | None = None) -> str:
    """``(r, g, b)`` ints as a CSS colour (``rgba`` when ``alpha`` is given)."""
    r, g, b = (int(v) for v in colour[:3])
    return f"rgb({r},{g},{b})" if alpha is None else f"rgba({r},{g},{b},{alpha:g})"


#: Top margin (pixels) of an untitled figure with a legend: plotly's toolbar (modebar) sits in the
#: figure's top 30 or so pixels, and over the first legend entry it takes its clicks.
LEGEND_TOP = 34


def legend_right() -> dict:
    """Legend layout of every figure: a column right of the plot area, top-aligned with it.

    Outside the plot area plotly widens the right margin to fit it, so a legend never sits over
    the title (above the plot area) or is clipped at the figure's edge, however many entries.
    """
    return {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0, "yanchor": "top"}


def _lab(rgb: np.ndarray) -> np.ndarray:
    """``(N, 3)`` sRGB ints in [0, 255] as CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def delta_e(a: Sequence[int], b: Sequence[int]) -> float:
    """Perceptual distance (CIELAB Delta E 1976) between two ``(r, g, b)`` colours."""
    lab = _lab(np.array([a[:3], b[:3]]))
    return float(np.linalg.norm(lab[0] - lab[1]))


@functools.lru_cache(maxsize=1)
def _candidates() -> tuple[np.ndarray, np.ndarray]:
    """Replacement colours to choose from: an RGB grid without near-whites (they vanish on white)."""
    levels = np.linspace(0, 255, 11).round().astype(int)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = _lab(grid)
    keep = lab[:, 0] < 88
    return grid[keep], lab[keep]


@functools.lru_cache(maxsize=64)
def _distinct(colours: tuple[tuple[int, int, int], ...]) -> tuple[tuple[int, int, int], ...]:
    """The colours in order, each one closer than :data:`MIN_DELTA_E` to an earlier one replaced by
    the candidate farthest from every colour kept so far (so the earlier class keeps its colour)."""
    grid, grid_lab = _candidates()
    labs = _lab(np.array(colours)) if colours else np.zeros((0, 3))
    kept: list[tuple[int, int, int]] = []
    kept_lab = np.empty((len(colours), 3))
    # Distance of every candidate to its nearest kept colour, updated as colours are kept.
    nearest = np.full(len(grid), np.inf)
    for i, (colour, lab) in enumerate(zip(colours, labs)):
        if i and float(np.sqrt(((kept_lab[:i] - lab) ** 2).sum(axis=1).min())) < MIN_DELTA_E:
            best = int(nearest.argmax())
            colour, lab = tuple(int(v) for v in grid[best]), grid_lab[best]
        kept.append(colour)
        kept_lab[i] = lab
        nearest = np.minimum(nearest, np.sqrt(((grid_lab - lab) ** 2).sum(axis=1)))
    return tuple(kept)


def palette_colours(palette: np.ndarray | Sequence[Sequence[int]] | None, count: int) -> list[str]:
    """CSS colours of ``count`` classes, every one distinct from the others.

    The palette's colours are kept where they are distinct: a near-black one (VOC background) is
    lifted to grey first (it would read as "missing" on a chart), then a colour closer than
    :data:`MIN_DELTA_E` to an earlier class's is replaced by a well-separated one. Without a
    palette (or a short one), plotly's cycle is the start, made distinct the same way.
    """
    if palette is None or len(palette) < count:
        start = [tuple(int(SERIES_COLOURS[i % len(SERIES_COLOURS)][k:k + 2], 16) for k in (1, 3, 5))
                 for i in range(count)]
    else:
        start = []
        for i in range(count):
            r, g, b = (int(v) for v in palette[i][:3])
            if r + g + b < 60:
                r = g = b = 110
            start.append((r, g, b))
    return [rgb_css(c) for c in _distinct(tuple(start))]
