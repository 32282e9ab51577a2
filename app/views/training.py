"""Training: losses, learning rate, throughput and mIoU over evaluations, live while the run trains."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st
from ael_app import state
from ael_app.render import latest_step, live_chart

from ael.runs import best_evaluation
from ael.viz.figures import scalar_lines_figure

st.title("Training")
sel = state.selection()
tailer = state.open_tailer(sel)
if tailer is None:
    st.stop()

# Scalar groups by name: the trainer writes loss/*, lr*, throughput_img_s, time/*, memory_mb, and
# AEL diagnostics (unsup/*, cutmix/*, copy_paste/*). Anything else lands in "other".
GROUPS = (
    ("Losses", lambda n: n.startswith("loss") or n.endswith("loss")),
    ("Learning rate", lambda n: n == "lr" or n.startswith("lr_") or n.startswith("lr/")),
    ("Throughput (images / s)", lambda n: "throughput" in n or n.endswith("per_s")),
    ("Step time (s)", lambda n: n.startswith("time/")),
    ("AEL diagnostics", lambda n: n.split("/")[0] in ("unsup", "cutmix", "copy_paste")),
    ("Memory (MB)", lambda n: n.startswith("memory")),
)
# Noisy per-step series drawn smoothed (the raw line kept faint): the losses and the diagnostics,
# whose 0/1 indicators (copy_paste/applied, cutmix/box_found) are a solid zig-zag unsmoothed.
SMOOTHED = ("Losses", "AEL diagnostics")
DEFAULT_SMOOTHING = 0.6


def _x_axis(fig, last: int | None):
    """Every chart's x axis spans from step 0 to the latest step (evaluations start later than
    scalars, and a chart of them alone would start at the first one).

    ``autorangeoptions`` widens the automatic range instead of setting ``range``, so a zoom the
    user made is not replaced when the latest step moves on.
    """
    end = max(v for v in (last, 0) if v is not None)
    fig.update_xaxes(autorangeoptions={"include": [0, end]}, title_text="step")
    return fig


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{scale * value:.{digits}f}"


def _panel() -> None:
    with state.guard("the training panel"):
        run = tailer.refresh()
        summary_status = run.status()
        names = run.scalar_names()
        teacher = run.evals("teacher") or run.evals()
        last = latest_step(run)
        cols = st.columns([1, 1.6, 1.2, 1, 1])  # "12345 / 40000" fits the step column
        cols[0].metric("Status", summary_status)
        total = run.total_steps
        cols[1].metric("Step", "–" if last is None else (f"{last} / {total}" if total else str(last)))
        if "throughput_img_s" in names:
            cols[2].metric("Throughput", f"{_fmt(float(run.scalar('throughput_img_s')[1][-1]), digits=1)} img/s")
        else:
            cols[2].metric("Throughput", "–")
        cols[3].metric("Last mIoU", _fmt(teacher[-1].miou, 100) if teacher else "–")
        best = best_evaluation(teacher)
        cols[4].metric("Best mIoU", _fmt(best.miou, 100) if best else "–")
        if run.error:
            st.error(f"The run crashed: {run.error.get('type')}: {run.error.get('message')}")
        state.show_notes(tailer)
        if not names and not teacher:
            st.info("Nothing logged yet: the first records appear here as soon as the trainer writes them.")
            return
        log_losses = st.session_state.get("training_log_losses", False)
        smoothing = float(st.session_state.get("training_smoothing", DEFAULT_SMOOTHING))
        used: set[str] = set()
        left, right = st.columns(2)
        slots = [left, right]
        drawn = 0
        for title, match in GROUPS:
            group = [n for n in names if n not in used and match(n)]
            if not group:
                continue
            used.update(group)
            series = {n: run.scalar(n) for n in group}
            log_y = log_losses and title == "Losses"
            extra = {"smoothing": smoothing} if title in SMOOTHED else {}
            with slots[drawn % 2]:
                live_chart(f"training_{title}", lambda series=series, title=title, log_y=log_y, extra=extra: _x_axis(
                    scalar_lines_figure(series, title=title, log_y=log_y, uirevision=f"{run.run_id}/{title}", **extra),
                    last),
                    inputs=(run.run_id, tuple(group), log_y, tuple(extra.items())),
                    version=(last, tuple(len(s) for s, _ in series.values())),
                    points=sum(min(len(s), 3000) for s, _ in series.values()))
            drawn += 1
        if teacher or run.evals():
            series = {}
            for model in sorted({e.model for e in run.evals()}):
                evals = run.evals(model)
                series[f"{model} mIoU"] = (np.array([e.step for e in evals]), np.array([100 * e.miou for e in evals]))
            with slots[drawn % 2]:
                live_chart("training_miou", lambda series=series: _x_axis(scalar_lines_figure(
                    series, title="mIoU over evaluations (%)", markers=True, mode="mean",
                    uirevision=f"{run.run_id}/miou"), last),
                    inputs=(run.run_id,), version=(last, tuple(len(s) for s, _ in series.values())),
                    points=sum(len(s) for s, _ in series.values()))
            drawn += 1
        others = [n for n in names if n not in used]
        if others:
            with slots[drawn % 2]:
                previous = st.session_state.get("training_other", others[:4])
                st.session_state["training_other"] = [n for n in previous if n in others]
                picked = st.multiselect("Other scalars", others, key="training_other")
                if picked:
                    series = {n: run.scalar(n) for n in picked}
                    live_chart("training_other_chart", lambda series=series: _x_axis(scalar_lines_figure(
                        series, title="Other scalars", uirevision=f"{run.run_id}/other"), last),
                        inputs=(run.run_id, tuple(picked)), version=(last, tuple(len(s) for s, _ in series.values())),
                        points=sum(min(len(s), 3000) for s, _ in series.values()))
        st.caption(f"{len(names)} scalar series")


with st.expander("Chart options"):
    st.toggle("Logarithmic loss axis", key="training_log_losses")
    st.slider("Smoothing", 0.0, 0.99, DEFAULT_SMOOTHING, 0.01, key="training_smoothing",
              help="Exponential moving average of the losses and the AEL diagnostics (the raw values "
                   "stay drawn, faint): the weight of the previous smoothed value.")
    st.caption("Drag to zoom; double-click the chart to zoom out. Click a legend entry to hide a series, "
               "double-click it to show it alone. The zoom and hidden series stay while the run refreshes.")
state.live_panel(_panel, key="training_panel", tailers=[tailer])
