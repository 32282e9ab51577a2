"""The Compare page's figures: one panel per class with every run on shared axes, and curves pooled
over seeds (mean line, a band of ± one std).

Runs keep one colour across every figure of the page (:func:`run_colours`), so a run reads the same
in the per-class panels, the mIoU curves and the IoU bars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ael.viz.series import reduce_steps
from ael.viz.style import SERIES_COLOURS, legend_right, plotly_go

#: Points kept per line of a per-class panel (bucket means): about one per two pixels of a panel a
#: third of the page wide; a 40 000-step run draws as fast as a 2 000-step one.
PANEL_POINTS = 200


def run_colours(run_ids: Sequence[str]) -> dict[str, str]:
    """Run id -> its colour on the page, in the order given."""
    return {run_id: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, run_id in enumerate(run_ids)}


def class_panels_figure(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    panels: Sequence[str],
    *,
    colours: Mapping[str, str],
    tail: Sequence[str] = (),
    y_title: str = "",
    columns: int = 3,
    uirevision: str | None = None,
    max_points: int = PANEL_POINTS,
) -> object:
    """One panel per class, every run one line in each, all panels on the same x and y axes.

    Args:
        series: run id -> ``(steps (T,), values (T, P))``, column ``p`` being panel ``panels[p]``
            (NaN where the run has no such class).
        panels: the panel titles (class names).
        colours: run id -> line colour.
        tail: panel titles marked "(tail)".
        y_title: the vector's name, on the first column's y axes.
        columns: panels per row.
        uirevision: keeps zoom and hidden runs across redraws while it stays the same.
        max_points: points kept per line (bucket means).
    """
    from plotly.subplots import make_subplots

    go = plotly_go()
    # Two columns for 2 or 4 panels: a full grid, no empty cell with bare axes.
    columns = max(1, min(2 if len(panels) in (2, 4) else columns, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    tails = set(tail)
    titles = [f"{name} (tail)" if name in tails else str(name) for name in panels]
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles, shared_xaxes="all", shared_yaxes="all",
                        vertical_spacing=min(0.12, 0.5 / rows), horizontal_spacing=0.04)
    for run_id, (steps, values) in series.items():
        steps, values = reduce_steps(np.asarray(steps), np.asarray(values, dtype=np.float64), max_points, mode="mean")
        for p in range(len(panels)):
            fig.add_trace(go.Scatter(x=steps, y=values[:, p], name=run_id, legendgroup=run_id,
                                     showlegend=p == 0, mode="lines", line={"color": colours[run_id], "width": 1.6},
                                     hovertemplate=f"{run_id}<br>step %{{x}}: %{{y:.4f}}<extra>{titles[p]}</extra>"),
                          row=p // columns + 1, col=p % columns + 1)
    for r in range(1, rows + 1):
        fig.update_yaxes(title_text=y_title or None, row=r, col=1)
    fig.update_xaxes(title_text="step", row=rows)
    for cell in range(len(panels), rows * columns):  # the empty cells of the last row
        fig.update_xaxes(visible=False, row=rows, col=cell % columns + 1)
        fig.update_yaxes(visible=False, row=rows, col=cell % columns + 1)
        # The panel above an empty cell is the bottom of its column: it shows the steps.
        fig.update_xaxes(showticklabels=True, title_text="step", row=rows - 1, col=cell % columns + 1)
    fig.update_layout(height=80 + 230 * rows, margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      legend=legend_right(), uirevision=uirevision)
    return fig


def band_curves_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    *,
    y_title: str = "",
    scale: float = 100.0,
    uirevision: str | None = None,
) -> object:
    """Each label's mean curve over seeds with a band of ± one standard deviation.

    Args:
        curves: label -> ``(steps, mean, std, count)`` (:func:`ael.runs.compare.mean_curve`).
        y_title: the y axis label.
        scale: multiplies the values (100: fractions drawn as %).
        uirevision: keeps zoom and hidden labels across redraws while it stays the same.
    """
    go = plotly_go()
    fig = go.Figure()
    for n, (label, (steps, mean, std, count)) in enumerate(curves.items()):
        colour = SERIES_COLOURS[n % len(SERIES_COLOURS)]
        mean, std = scale * np.asarray(mean, dtype=np.float64), scale * np.nan_to_num(np.asarray(std, dtype=np.float64))
        seeds = int(np.max(count)) if len(count) else 0
        # The band: the upper edge, then the lower edge filled up to it; hidden with its mean line.
        fig.add_trace(go.Scatter(x=steps, y=mean + std, mode="lines", line={"width": 0, "color": colour},
                                 legendgroup=label, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=steps, y=mean - std, mode="lines", line={"width": 0, "color": colour},
                                 fill="tonexty", fillcolor=_alpha(colour, 0.2), legendgroup=label,
                                 showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=steps, y=mean, mode="lines+markers", name=f"{label} (mean of {seeds} seeds)",
                                 legendgroup=label, line={"color": colour, "width": 2},
                                 customdata=np.stack([std, count], axis=1) if len(steps) else None,
                                 hovertemplate="step %{x}: %{y:.2f} ± %{customdata[0]:.2f} "
                                               "(%{customdata[1]} seeds)<extra>" + label + "</extra>"))
    fig.update_layout(height=340, margin={"l": 50, "r": 10, "t": 10, "b": 40}, xaxis_title="step",
                      yaxis_title=y_title or None, legend=legend_right(), uirevision=uirevision)
    return fig


def _alpha(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha:g})"
