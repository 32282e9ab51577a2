"""Colour overlays, previews and figures shared by the preview command, the dashboard and the notebooks."""

from ael.viz.figures import (
    class_bars_figure,
    class_heatmap_figure,
    class_lines_figure,
    grouped_bars_figure,
    reduce_steps,
    scalar_lines_figure,
)
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
    "class_bars_figure",
    "class_heatmap_figure",
    "class_lines_figure",
    "colorize",
    "confidence_colormap",
    "denormalize",
    "draw_box",
    "error_map",
    "grouped_bars_figure",
    "overlay",
    "palette_array",
    "reduce_steps",
    "save_png",
    "scalar_lines_figure",
    "tile",
]
