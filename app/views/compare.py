"""Compare runs: a table of the runs (click rows to compare them), the config keys that differ, a
comparison group (the runs of one ``ael compare``: per method the mean over seeds with its
spread), then the chosen runs on shared axes: mIoU over evaluations, one panel per class of a
per-class vector, and the final per-class IoU at the step they all reached."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import streamlit as st
from ael_app import state
from ael_app.canvas_chart import LIGHT_POINTS, canvas_chart, zoom_of
from ael_app.canvas_views import grouped_bars_view
from ael_app.compare_table import diff_frame, filter_frame, model_evals, overview_details, runs_frame
from ael_app.compare_views import (
    PANEL_POINTS,
    band_curves_view,
    class_panels_view,
    run_colours,
    run_curves_view,
)
from ael_app.render import latest_step, live_chart

from ael.runs import Run, RunStoreError, tail_indices
from ael.runs.compare import evals_at, matched_step, overview_stamp, read_overview
from ael.runs.groups import (
    group_class_iou,
    group_curves,
    rows_of_runs,
    runs_pooled,
    seeds_legend,
    summarize_group,
)
from ael.viz.style import method_colour

# Runs compared (chosen or of the group shown) are opened through their cached tailers; the other
# rows of the table read only their manifest and evaluations (cached until those files change), so
# a folder of long runs costs a few small files each.

# Classes drawn as panels by default: the tail first, then the others in order.
DEFAULT_PANELS = 6

st.title("Compare runs")
sel = state.selection()
if sel.error:
    st.error(f"Cannot list runs: {sel.error}")
    st.stop()
summaries = [s for s in sel.summaries if s.status != "unsupported"]
if not summaries:
    st.info(f"No runs in `{sel.runs_dir}` yet. Start one with `ael train` or `ael compare`.")
    st.stop()


def _tailer(run_id: str) -> state.RunTailer | None:
    """The run's cached tailer; the reasons one cannot be opened are the table's status column."""
    holder = st.empty()
    with holder.container():
        tailer = state.open_tailer(sel, run_id)
    holder.empty()
    return tailer


def _read(tailer: state.RunTailer, listed_status: str) -> Run:
    # A finished run is read once: polled again only while live, or when its manifest changed
    # status (a resumed run).
    if tailer.run.status() in state.LIVE_STATUSES or tailer.run.status() != listed_status:
        return tailer.refresh()
    return tailer.run


@st.cache_data(max_entries=512, show_spinner=False)
def _details(runs_dir: str, run_id: str, stamp: tuple[int, ...]) -> dict | None:
    """The table columns of a run not opened; ``stamp`` (:func:`overview_stamp`) keys the cache."""
    try:
        return overview_details(read_overview(runs_dir, run_id))
    except (RunStoreError, OSError):
        return None


def _extras(run_ids: list[str]) -> dict[str, dict]:
    out = {}
    for run_id in run_ids:
        try:
            stamp = overview_stamp(sel.runs_dir, run_id)
        except RunStoreError:
            continue
        details = _details(str(sel.runs_dir), run_id, stamp)
        if details is not None:
            out[run_id] = details
    return out


# ------------------------------------------------------------------ the runs table and the selection
sidebar_pick = [r for r in [sel.run_id, *sel.compare] if r]
if st.session_state.get("cmp_sidebar") != sidebar_pick:  # the sidebar's choice, when it changes, wins
    st.session_state["cmp_sidebar"] = sidebar_pick
    st.session_state["cmp_selected"] = sidebar_pick
    st.session_state["cmp_generation"] = st.session_state.get("cmp_generation", 0) + 1
chosen: list[str] = st.session_state["cmp_selected"]
groups = sorted({s.group for s in summaries if s.group})
group = st.session_state.get("cmp_group") if st.session_state.get("cmp_group") in groups else \
    (groups[0] if groups else None)
wanted = set(chosen) | {s.run_id for s in summaries if s.group == group}
tailers = {s.run_id: t for s in summaries if s.run_id in wanted and (t := _tailer(s.run_id)) is not None}
status = {s.run_id: s.status for s in summaries}
runs = {run_id: _read(t, status[run_id]) for run_id, t in tailers.items()}

st.subheader("Runs")
frame = runs_frame(summaries, runs, _extras([s.run_id for s in summaries if s.run_id not in runs]))
left, right = st.columns([2, 1])
text = left.text_input("Filter", key="cmp_filter", placeholder="words of the run id, method, group, status, dataset")
methods = right.multiselect("Method", sorted(m for m in frame["method"].dropna().unique()), key="cmp_methods")
shown = filter_frame(frame, text, methods)
ids = list(shown["run"])
# A new key whenever the rows or the sidebar's choice change: a selection is row positions, so it
# restarts from the runs chosen.
digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:10]
event = st.dataframe(
    shown, key=f"cmp_table_{digest}_{st.session_state['cmp_generation']}", on_select="rerun",
    selection_mode="multi-row", hide_index=True,
    selection_default={"selection": {"rows": [i for i, r in enumerate(ids) if r in chosen], "columns": []}},
    column_config={
        "run": st.column_config.TextColumn("run", pinned=True),
        "last step": st.column_config.NumberColumn("last step", help="The last step logged"),
        "of": st.column_config.NumberColumn("of", help="Planned steps"),
        "final mIoU": st.column_config.NumberColumn("final mIoU", format="%.2f",
                                                    help="The last evaluation (teacher), %"),
        "best mIoU": st.column_config.NumberColumn("best mIoU", format="%.2f", help="The best evaluation, %"),
        "tail mean": st.column_config.NumberColumn("tail mean", format="%.2f",
                                                   help="Mean IoU of the tail classes at the last evaluation, %"),
        "eval step": st.column_config.NumberColumn("eval step", help="The step of the last evaluation"),
    })
picked = [ids[i] for i in event.selection.rows if i < len(ids)]
# Runs filtered out stay chosen; the order chosen (the sidebar's run first) is kept, new picks appended.
chosen = [r for r in chosen if r not in ids or r in picked] + [r for r in picked if r not in chosen]
st.session_state["cmp_selected"] = chosen
for run_id in chosen:  # rows picked just now are opened now, not at the next rerun
    if run_id not in runs and run_id in status and (tailer := _tailer(run_id)) is not None:
        tailers[run_id] = tailer
        runs[run_id] = _read(tailer, status[run_id])
st.caption(f"Click rows to compare runs (sortable by any column; {len(chosen)} chosen). Read at "
           f"{time.strftime('%H:%M:%S')}; the charts below follow live runs on their own.")
compared = [r for r in chosen if r in runs]
if len(compared) >= 2:
    with st.expander(f"Config diff of the {len(compared)} chosen runs", expanded=False):
        diff = diff_frame({r: runs[r].config for r in compared})
        if diff.empty:
            st.caption("Their configs are the same (apart from the run name).")
        else:
            st.dataframe(diff, width="stretch")


def _reference(some_runs) -> Run:
    """The run whose pixel frequencies name the tail classes: the first that has them (a run that
    logged none yet marks nothing), else the first."""
    some_runs = list(some_runs)
    return next((r for r in some_runs if r.class_frequencies() is not None), some_runs[0])


def _tail(run: Run) -> set[str]:
    """The names of ``run``'s tail classes (:func:`~ael.runs.tail_indices` of its pixel frequencies)."""
    return {str(run.class_names[i]) for i in tail_indices(run.class_frequencies()) if i < len(run.class_names)}


