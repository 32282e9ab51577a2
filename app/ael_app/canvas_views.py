"""The data of the confidence page's canvas charts (:mod:`ael_app.canvas_chart` draws them).

Each builder mirrors the plotly builder the notebooks use (:mod:`ael.viz.figures`,
:mod:`ael.viz.class_figures`) and takes its decisions from the same functions: the steps kept
(:func:`~ael.viz.series.reduce_steps`), class colours, which class lines are listed, highlighted,
hidden or bundled (:func:`~ael.viz.figures.class_line_roles`), and the log axis of bars that may
be zero (:func:`~ael.viz.class_figures.log_bar_axis`). Arrays travel as base64 little-endian
floats: float32 for the values of lines and heatmaps (what a chart can show), float64 for steps
and for values at one step, so the page shows the run store's own numbers.

Every payload names its ``view`` (what the user's zoom and legend choices belong to; a new run or
vector starts afresh) and a ``version`` (a digest of its content: the browser redraws only when it
changes).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np

from ael.viz.class_figures import bar_rows_height, checked_vectors, log_bar_axis, zero_bar_label
from ael.viz.figures import (
    BUNDLES,
    bundle_name,
    bundle_style,
    checked_matrix,
    class_line_roles,
    heatmap_height,
)
from ael.viz.series import reduce_steps
from ael.viz.style import palette_colours, series_colour

__all__ = ["bar_rows_view", "bucket_means", "class_lines_view", "encoded_floats", "grouped_bars_view", "heatmap_view",
           "versioned", "zoom_detail"]


def encoded_floats(values: np.ndarray, dtype: str) -> dict:
    """``values`` (any shape, row-major) as ``{"dtype": "f4" | "f8", "b64": ...}``, the way every
    canvas payload sends arrays."""
    array = np.ascontiguousarray(values, dtype="<" + dtype)
    return {"dtype": dtype, "b64": base64.b64encode(array.tobytes()).decode("ascii")}


def versioned(payload: dict) -> dict:
    """``payload`` with its ``version``: a digest of everything else in it (the browser redraws a
    chart only when it changes)."""
    payload["version"] = hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=8).hexdigest()
    return payload


def bucket_means(steps: np.ndarray, values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Bucket means of ``values`` (:func:`~ael.viz.series.reduce_steps`) and what a hover says of a
    point: ``reduced`` (a point is the mean of the records since the previous one) and the first
    step of the first bucket."""
    steps = np.asarray(steps)
    kept_steps, kept = reduce_steps(steps, values, max_points, mode="mean")
    first = int(steps[0]) if len(steps) else 0
    return kept_steps, kept, {"reduced": len(kept_steps) < len(steps), "first_step": first}


def zoom_detail(steps: np.ndarray, values: np.ndarray, zoom: tuple[float, float] | None, max_points: int,
                field: str, reduced: bool) -> dict:
    """``{"detail": ...}``: the records of the zoomed range of steps (and one either side, so lines
    reach the edges), reduced to ``max_points`` again, when the whole run's points were buckets;
    else nothing (every record is already drawn)."""
    if zoom is None or not reduced:
        return {}
    steps = np.asarray(steps)
    start = max(0, int(np.searchsorted(steps, zoom[0], side="left")) - 1)
    stop = min(len(steps), int(np.searchsorted(steps, zoom[1], side="right")) + 1)
    kept_steps, kept, provenance = bucket_means(steps[start:stop], values[start:stop], max_points)
    return {"detail": {"range": list(zoom), "x": encoded_floats(kept_steps, "f8"), field: encoded_floats(kept.T, "f4"), **provenance}}


