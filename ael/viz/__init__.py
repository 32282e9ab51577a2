"""Colour overlays, previews and figures shared by the preview command, the dashboard and the notebooks."""

from ael.viz.images import (
    bar_chart,
    colorize,
    confidence_colormap,
    denormalize,
    draw_box,
    error_map,
    overlay,
    palette_array,
    save_png,
    tile,
)

__all__ = [
    "bar_chart",
    "colorize",
    "confidence_colormap",
    "denormalize",
    "draw_box",
    "error_map",
    "overlay",
    "palette_array",
    "save_png",
    "tile",
]