def _marked(run: Run, class_names) -> list[str]:
    """The class names with the tail classes (of ``run``'s pixel frequencies) marked."""
    tail = _tail(run)
    return [f"{n} (tail)" if str(n) in tail else str(n) for n in class_names]


# ------------------------------------------------------------------ a comparison group
def _group() -> None:
    st.subheader("Comparison groups (`ael compare`)")
    name = st.selectbox("Group", groups, key="cmp_group")
    members = [run for run in runs.values() if run.group == name]
    rows = rows_of_runs(members, name)
    if not rows:
        st.info(f"No run of group {name!r} has an evaluation yet.")
        return
    st.markdown(summarize_group(rows, methods=sorted({r.method for r in rows})))
    model = st.radio("Model", sorted({r.model for r in rows}), horizontal=True, key="cmp_group_model")
    curves = group_curves(members, name, model)
    seeds = runs_pooled(rows, model)  # what each method's mean pools, in both charts
    # Each method one colour in both charts (darker than the runs' own colours further down).
    method_colours = {m: method_colour(n) for n, m in enumerate(sorted({r.method for r in rows}))}
    st.markdown("**mIoU over evaluations (%)**: the mean over seeds, the band ± one standard deviation")
    canvas_chart(band_curves_view(curves, view=f"compare/group/{name}/{model}", y_title="mIoU (%)",
                                  colours=method_colours, seeds=seeds), key="cmp_group_curves")
    staggered = [m for m, (_, _, _, count) in curves.items() if seeds.get(m, 0) > 1 and len(count)
                 and count.max() < seeds[m]]
    if staggered:
        st.caption(f"{', '.join(staggered)}: no evaluation step is shared by all seeds, so each point pools the "
                   "seeds evaluated at that step (hover gives how many).")
    per_class = group_class_iou(rows, model)
    names = _marked(_reference(members), rows[0].class_names)
    steps = sorted({r.step for r in rows if r.model == model and r.which == "final"})
    # A method of one seed has no spread to draw: no whisker, not a whisker of zero.
    canvas_chart(grouped_bars_view({label: 100 * mean for label, (mean, _) in per_class.items()}, names,
                                   view=f"compare/group-iou/{name}/{model}", y_title="final IoU (%)",
                                   labels={m: seeds_legend(m, seeds[m]) for m in per_class},
                                   errors={m: 100 * std if seeds[m] > 1 else np.full(len(std), np.nan)
                                           for m, (_, std) in per_class.items()},
                                   colours=method_colours),
                 key="cmp_group_bars")
    st.caption("Bars: mean final IoU over the seeds of each method; whiskers: the standard deviation over seeds; "
               f"final evaluation step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))}.")


