"""Colours shared by the figure builders (class palettes, series, CSS), and plotly on first use.

Plotly is imported when a figure is built (:func:`plotly_go`), so ``import ael.viz`` works
without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np

__all__ = ["SERIES_COLOURS", "palette_colours", "plotly_go", "rgb_css"]

#: Trace colours of series that are not classes (plotly's default cycle).
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf")


def plotly_go() -> ModuleType:
    """``plotly.graph_objects``, imported on first use."""
    import plotly.graph_objects as go

    return go


def rgb_css(colour: Sequence[int], alpha: float | None = None) -> str:
    """``(r, g, b)`` ints as a CSS colour (``rgba`` when ``alpha`` is given)."""
    r, g, b = (int(v) for v in colour[:3])
    return f"rgb({r},{g},{b})" if alpha is None else f"rgba({r},{g},{b},{alpha:g})"


def palette_colours(palette: np.ndarray | Sequence[Sequence[int]] | None, count: int) -> list[str]:
    """CSS colours of ``count`` classes: the palette's (near-black lifted to grey), else a fixed cycle."""
    if palette is None or len(palette) < count:
        return [SERIES_COLOURS[i % len(SERIES_COLOURS)] for i in range(count)]
    colours = []
    for i in range(count):
        r, g, b = (int(v) for v in palette[i])
        # A near-black class colour (VOC background) would vanish on a dark theme and read as
        # "missing" on a light one: lift it to grey.
        if r + g + b < 60:
            r = g = b = 110
        colours.append(f"rgb({r},{g},{b})")
    return colours
