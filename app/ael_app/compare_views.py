"""The data of the Compare page's canvas charts (:mod:`ael_app.canvas_chart` draws them): the runs'
mIoU over evaluations, one panel per class with every run on shared axes, and a comparison group's
curves pooled over seeds (the mean line in a band of ± one standard deviation).

Runs keep one colour across every chart of the page and as other runs are chosen or dropped
(:func:`run_colours`), so a run reads the same in the per-class panels, the mIoU curves and the IoU
bars; a group's methods have colours of their own (:func:`~ael.viz.style.method_colour`). Every series carries its own steps: runs
evaluate and log at steps of their own. Payloads are built as :mod:`ael_app.canvas_views` builds
the confidence page's (arrays as base64 floats, a ``view`` the user's zoom and legend choices
belong to, a content ``version``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ael.runs.groups import seeds_legend
from ael.viz.style import SERIES_COLOURS, method_colour, series_colour
from ael_app.canvas_views import bucket_means, encoded_floats, versioned, zoom_detail

__all__ = ["PANEL_POINTS", "band_curves_view", "class_panels_view", "panel_grid", "run_colours", "run_curves_view"]

#: Points kept per line of a per-class panel (bucket means): about one per two pixels of a panel a
#: third of the page wide; a 40 000-step run draws as fast as a 2 000-step one. A zoom brings the
#: zoomed range's own records, as many again.
PANEL_POINTS = 200

#: Points kept per run of a chart over evaluations (a run evaluates a few hundred times at most).
EVAL_POINTS = 1500

#: Pixels of one row of panels (its title, plot and step labels).
PANEL_ROW_PX = 230


def run_colours(run_ids: Sequence[str], listed: Sequence[str] = ()) -> dict[str, str]:
    """Run id -> its colour on the page, in the order of ``run_ids``.

    Each run takes the series colour of its place in ``listed`` (every run of the folder, oldest
    first), so choosing or dropping a run leaves the others' colours alone, except where two chosen
    runs compete for one colour (places ten apart): the older keeps it, the newer takes the next
    free one, so chosen runs differ (up to ten of them). Runs not in ``listed`` come after it.
    """
    place = {run_id: place for place, run_id in enumerate(listed)}
    slots = {run_id: place.get(run_id, len(listed) + n) for n, run_id in enumerate(run_ids)}
    taken: dict[str, str] = {}
    for run_id in sorted(run_ids, key=slots.__getitem__):  # the older run first
        start = slots[run_id]
        free = [series_colour(start + k) for k in range(len(SERIES_COLOURS))
                if series_colour(start + k) not in taken.values()]
        taken[run_id] = free[0] if free else series_colour(start)
    return {run_id: taken[run_id] for run_id in run_ids}


def panel_grid(count: int, columns: int = 3) -> tuple[int, int]:
    """(columns, rows) of a grid of ``count`` panels, at most ``columns`` wide: two columns for 2 or
    4 panels, so the grid is full (no empty cell)."""
    columns = max(1, min(2 if count in (2, 4) else columns, count))
    return columns, max(1, math.ceil(count / columns))


def _entries(ids: Sequence[str], colours: Mapping[str, str], width: float, names: Mapping[str, str] | None = None
             ) -> list[dict]:
    names = names or {}
    missing = [key for key in ids if key not in colours]
    if missing:
        raise ValueError(f"no colour given for {', '.join(map(repr, missing))}")
    return [{"id": key, "name": names.get(key, key), "colour": colours[key], "width": width} for key in ids]


def _series_of(owner: str, steps, *arrays) -> list[np.ndarray]:
    """``steps`` and ``arrays`` as 1-D float arrays of one length, or a ValueError naming ``owner``."""
    out = [np.asarray(a, dtype=np.float64) for a in (steps, *arrays)]
    if any(a.ndim != 1 or len(a) != len(out[0]) for a in out):
        raise ValueError(f"{owner}: steps and values must be 1-D of one length, got shapes "
                         f"{', '.join(str(a.shape) for a in out)}")
    return out


def _curves(*, view: str, panels: Sequence[str], columns: int, entries: list[dict], series: list[dict], height: int,
            y_title: str, markers: bool, zoom: tuple[float, float] | None = None, zoomable: bool = False) -> dict:
    return versioned({"kind": "curves", "view": view, "height": height, "columns": columns,
                      "panels": [{"title": title} for title in panels], "entries": entries, "series": series,
                      "x_title": "step", "y_title": y_title, "markers": markers, "zoomable": zoomable,
                      "zoom": list(zoom) if zoom else None})


def class_panels_view(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    panels: Sequence[str],
    *,
    view: str,
    colours: Mapping[str, str],
    tail: Sequence[str] = (),
    y_title: str = "",
    columns: int = 3,
    max_points: int = PANEL_POINTS,
    zoom: tuple[float, float] | None = None,
) -> dict:
    """One panel per class, every run one line in each, all panels on the same x and y axes.

    Args:
        series: run id -> ``(steps (T,), values (T, P))``, column ``p`` being panel ``panels[p]``
            (NaN where the run has no such class).
        panels: the panel titles (class names).
        view: what zoom and legend choices belong to.
        colours: run id -> line colour.
        tail: panel titles marked "(tail)".
        y_title: the vector's name.
        columns: panels per row at most (:func:`panel_grid`).
        max_points: points kept per line (bucket means).
        zoom: the range of steps the user zoomed to: its records are sent too, per run and panel.
    """
    tails = set(tail)
    titles = [f"{name} (tail)" if name in tails else str(name) for name in panels]
    columns, rows = panel_grid(len(panels), columns)
    drawn = []
    for entry, (run_id, (steps, values)) in enumerate(series.items()):
        steps, values = np.asarray(steps), np.asarray(values, dtype=np.float64)
        if steps.ndim != 1 or values.shape != (len(steps), len(panels)):
            raise ValueError(f"run {run_id!r}: values of shape {values.shape} for {steps.shape} steps and "
                             f"{len(panels)} panels; expected ({len(steps)}, {len(panels)})")
        kept_steps, kept, provenance = bucket_means(steps, values, max_points)
        for p in range(len(panels)):
            detail = zoom_detail(steps, values[:, p], zoom, max_points, "y", provenance["reduced"])
            drawn.append({"entry": entry, "panel": p, "x": encoded_floats(kept_steps, "f8"),
                          "y": encoded_floats(kept[:, p], "f4"), **provenance, **detail})
    return _curves(view=view, panels=titles, columns=columns, entries=_entries(list(series), colours, 1.6),
                   series=drawn, height=40 + PANEL_ROW_PX * rows, y_title=y_title, markers=False, zoom=zoom,
                   zoomable=True)


def run_curves_view(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    view: str,
    colours: Mapping[str, str],
    y_title: str = "",
    markers: bool = True,
    height: int = 320,
) -> dict:
    """One line per run over its own steps (e.g. mIoU at each evaluation), in the run's colour.

    Args:
        series: run id -> ``(steps (T,), values (T,))``; more than :data:`EVAL_POINTS` are bucket means.
        view, colours, y_title, markers, height: as :func:`class_panels_view`; markers on each point.
    """
    drawn = []
    for entry, (run_id, (steps, values)) in enumerate(series.items()):
        steps, values = _series_of(f"run {run_id!r}", steps, values)
        kept_steps, kept, provenance = bucket_means(steps, values, EVAL_POINTS)
        drawn.append({"entry": entry, "panel": 0, "x": encoded_floats(kept_steps, "f8"),
                      "y": encoded_floats(kept, "f8"), **provenance})
    return _curves(view=view, panels=[""], columns=1, entries=_entries(list(series), colours, 2.0), series=drawn,
                   height=height, y_title=y_title, markers=markers)


def band_curves_view(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    *,
    view: str,
    y_title: str = "",
    scale: float = 100.0,
    colours: Mapping[str, str] | None = None,
    seeds: Mapping[str, int] | None = None,
    height: int = 340,
) -> dict:
    """Each label's mean curve over seeds in a band of ± one standard deviation, in the methods'
    colours; hover gives the mean, the spread and the number of seeds at that step (no spread where
    one seed is all there is).

    Args:
        curves: label -> ``(steps, mean, std, count)`` (:func:`ael.runs.groups.group_curves`).
        view: what zoom and legend choices belong to.
        y_title: the y axis label.
        scale: multiplies the values (100: fractions drawn as %).
        colours: label -> colour; by default the methods' colours in the order given.
        seeds: label -> runs its mean pools (:func:`ael.runs.groups.runs_pooled`), for the legend;
            by default the most seeds at one step.
        height: pixels.
    """
    drawn, names, seeds = [], {}, seeds or {}
    for entry, (label, (steps, mean, std, count)) in enumerate(curves.items()):
        steps, mean, std, count = _series_of(f"{label!r}", steps, mean, std, count)
        names[label] = seeds_legend(label, seeds.get(label, int(np.max(count)) if len(count) else 0))
        spread = np.where(count >= 2, scale * std, np.nan)
        drawn.append({"entry": entry, "panel": 0, "x": encoded_floats(steps, "f8"),
                      "y": encoded_floats(scale * mean, "f8"),
                      "spread": encoded_floats(spread, "f8"), "count": encoded_floats(count, "f8"),
                      "reduced": False, "first_step": 0})
    colours = colours or {label: method_colour(n) for n, label in enumerate(curves)}
    return _curves(view=view, panels=[""], columns=1, entries=_entries(list(curves), colours, 2.0, names),
                   series=drawn, height=height, y_title=y_title, markers=True)
