"""What AppTest-based tests read of the confidence page's canvas charts: the data each was sent."""

from __future__ import annotations

import base64
import json

import numpy as np


def decoded(value):
    """A payload with every ``{"dtype": "f4" | "f8", "b64"}`` array as a numpy array."""
    if isinstance(value, dict):
        if set(value) == {"dtype", "b64"}:
            return np.frombuffer(base64.b64decode(value["b64"]), dtype="<" + value["dtype"])
        return {k: decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


def canvas_elements(at) -> dict[str, dict | None]:
    """Streamlit key -> the data (arrays decoded) of every canvas chart element on the page of ``at``,
    in page order, the empty preload (``canvas_chart.preload``: None) included."""
    views = {}
    for element in at.get("bidi_component"):
        proto = element.proto
        if proto.component_name == "ael_canvas_chart":
            views[proto.id.rsplit("-", 1)[-1]] = decoded(json.loads(proto.json)) if proto.json else None
    return views


def canvas_views(at) -> dict[str, dict]:
    """Streamlit key -> the data (arrays decoded) of every canvas chart drawn on the page of ``at``."""
    return {key: data for key, data in canvas_elements(at).items() if data is not None}


def bar_rows(at) -> list[dict]:
    """The rows of the page's bars at one step (``conf_bars``): title and values."""
    return canvas_views(at)["conf_bars"]["rows"]