def class_lines_view(
    steps: np.ndarray,
    values: np.ndarray,
    class_names: Sequence[str],
    *,
    view: str,
    palette: np.ndarray | Sequence[Sequence[int]] | None = None,
    highlight: Sequence[int] = (),
    visible: Sequence[int] | None = None,
    y_title: str = "",
    markers: bool = False,
    height: int = 420,
    max_points: int = 600,
    max_total_points: int = 20_000,
    zoom: tuple[float, float] | None = None,
) -> dict:
    """Per-class lines over steps, as :func:`~ael.viz.figures.class_lines_figure` draws them: a legend
    entry per listed class, grey bundles past 40 classes, highlighted classes thick.

    Args:
        steps: ``(T,)``; values: ``(T, C)``; class_names: C names.
        view: what zoom and legend choices belong to.
        palette, highlight, visible, y_title, markers, height, max_points, max_total_points: as
            :func:`~ael.viz.figures.class_lines_figure`.
        zoom: the range of steps the user zoomed to: its records are sent too, as many points
            again as the whole run's, so a zoom shows detail.
    """
    values = checked_matrix(values, len(class_names))
    per_class = max(100, min(max_points, max_total_points // max(1, len(class_names))))
    whole_steps, whole_values = steps, values
    steps, values, provenance = bucket_means(steps, values, per_class)
    detail = zoom_detail(whole_steps, whole_values, zoom, per_class, "y", provenance["reduced"])
    colours = palette_colours(palette, len(class_names))
    roles = class_line_roles(len(class_names), highlight, visible)
    listed = sorted((role.rank, c) for c, role in enumerate(roles) if role.bundle is None)
    entries = [{"id": str(class_names[c]), "name": str(class_names[c]), "colour": colours[c],
                "width": roles[c].width, "hidden": not roles[c].drawn} for _, c in listed]
    entry_of = {c: n for n, (_, c) in enumerate(listed)}
    series = [None] * len(class_names)
    for c in entry_of:
        series[c] = {"entry": entry_of[c], "colour": colours[c], "width": roles[c].width, "alpha": roles[c].opacity}
    for label in BUNDLES:
        members = [c for c, role in enumerate(roles) if role.bundle == label]
        if not members:
            continue
        style = bundle_style(label, highlight)
        entries.append({"id": label, "name": bundle_name(label, len(members), alone=not listed), "colour": style.colour,
                        "width": style.width, "hidden": style.hidden})
        for c in members:
            series[c] = {"entry": len(entries) - 1, "colour": style.colour, "width": style.width, "alpha": style.opacity}
    return versioned({"kind": "lines", "view": view, "height": height, "names": [str(n) for n in class_names],
                      "x": encoded_floats(steps, "f8"), "y": encoded_floats(values.T, "f4"), "series": series,
                      "entries": entries, "x_title": "step", "y_title": y_title, "markers": markers, "zoomable": True,
                      "zoom": list(zoom) if zoom else None, **provenance, **detail})


def heatmap_view(
    steps: np.ndarray,
    values: np.ndarray,
    class_names: Sequence[str],
    *,
    view: str,
    colour_title: str = "",
    zmin: float = 0.0,
    zmax: float = 1.0,
    max_columns: int = 400,
    height: int | None = None,
    zoom: tuple[float, float] | None = None,
) -> dict:
    """Classes x steps as :func:`~ael.viz.figures.class_heatmap_figure` draws them (viridis over
    [zmin, zmax], bucket means past ``max_columns`` steps, the height growing with C); with
    ``zoom``, the zoomed range's records too (see :func:`class_lines_view`)."""
    values = checked_matrix(values, len(class_names))
    whole_steps, whole_values = steps, values
    steps, values, provenance = bucket_means(steps, values, max_columns)
    detail = zoom_detail(whole_steps, whole_values, zoom, max_columns, "z", provenance["reduced"])
    rows = len(class_names)
    return versioned({"kind": "heatmap", "view": view, "height": height or heatmap_height(rows),
                      "names": [str(n) for n in class_names], "x": encoded_floats(steps, "f8"),
                      "z": encoded_floats(values.T, "f4"), "zmin": zmin, "zmax": zmax, "colour_title": colour_title,
                      "x_title": "step", "zoomable": True, "zoom": list(zoom) if zoom else None, **provenance, **detail})


def bar_rows_view(
    vectors: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    *,
    view: str,
    palette: np.ndarray | Sequence[Sequence[int]] | None = None,
    highlight: Sequence[int] = (),
    height_per_row: int = 170,
) -> dict:
    """Per-class vectors at one step, a row each with its own y scale and the class colours,
    highlighted classes outlined (:func:`~ael.viz.class_figures.class_bars_figure`)."""
    rows = [{"title": title, "values": encoded_floats(vector, "f8")}
            for title, vector in checked_vectors(vectors, len(class_names)).items()]
    return versioned({"kind": "bars", "view": view, "height": bar_rows_height(len(rows), height_per_row),
                      "names": [str(n) for n in class_names], "colours": palette_colours(palette, len(class_names)),
                      "outlined": sorted(int(c) for c in highlight), "rows": rows})


def grouped_bars_view(
    groups: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    *,
    view: str,
    labels: Mapping[str, str] | None = None,
    y_title: str = "",
    log_y: bool = False,
    percent: bool = False,
    zero_label: str | Mapping[str, str] | None = None,
    errors: Mapping[str, np.ndarray] | None = None,
    colours: Mapping[str, str] | None = None,
    height: int = 360,
) -> dict:
    """Per-class vectors side by side, one colour per group, a zero drawn as a hatched stub and
    labelled, on a log axis with a tick per decade or a linear one
    (:func:`~ael.viz.class_figures.grouped_bars_figure`).

    ``groups`` is keyed by what identifies a group (a legend click on it holds while that stays);
    ``labels`` gives the legend's words for some (e.g. the step shown); ``zero_label`` is keyed by
    group too. With ``percent`` the values are shares, read in percent on the axis and on hover.
    ``errors`` (keyed by group, optional) are whisker half-lengths on a linear axis (the spread
    over seeds); ``colours`` (keyed by group) overrides the series colours (a run's colour on its
    page).
    """
    vectors = checked_vectors(groups, len(class_names))
    if errors and log_y:
        raise ValueError("errors (whiskers) are drawn on a linear axis only, not with log_y")
    unknown = sorted(set(errors or ()) - set(vectors))
    if unknown:
        raise ValueError(f"errors given for {', '.join(map(repr, unknown))}, which are not among the groups "
                         f"{', '.join(map(repr, vectors))}")
    spreads = checked_vectors(dict(errors), len(class_names)) if errors else {}
    labels, colours = labels or {}, colours or {}
    payload = {"kind": "groups", "view": view, "height": height, "names": [str(n) for n in class_names],
               "y_title": y_title, "log": log_y, "percent": percent,
               "entries": [{"id": key, "name": labels.get(key, key), "colour": colours.get(key, series_colour(n)),
                            "bar": True} for n, key in enumerate(vectors)],
               "groups": [{"values": encoded_floats(v, "f8"), "zero_label": zero_bar_label(zero_label, key, log_y=log_y),
                           **({"errors": encoded_floats(spreads[key], "f8")} if key in spreads else {})}
                          for key, v in vectors.items()]}
    if log_y:
        axis = log_bar_axis(vectors.values(), percent=percent)
        payload.update(range=list(axis.range), stub=axis.stub,
                       ticks=[[float(np.log10(v)), t] for v, t in zip(axis.tickvals, axis.ticktext)])
    else:
        # The axis holds every whisker too.
        ends = [v + np.nan_to_num(spreads[key]) if key in spreads else v for key, v in vectors.items()]
        finite = np.concatenate([v[np.isfinite(v)] for v in ends] or [np.zeros(0)])
        high = float(finite.max()) if finite.size else 1.0
        payload.update(range=[min(0.0, float(finite.min()) if finite.size else 0.0), (high * 1.1) or 1.0], ticks=None)
    return versioned(payload)