if groups:
    with state.guard("the comparison groups"):
        _group()

if len(compared) < 2:
    st.info("Choose at least two runs: click their rows in the table (or pick a run and at least one more under "
            "**Compare with** in the sidebar), for example AEL against a mean-teacher baseline.")
    st.stop()
panel_tailers = [tailers[r] for r in compared]
colours = run_colours(compared, listed=[s.run_id for s in reversed(sel.summaries)])  # the oldest first


def _class_panels(chosen_runs: dict[str, Run]) -> None:
    st.subheader("Per-class curves")
    logged = {run_id: set(r.class_vector_names()) for run_id, r in chosen_runs.items()}
    vectors = sorted(set.intersection(*logged.values()))
    missing = {run_id: sorted(set.union(*logged.values()) - names) for run_id, names in logged.items()}
    if any(missing.values()):
        st.caption("Only the vectors every chosen run logged can be compared; "
                   + "; ".join(f"{run_id} has no {', '.join(names)}" for run_id, names in missing.items() if names)
                   + ".")
    if not vectors:
        st.info("These runs have no per-class series in common.")
        return
    left, right = st.columns([1, 2])
    default = "bank" if "bank" in vectors else vectors[0]
    first = _reference(chosen_runs.values())
    name = left.selectbox("Vector", vectors, index=vectors.index(default), key="cmp_series",
                          format_func=lambda v: f"{v}: {first.vector_description(v)}" if first.vector_description(v)
                          else v)
    classes = [c for c in first.class_names if all(c in r.class_names for r in chosen_runs.values())]
    tail = sorted(_tail(first) & set(classes), key=classes.index)
    default_classes = (tail + [c for c in classes if c not in tail])[:DEFAULT_PANELS]
    picked = right.multiselect("Classes", classes, default=sorted(default_classes, key=classes.index),
                               key=f"cmp_classes_{name}", format_func=lambda c: f"{c} (tail)" if c in tail else c)
    if not picked:
        st.info("Pick classes to draw.")
        return
    picked = sorted(picked, key=classes.index)  # panels in class order, however they were picked
    series = {}
    for run_id, run in chosen_runs.items():
        vector = run.class_vectors(name)
        values = np.asarray(vector.values, dtype=np.float64)
        # A run whose vector has other classes (a damaged manifest) leaves that panel empty.
        series[run_id] = (vector.steps, np.stack(
            [values[:, vector.class_names.index(c)] if c in vector.class_names else np.full(len(values), np.nan)
             for c in picked], axis=1))
    version = tuple((r, len(s[0])) for r, s in series.items())
    zoom = zoom_of("cmp_panels")
    live_chart("cmp_panels", lambda: class_panels_view(series, picked, view=f"compare/panels/{name}", colours=colours,
                                                       tail=tail, y_title=name, zoom=zoom),
               inputs=(tuple(chosen_runs), name, tuple(picked), zoom, tuple(colours.items()), tuple(tail)),
               version=version,
               points=sum(min(len(s[0]), PANEL_POINTS) * len(picked) for s in series.values()),
               draw=canvas_chart, light_points=LIGHT_POINTS)
    st.caption("One panel per class on shared axes, one line per run (bucket means of long runs; a zoom shows "
               "its range's records). Tail classes (under a quarter of the uniform pixel share in "
               f"{first.run_id}) are marked and chosen first. Drag to zoom every panel, double-click to zoom out; "
               "click a run in the legend to hide it (double click: it alone).")


