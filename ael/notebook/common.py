"""Small pieces the notebook controllers share: configs sized for a CPU, figure widgets updated in
place (a message until there is data, legends clear of the titles), PNG bytes for image widgets,
rows of per-class series at a step, clock times, and logging that does not look like errors.

Plotly and ipywidgets are imported where they are used, so the controllers' logic (and
``import ael.notebook``) works without a frontend.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ael.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_yaml,
    merge_layer,
)
from ael.config.demo import demo_config
from ael.resources import CHECKOUT_ROOT, presets_dir
from ael.runs import row_at  # the one definition; re-exported for the notebook modules

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "ABLATIONS_DIR",
    "REPO_ROOT",
    "clock",
    "figure_widget",
    "notebook_config",
    "notebook_logging",
    "placeholder_figure",
    "png_bytes",
    "readable",
    "row_at",
    "same_traces",
    "sync_figure",
]

#: The checkout ``ael`` is imported from (an editable install).
REPO_ROOT = CHECKOUT_ROOT
#: The ablation overlays (``ael``, ``cutmix_seg``, ``supervised``, ...): the checkout's, else the installed copy.
ABLATIONS_DIR = presets_dir() / "ablations"


def notebook_config(
    *,
    runs_dir: str | Path = "runs",
    iterations: int = 300,
    image_size: int = 64,
    crop_size: int | None = None,
    num_classes: int = 8,
    seed: int = 0,
    overlays: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    run_name: str | None = None,
) -> Config:
    """A CPU-sized AEL config on the synthetic set (``ael demo``'s), with overlays and overrides.

    Args:
        runs_dir: where the run folder goes.
        iterations: training iterations (evaluations at a third, two thirds and the end).
        image_size: side of the synthetic images.
        crop_size: training crop (default: ``image_size``).
        num_classes: C of the synthetic set.
        seed: training seed.
        overlays: YAML overlays merged in order, e.g. ``ABLATIONS_DIR / "supervised.yaml"``;
            a bare name without suffix (``"cutmix_seg"``) means that file of :data:`ABLATIONS_DIR`.
        overrides: ``key.sub=value`` strings applied last.
        run_name: the run id (default: a timestamped one, chosen by the trainer).

    Raises:
        ConfigError: naming the overlay file or the key at fault.
    """
    data = config_to_dict(demo_config(runs_dir=str(runs_dir), iterations=iterations, seed=seed))
    crop = image_size if crop_size is None else crop_size
    data["data"]["synthetic"].update(num_classes=num_classes, image_size=image_size)
    data["data"]["crop_size"] = crop
    data["run"]["name"] = run_name
    sources = ["<notebook>"]
    for overlay in overlays:
        path = Path(overlay)
        if path.suffix == "" and len(path.parts) == 1:
            path = ABLATIONS_DIR / f"{overlay}.yaml"
        overlay_data = load_yaml(path)
        config_from_dict(overlay_data, str(path))  # errors name this file
        data = merge_layer(data, overlay_data, str(path))
        sources.append(str(path))
    if overrides:
        apply_overrides(data, list(overrides))
        sources.append("overrides")
    source = " + ".join(sources)
    if crop > image_size:
        raise ConfigError(f"{source}: data.crop_size ({crop}) is larger than the synthetic images ({image_size})")
    return config_from_dict(data, source)


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB ``(H, W, 3)`` or greyscale ``(H, W)`` uint8 array as PNG bytes (for ``ipywidgets.Image``)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.asarray(image, dtype=np.uint8))).save(buffer, format="PNG")
    return buffer.getvalue()


def figure_widget(fig: go.Figure | None = None) -> go.FigureWidget:
    """A plotly ``FigureWidget`` (drawn by ``anywidget`` in JupyterLab) holding ``fig``."""
    import plotly.graph_objects as go

    return go.FigureWidget(fig) if fig is not None else go.FigureWidget()


def _signature(fig: Any) -> list[tuple[str, str | None]]:
    return [(trace.type, trace.name) for trace in fig.data]


def same_traces(widget: Any, fig: Any) -> bool:
    """True when ``widget`` and ``fig`` hold the same traces (type and name, in order): an update
    of their data keeps the user's zoom and legend toggles."""
    return _signature(widget) == _signature(fig)


def sync_figure(widget: go.FigureWidget, fig: go.Figure) -> None:
    """Make ``widget`` show ``fig``, in place.

    With the same traces (type and name, in order) only their data and the layout's titles
    change, so zoom and legend toggles survive a live update; otherwise the traces and the
    layout are replaced.
    """
    if _signature(widget) == _signature(fig):
        with widget.batch_update():
            for old, new in zip(widget.data, fig.data):
                old.update(new.to_plotly_json(), overwrite=True)
            widget.layout.title = fig.layout.title
        return
    with widget.batch_update():
        widget.data = ()
        widget.add_traces(list(fig.data))
        widget.layout = fig.layout
        # The browser merges a new layout into the old one: clear what a placeholder set and the
        # new figure does not (its message, its hidden axes), or it stays drawn over the data.
        widget.layout.annotations = fig.layout.annotations or ()
        for axis in ("xaxis", "yaxis"):
            if getattr(fig.layout, axis).visible is None:
                getattr(widget.layout, axis).visible = True


def placeholder_figure(message: str, *, title: str = "", height: int = 220) -> go.Figure:
    """A figure without data that says why (``no evaluation yet``), instead of bare axes."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title=title or None, height=height, margin={"l": 50, "r": 10, "t": 40 if title else 10, "b": 20},
                      xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": message, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
                                    "showarrow": False, "font": {"size": 14, "color": "#666666"}}])
    return fig


def readable(fig: go.Figure) -> go.Figure:
    """``fig`` laid out for a notebook cell, in place: a horizontal legend goes under the x axis
    (above the plot it covers the title) and a step axis starts at 0 (so the charts of one run align)."""
    legend = fig.layout.legend
    if legend.orientation == "h" and (legend.y is None or legend.y >= 1):
        # The legend's height in paper units shrinks as the plot grows: give it a fixed margin.
        fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.3, "xanchor": "left", "x": 0},
                          margin={"b": 100}, height=(fig.layout.height or 320) + 60)
    if fig.layout.xaxis.title.text == "step":
        fig.update_xaxes(rangemode="tozero")
    return fig


def clock(when: float | None) -> str:
    """A wall-clock time as local ``HH:MM:SS``; ``never`` for None."""
    return "never" if when is None else time.strftime("%H:%M:%S", time.localtime(when))


class _Below(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def notebook_logging(level: int | str = logging.INFO) -> None:
    """Log to the notebook as plain output: records below WARNING to stdout, WARNING and above to
    stderr (which Jupyter shows in red: an INFO line there reads as an error)."""
    fmt = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    info = logging.StreamHandler(sys.stdout)
    info.addFilter(_Below(logging.WARNING))
    warn = logging.StreamHandler(sys.stderr)
    warn.setLevel(logging.WARNING)
    for handler in (info, warn):
        handler.setFormatter(fmt)
    logging.basicConfig(level=level, handlers=[info, warn], force=True)
