"""Class vectors: AEL's confidence bank over steps and as a heatmap, the bank next to the Copy-Paste and
CutMix distributions and r_c at a chosen step, the pseudo-labels' quality per class (and what equalization
sampling kept) over steps, any other vector the run's method declares, per-class IoU, and class pixel
frequencies. A run without a bank (a baseline) shows the rest."""

from __future__ import annotations

import streamlit as st
from ael_app import state
from ael_app.canvas_chart import LIGHT_POINTS, canvas_chart, zoom_of
from ael_app.canvas_views import bar_rows_view, class_lines_view, grouped_bars_view, heatmap_view
from ael_app.render import choose_step, live_chart

from ael.runs import row_at, tail_indices
from ael.viz.class_figures import ZERO_LABEL

st.title("Confidence bank")
sel = state.selection()
tailer = state.open_tailer(sel)
if tailer is None:
    st.stop()

MAX_IOU_LINES = 40  # more classes: per-class IoU as a heatmap
AT_STEP = (("bank", "confidence bank Conf"), ("copy_paste_prob", "Copy-Paste distribution"),
           ("cutmix_prob", "CutMix distribution"), ("sampling_ratio", "sampling ratio r_c"))
# Shown first among the vectors over steps: what the paper's strategies act on.
DIAGNOSTICS = ("pseudo_iou", "pseudo_precision", "pseudo_recall", "sampling_kept", "pseudo_weight")
FREQUENCIES = ("freq_labeled", "freq_pseudo")

class_names = tailer.run.class_names
with st.expander("Options", expanded=False):
    st.toggle("Logarithmic frequency axis", value=True, key="conf_log_freq")
    st.caption("Tail = classes whose share of the labeled pixels is below a quarter of the uniform share 1/C "
               "(none when the run recorded no pixel frequencies).")
c1, c2 = st.columns([1, 3])
show = c1.segmented_control("Classes shown", ["all", "tail", "chosen"], default="all", key="conf_show",
                            required=True)
chosen = c2.multiselect("Chosen classes", list(range(len(class_names))), key=f"conf_chosen_{tailer.run.run_id}",
                        format_func=lambda c: f"{c}: {class_names[c]}", disabled=show != "chosen",
                        placeholder="pick classes to draw")
st.caption("Drag to zoom, double-click to zoom out; legend clicks hide (double click: isolate) a class. "
           "They and the choices above stay through live refreshes.")


@st.cache_resource(max_entries=48, ttl=900, show_spinner=False)
def _shared(run_id: str, chart: str, inputs: tuple, version: object, _build):
    """A chart's data built once per run, chart, choices and data version, then shared by every
    session: a new browser tab (or a reload) starts a new session, whose own chart cache is empty.
    Drawing it changes nothing in it."""
    return _build()


def _chart(key: str, run_id: str, build, *, inputs: tuple, version: object, points: int) -> None:
    """:func:`live_chart` of a canvas chart (:mod:`ael_app.canvas_chart`) whose data is shared
    across sessions (:func:`_shared`). ``build(zoom)`` makes the data, with the detail of the range
    of steps the user zoomed the chart to (None: the whole run), for the charts over steps."""
    zoom = zoom_of(key)
    inputs = (*inputs, zoom)
    live_chart(key, lambda: _shared(run_id, key, inputs, version, lambda: build(zoom)), inputs=inputs,
               version=version, points=points, draw=canvas_chart, light_points=LIGHT_POINTS)


