"""Colour overlays, previews and figures shared by the preview command, the dashboard and the notebooks."""

from ael.viz.class_figures import class_bars_figure, grouped_bars_figure, iou_frequency_figure
from ael.viz.figures import class_heatmap_figure, class_lines_figure, scalar_lines_figure
from ael.viz.images import (
    bar_chart,
    colorize,
    confidence_colormap,
    denormalize,
    draw_box,
    draw_outline,
    error_map,
    overlay,
    palette_array,
    save_png,
    tile,
)
from ael.viz.series import lowest_classes, reduce_steps
from ael.viz.style import rgb_css

__all__ = [
    "bar_chart",
    "class_bars_figure",
    "class_heatmap_figure",
    "class_lines_figure",
    "colorize",
    "confidence_colormap",
    "denormalize",
    "draw_box",
    "draw_outline",
    "error_map",
    "grouped_bars_figure",
    "iou_frequency_figure",
    "lowest_classes",
    "overlay",
    "palette_array",
    "reduce_steps",
    "rgb_css",
    "save_png",
    "scalar_lines_figure",
    "tile",
]
