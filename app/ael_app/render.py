"""Small drawing helpers shared by the pages: charts that follow a live run, the step chooser, the class legend."""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import plotly.io as pio
import streamlit as st

from ael.runs import Run
from ael.viz.style import register_white_theme, rgb_css

# Chart toolbar: no logo, no "edit in chart studio"; WebGL traces keep working.
PLOTLY_CONFIG = {"displaylogo": False, "scrollZoom": False}


# A plotly figure of this many points is redrawn at every live refresh; a heavier one
# proportionally less often (four 20-class runs of 20k steps on the Compare page), so the browser
# keeps up with a live run instead of queueing redraws. Canvas charts have their own budget
# (:data:`ael_app.canvas_chart.LIGHT_POINTS`).
LIGHT_POINTS = 5000
MAX_REDRAW_S = 30.0


# Every figure built in the dashboard's process gets the lean white theme as it is built.
pio.templates.default = register_white_theme()


def chart(fig, *, key: str) -> None:
    """Draw a plotly figure full width (in :data:`~ael.viz.style.WHITE_THEME`, plotly's default
    template in the dashboard's process).

    Streamlit's own chart theme is left off: restyling every trace in the browser cost about a
    third of the time to draw a 150-class page on a 2-core machine.
    """
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG, width="stretch", theme=None)


def live_chart(key: str, build: Callable[[], Any], *, inputs: tuple, version: object, points: int,
               draw: Callable[..., None] = chart, light_points: int = LIGHT_POINTS) -> None:
    """Draw a figure that follows a live run, rebuilding it only when worth it.

    The figure is rebuilt at once when ``inputs`` (the user's choices) change, and when the
    data ``version`` changed and the figure's redraw interval has passed; otherwise the same
    figure is drawn again, which Streamlit sends and the browser renders as a no-op.

    Args:
        key: the chart's key (unique on the page).
        build: makes the figure.
        inputs: everything the user chose that shapes the figure.
        version: what identifies the data drawn (e.g. the last step and the row count).
        points: points drawn, for the redraw interval.
        draw: draws what ``build`` made, under ``key`` (a plotly figure: :func:`chart`).
        light_points: points ``draw`` redraws at every refresh (heavier: proportionally less often).
    """
    from ael_app.state import selection

    cache: dict[str, tuple[tuple, object, float, Any]] = st.session_state.setdefault("_ael_live_charts", {})
    interval = min(MAX_REDRAW_S, selection().refresh_s * max(1.0, points / light_points))
    entry = cache.get(key)
    now = time.monotonic()
    if entry is None or entry[0] != inputs or (entry[1] != version and now - entry[2] >= interval):
        entry = (inputs, version, now, build())
        cache[key] = entry
    draw(entry[3], key=key)


def latest_step(run: Run) -> int | None:
    """The latest step the run logged, the number every page shows (the Runs page's manifest step too).

    The trainer logs an iteration's scalars at its 0-based index but evaluates and checkpoints
    (which beats the manifest) at the count of iterations done: a finished 480-step run has its
    last scalar at 479 and its final evaluation and manifest step at 480. The highest of the
    three is the step the run reached, and is what the manifest (so the Runs page) says.
    """
    steps = [s for s in (run.last_step, run.manifest.get("step")) if isinstance(s, int) and not isinstance(s, bool)]
    steps += [e.step for e in run.evals()]
    return max(steps) if steps else None


def choose_step(run: Run, *, key: str, label: str = "Step", latest: int | None = None) -> int | None:
    """A step chosen by the user, or the latest one while "Follow latest" is on.

    The slider spans ``[0, total_steps]`` of the run (fixed while it trains, so a live redraw
    never resets it); without a planned total a number box is used.
    """
    latest = latest_step(run) if latest is None else latest
    if latest is None:
        return None
    state_key = f"{key}_{run.run_id}"
    follow = st.toggle("Follow latest step", value=True, key=f"{state_key}_follow")
    if follow:
        st.caption(f"{label}: {latest} (latest)")
        return int(latest)
    total = run.total_steps
    if isinstance(total, int) and total > 0 and latest <= total:
        return int(st.slider(label, 0, int(total), value=int(latest), key=f"{state_key}_slider"))
    return int(st.number_input(label, min_value=0, value=int(latest), step=1, key=f"{state_key}_number"))


def class_legend(class_names: Sequence[str], palette: np.ndarray | None, only: Sequence[int] | None = None) -> None:
    """A coloured legend of the classes (a swatch and the name for each)."""
    indices = range(len(class_names)) if only is None else only
    items = []
    for c in indices:
        colour = rgb_css(palette[c]) if palette is not None and c < len(palette) else "rgb(128,128,128)"
        items.append(
            f'<span style="display:inline-block;margin:0 10px 4px 0;white-space:nowrap">'
            f'<span style="display:inline-block;width:12px;height:12px;background:{colour};'
            f'border:1px solid #888;vertical-align:middle;margin-right:4px"></span>'
            f"{c}: {html.escape(str(class_names[c]))}</span>"
        )
    st.markdown('<div class="ael-legend">' + "".join(items) + "</div>", unsafe_allow_html=True)