def _panel() -> None:
    with state.guard("the confidence bank"):
        run = tailer.refresh()
        state.show_notes(tailer)
        names = run.class_vector_names()
        if not names:
            st.info("No class vectors logged yet (they are written every `train.classes_every` steps).")
            return
        palette = run.palette
        highlight = tail_indices(run.class_frequencies())
        visible = {"all": None, "tail": highlight, "chosen": chosen}.get(show)
        uirev = run.run_id
        choice = (run.run_id, tuple(highlight), None if visible is None else tuple(visible))
        if "bank" in names:
            _bank_over_steps(run, palette, highlight, visible, choice)
        else:
            st.info(f"This run's method ({run.method or 'unknown'}) keeps no confidence bank: AEL's bank, "
                    "its distributions and r_c are not drawn.")
        _vectors_over_steps(run, names, palette, highlight, visible, choice)
        # The class names and the latest step of the page's vectors.
        reference = run.class_vectors("bank" if "bank" in names else names[0])

        st.subheader("At one step")
        step = choose_step(run, key="conf_step", latest=int(reference.steps[-1]))
        vectors = {}
        for name, title in AT_STEP:
            if name in names:
                found = row_at(run.class_vectors(name), step)
                if found is not None:
                    vectors[f"{title} (step {found[0]})"] = found[1]
        c = len(reference.class_names)
        _chart("conf_bars", run.run_id, lambda _: bar_rows_view(
            vectors, reference.class_names, palette=palette, highlight=highlight, view=f"{uirev}/bars"),
               inputs=(run.run_id, tuple(highlight), step if not st.session_state.get(
                   f"conf_step_{run.run_id}_follow", True) else None),
               version=tuple(vectors), points=4 * len(vectors) * c)

        left, right = st.columns(2)
        with left:
            st.subheader("Per-class IoU over evaluations")
            iou_names = [n for n in names if n.startswith("iou_")]
            if iou_names:
                model = st.radio("Model", iou_names, horizontal=True, key="conf_iou_model",
                                 format_func=lambda n: n.removeprefix("iou_"))
                iou = run.class_vectors(model if model in iou_names else iou_names[0])
                if c <= MAX_IOU_LINES:
                    _chart("conf_iou", run.run_id, lambda zoom: class_lines_view(
                        iou.steps, iou.values, iou.class_names, palette=palette, highlight=highlight,
                        visible=visible, y_title="IoU", markers=len(iou.steps) < 60, view=f"{uirev}/iou/{model}",
                        height=380, zoom=zoom), inputs=(*choice, model), version=len(iou.steps),
                        points=3 * c * min(len(iou.steps), 600))
                else:  # a legend of 150 lines is unreadable and slow: classes x evaluations instead
                    _chart("conf_iou", run.run_id, lambda zoom: heatmap_view(
                        iou.steps, iou.values, iou.class_names, colour_title="IoU", view=f"{uirev}/iou/{model}",
                        zoom=zoom),
                        inputs=(run.run_id, model), version=len(iou.steps), points=c * min(len(iou.steps), 400) // 4)
            else:
                st.info("No evaluation yet.")
        with right:
            st.subheader("Class pixel frequency")
            groups, labels, zero_labels = {}, {}, {}
            for name, label, zero_label in (("freq_labeled", "labels", "0 — not in the labels"),
                                            ("freq_pseudo", "pseudo-labels", ZERO_LABEL)):
                if name in names:
                    found = row_at(run.class_vectors(name), step)
                    if found is not None:
                        groups[label], labels[label], zero_labels[label] = found[1], f"{label} (step {found[0]})", zero_label
            if groups:
                log_y = bool(st.session_state.get("conf_log_freq", True))
                _chart("conf_freq", run.run_id, lambda _: grouped_bars_view(
                    groups, reference.class_names, labels=labels, y_title="share of pixels", log_y=log_y, percent=True,
                    zero_label=zero_labels, view=f"{uirev}/freq"),
                       inputs=(run.run_id, log_y, step if not st.session_state.get(
                           f"conf_step_{run.run_id}_follow", True) else None),
                       version=tuple(labels.values()), points=4 * len(groups) * c)
                never = [reference.class_names[i] for i in range(c) if any(v[i] == 0 for v in groups.values())]
                if never:
                    st.caption("Hatched stubs at the floor: a share of exactly 0 (never in the labels, or never "
                               "predicted): " + ", ".join(never))
            else:
                st.info("No pixel frequencies logged (`freq_labeled`, `freq_pseudo`).")


def _bank_over_steps(run, palette, highlight, visible, choice) -> None:
    bank = run.class_vectors("bank")
    uirev = run.run_id
    st.subheader("Per-class confidence over steps")
    version = (len(bank.steps), int(bank.steps[-1]))
    points = min(len(bank.steps), 40_000 // max(1, len(bank.class_names))) * len(bank.class_names)
    _chart("conf_lines", run.run_id, lambda zoom: class_lines_view(
        bank.steps, bank.values, bank.class_names, palette=palette, highlight=highlight, visible=visible,
        y_title="Conf_c", view=f"{uirev}/bank", zoom=zoom), inputs=choice, version=version, points=points)
    if highlight:
        st.caption("Highlighted tail classes: " + ", ".join(bank.class_names[c] for c in highlight))
    st.subheader("Classes x steps")
    _chart("conf_heatmap", run.run_id, lambda zoom: heatmap_view(
        bank.steps, bank.values, bank.class_names, colour_title="Conf", view=f"{uirev}/heat", zoom=zoom),
        inputs=(run.run_id,), version=version, points=min(len(bank.steps), 400) * len(bank.class_names) // 4)


def _vectors_over_steps(run, names, palette, highlight, visible, choice) -> None:
    """Any other vector the method declares, over steps: pseudo-label quality first."""
    shown = {*dict(AT_STEP), *FREQUENCIES}
    options = [n for n in DIAGNOSTICS if n in names] + sorted(
        n for n in names if n not in shown and n not in DIAGNOSTICS and not n.startswith("iou_"))
    if not options:
        return
    st.subheader("Pseudo-labels and other class vectors over steps")
    name = st.selectbox("Vector", options, key=f"conf_vector_{run.run_id}",
                        format_func=lambda n: f"{n}: {run.vector_description(n) or 'custom'}")
    name = name if name in options else options[0]
    series = run.class_vectors(name)
    st.caption(run.vector_description(name) or "")
    points = min(len(series.steps), 40_000 // max(1, len(series.class_names))) * len(series.class_names)
    _chart("conf_vector", run.run_id, lambda zoom: class_lines_view(
        series.steps, series.values, series.class_names, palette=palette, highlight=highlight, visible=visible,
        y_title=name, view=f"{run.run_id}/{name}", zoom=zoom), inputs=(*choice, name),
        version=(len(series.steps), int(series.steps[-1])), points=points)


state.live_panel(_panel, key="confidence_panel", tailers=[tailer])
