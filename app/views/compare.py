"""Compare runs: a comparison group (the runs of one ``ael compare``: per method the mean over seeds with
its spread), then chosen runs side by side: per-class curves, mIoU over evaluations, final per-class IoU."""

from __future__ import annotations

import numpy as np
import streamlit as st
from ael_app import state
from ael_app.render import chart, live_chart

from ael.runs import list_runs, tail_indices
from ael.runs.groups import group_class_iou, group_rows, summarize_group
from ael.viz.class_figures import grouped_bars_figure
from ael.viz.figures import class_lines_figure, scalar_lines_figure

st.title("Compare runs")
sel = state.selection()


def _groups() -> None:
    groups = sorted({r.group for r in list_runs(sel.runs_dir) if r.group})
    if not groups:
        return
    st.subheader("Comparison groups (`ael compare`)")
    group = st.selectbox("Group", groups, key="cmp_group")
    rows = group_rows(sel.runs_dir, group)
    if not rows:
        st.info(f"No run of group {group!r} has an evaluation yet.")
        return
    st.markdown(summarize_group(rows, methods=sorted({r.method for r in rows})))
    model = st.radio("Model", sorted({r.model for r in rows}), horizontal=True, key="cmp_group_model")
    per_class = group_class_iou(rows, model)
    names = rows[0].class_names
    chart(grouped_bars_figure({f"{label} (mean over seeds)": 100 * mean for label, (mean, _) in per_class.items()},
                              names, y_title="final IoU (%)",
                              errors={f"{label} (mean over seeds)": 100 * std for label, (_, std) in per_class.items()}),
          key="cmp_group_bars")
    st.caption("Bars: mean final IoU over the seeds of each method; whiskers: the standard deviation over seeds.")


with state.guard("the comparison groups"):
    _groups()
run_ids = [r for r in [sel.run_id, *sel.compare] if r]
if len(run_ids) < 2:
    st.info("Pick a run and at least one more under **Compare with** in the sidebar "
            "(for example AEL against a mean-teacher baseline).")
    st.stop()
tailers = {}
for run_id in run_ids:
    tailer = state.open_tailer(sel, run_id)
    if tailer is not None:
        tailers[run_id] = tailer
if len(tailers) < 2:
    st.stop()


def _panel() -> None:
    with state.guard("the comparison"):
        runs = {run_id: t.refresh() for run_id, t in tailers.items()}
        common = sorted(set.intersection(*(set(r.class_vector_names()) for r in runs.values())))
        st.subheader("mIoU over evaluations (%)")
        series = {}
        for run_id, run in runs.items():
            evals = run.evals("teacher") or run.evals()
            if evals:
                series[run_id] = (np.array([e.step for e in evals]), np.array([100 * e.miou for e in evals]))
        if series:
            chart(scalar_lines_figure(series, markers=True, mode="mean", uirevision="compare/miou"), key="cmp_miou")
        else:
            st.info("None of these runs has an evaluation yet.")

        st.subheader("Per-class curves")
        if not common:
            st.info("These runs have no per-class series in common.")
        else:
            default = "bank" if "bank" in common else common[0]
            name = st.selectbox("Series", common, index=common.index(default), key="cmp_series")
            if name not in common:
                name = default
            cols = st.columns(min(len(runs), 3))
            for i, (run_id, run) in enumerate(runs.items()):
                series_c = run.class_vectors(name)
                with cols[i % len(cols)]:
                    st.markdown(f"**{run_id}**")
                    c = len(series_c.class_names)
                    live_chart(f"cmp_lines_{i}", lambda series_c=series_c, run=run, run_id=run_id: class_lines_figure(
                        series_c.steps, series_c.values, series_c.class_names, palette=run.palette,
                        highlight=tail_indices(run.class_frequencies()), markers=name.startswith("iou_") and len(series_c.steps) < 60,
                        uirevision=f"compare/{run_id}/{name}", height=360),
                        inputs=(run_id, name), version=len(series_c.steps),
                        points=min(len(series_c.steps), 40_000 // max(1, c)) * c)

        st.subheader("Final per-class IoU")
        finals, class_names = {}, None
        for run_id, run in runs.items():
            evals = run.evals("teacher") or run.evals()
            if not evals:
                continue
            names = run.class_names
            if class_names is None:
                class_names = names
            elif names != class_names:
                st.warning(f"{run_id} has other classes than {next(iter(finals), '')}; left out of the IoU bars.")
                continue
            finals[f"{run_id} (step {evals[-1].step}, mIoU {100 * evals[-1].miou:.2f})"] = 100 * evals[-1].iou
        if finals and class_names:
            chart(grouped_bars_figure(finals, class_names, y_title="IoU (%)"), key="cmp_final_iou")
        else:
            st.info("No evaluations to compare yet.")


state.live_panel(_panel, key="compare_panel", tailers=list(tailers.values()))