def _final_iou(chosen_runs: dict[str, Run]) -> None:
    st.subheader("Final per-class IoU")
    evals = {run_id: model_evals(run) for run_id, run in chosen_runs.items()}
    step = matched_step(evals)
    options = ["the last step all have evaluated", "each run's own final evaluation"]
    how = st.radio("Compare at", options, index=0 if step is not None else 1, horizontal=True, key="cmp_final_how")
    if how == options[0] and step is None:
        st.warning("These runs share no evaluation step: each run's own final evaluation is shown instead.")
    at = evals_at(evals, step if how == options[0] else None)
    if not at:
        st.info("No evaluations to compare yet.")
        return
    # Runs with other class lists are compared on the classes they all have, each by its own index.
    class_lists = {r: [str(n) for n in chosen_runs[r].class_names] for r in at}
    same = {r: e for r, e in at.items() if len(e.iou) == len(class_lists[r])}
    for run_id in set(at) - set(same):
        st.warning(f"{run_id}'s evaluation at step {at[run_id].step} has {len(at[run_id].iou)} IoUs for "
                   f"{len(class_lists[run_id])} classes; left out of the IoU bars.")
    if not same:
        return
    names = [c for c in class_lists[next(iter(same))] if all(c in class_lists[r] for r in same)]
    if not names:
        st.info("These runs have no class in common.")
        return
    if any(len(class_lists[r]) != len(names) for r in same):
        st.caption(f"The {len(names)} classes every run has are compared (the runs' class lists differ).")
    bars = {r: 100 * np.asarray(e.iou, dtype=np.float64)[[class_lists[r].index(c) for c in names]]
            for r, e in same.items()}
    canvas_chart(grouped_bars_view(bars, _marked(_reference(chosen_runs.values()), names), view="compare/final-iou",
                                   labels={r: f"{r} (step {e.step}, mIoU {100 * e.miou:.2f})" for r, e in same.items()},
                                   colours=colours, y_title="IoU (%)"),
                 key="cmp_final_iou")
    if how == options[0] and step is not None:
        st.caption(f"Every run at step {step}, the last evaluation step they all have.")
    else:
        st.caption("Each run at its own last evaluation: "
                   + ", ".join(f"{r} at step {e.step}" for r, e in same.items())
                   + (" (different steps: not a like-for-like comparison)."
                      if len({e.step for e in same.values()}) > 1 else "."))


def _panel() -> None:
    with state.guard("the comparison"):
        chosen_runs = {run_id: _read(t, status[run_id]) for run_id, t in zip(compared, panel_tailers)}
        st.divider()
        st.header(f"The {len(chosen_runs)} chosen runs")
        st.caption("  ·  ".join(f"**{r}**: {run.status()}, step {latest_step(run)} of {run.total_steps or '?'}"
                                for r, run in chosen_runs.items()))
        st.subheader("mIoU over evaluations (%)")
        series = {}
        for run_id, run in chosen_runs.items():
            evals = model_evals(run)
            if evals:
                series[run_id] = (np.array([e.step for e in evals]), np.array([100 * e.miou for e in evals]))
        if series:
            canvas_chart(run_curves_view(series, view="compare/miou", colours=colours, y_title="mIoU (%)"),
                         key="cmp_miou")
            if len(series) < len(chosen_runs):
                st.caption("No evaluation yet: " + ", ".join(r for r in chosen_runs if r not in series) + ".")
        else:
            st.info("None of these runs has an evaluation yet.")
        _class_panels(chosen_runs)
        _final_iou(chosen_runs)


state.live_panel(_panel, key="compare_panel", tailers=panel_tailers)
