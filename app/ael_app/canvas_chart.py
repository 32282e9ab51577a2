"""A chart drawn on canvas by a component of our own, for the pages whose first open must be fast.

Streamlit's plotly element loads and compiles plotly.js (0.7-1.1 s of a 2-core machine) before it
draws anything, and mounts a new chart whenever a live refresh brings new data. This component
draws the confidence and Compare pages' views (per-class lines, heatmaps, bars, curves of runs in
panels on shared axes, bands over seeds) on a canvas with about 800 lines of plain JavaScript
(``canvas/``) in the page itself (Streamlit's components v2: no frame),
and stays mounted under its key: new data is drawn in place, keeping the user's drag-zoom and
legend choices (kept per page, key and view for the tab's life, as :mod:`ael_app.keep_view` does
for plotly charts). A drag zooms, a double click zooms out, a legend click hides an entry and a
double click shows it alone; hover names the class, the step and the value (or the range of steps
a point averages). A chart over steps reports its zoom to the server (:func:`zoom_of`), whose next
data holds the zoomed range's own records: the whole run is drawn as bucket means, a zoom in it
record by record.

The root of a drawn chart is ``.ael-cv`` with ``data-drawn`` set to its data's version; its
``__ael.snapshot()`` says what it shows (tests and benchmarks read it).
"""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

_HERE = Path(__file__).with_name("canvas")

#: Points a canvas chart redraws at every live refresh (:func:`ael_app.render.live_chart`). The
#: browser draws the 40 000 points of a 150-class bank in a few milliseconds and the server builds
#: its data in about 25 ms, so the page's charts follow a live run at every refresh, where plotly's
#: redrew a wide run every eight.
LIGHT_POINTS = 50_000

_CSS = """
.st-key-ael_canvas_preload { display: none; }
.ael-cv { font-size: 12px; color: #2a3f5f; }
.ael-cv-body { display: flex; align-items: flex-start; gap: 8px; }
.ael-cv-box { position: relative; flex: 1 1 auto; min-width: 0; }
.ael-cv-box canvas { display: block; cursor: crosshair; }
.ael-cv-band { position: absolute; display: none; background: rgba(70, 110, 200, 0.15);
  border: 1px solid rgba(70, 110, 200, 0.6); pointer-events: none; }
.ael-cv-tip { position: absolute; display: none; pointer-events: none; white-space: nowrap; padding: 3px 7px;
  background: rgba(255, 255, 255, 0.95); border: 1px solid #c8d0da; border-radius: 3px; font-size: 12px; }
.ael-cv-legend { flex: 0 0 auto; max-width: 280px; max-height: 100%; overflow-y: auto; padding-top: 8px; }
.ael-cv-item { display: flex; align-items: center; gap: 6px; cursor: pointer; user-select: none; padding: 1px 0;
  white-space: nowrap; }
.ael-cv-name { min-width: 0; overflow: hidden; text-overflow: ellipsis; }
.ael-cv-item.ael-cv-off { opacity: 0.4; }
.ael-cv-swatch { display: inline-block; width: 18px; flex: 0 0 18px; border-radius: 1px; }
.ael-cv-under .ael-cv-body { flex-direction: column; align-items: stretch; }
.ael-cv-under .ael-cv-box { flex: none; width: 100%; }
.ael-cv-under .ael-cv-legend { display: flex; flex-wrap: wrap; gap: 0 14px; max-width: none; max-height: 84px !important;
  padding-top: 2px; }
"""

#: The chart's JavaScript, joined into one module in this order: the shell, the kinds, the entry.
_SOURCES = ("core.js", "kinds.js", "curves.js", "entry.js")

_component = st.components.v2.component(
    "ael_canvas_chart",
    js="\n".join((_HERE / name).read_text(encoding="utf-8") for name in _SOURCES),
    css=_CSS,
    isolate_styles=False,
)


def canvas_chart(payload: dict, *, key: str) -> None:
    """Draw a payload of :mod:`ael_app.canvas_views` full width, under Streamlit key ``key`` (which
    keeps the chart mounted across reruns). A chart over steps reports its x zoom (:func:`zoom_of`)."""
    _component(key=key, data=payload, height="content", default={"zoom": None}, on_zoom_change=_rerun_only)


#: The Streamlit key of the empty chart :func:`preload` draws.
PRELOAD_KEY = "ael_canvas_preload"


def preload() -> None:
    """An empty, hidden canvas chart, drawn as early as the page can: the browser fetches Streamlit's
    component code and this chart's module while the server still reads the run and builds the
    charts' data, instead of after the data has arrived."""
    _component(key=PRELOAD_KEY, data=None, height="content")


def _rerun_only() -> None:
    """A zoom reported by a chart needs nothing but the rerun it triggers (which reads :func:`zoom_of`)."""


def zoom_of(key: str) -> tuple[float, float] | None:
    """The range of steps the user zoomed the chart of ``key`` to, as it reported it, or None (the
    whole run, or anything that is not two finite, increasing numbers)."""
    state = st.session_state.get(key)
    try:
        low, high = (float(v) for v in state["zoom"])
    except (KeyError, TypeError, ValueError):
        return None
    return (low, high) if math.isfinite(low) and math.isfinite(high) and low < high else None
