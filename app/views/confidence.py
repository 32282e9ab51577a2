"""Confidence bank: per-class confidence over steps, the classes x steps heatmap, the bank next to the
Copy-Paste and CutMix distributions and r_c at a chosen step, per-class IoU, and class pixel frequencies."""

from __future__ import annotations

import streamlit as st
from ael_app import state
from ael_app.render import choose_step, live_chart

from ael.runs import row_at, tail_indices
from ael.viz.class_figures import class_bars_figure, grouped_bars_figure
from ael.viz.figures import class_heatmap_figure, class_lines_figure

st.title("Confidence bank")
sel = state.selection()
tailer = state.open_tailer(sel)
if tailer is None:
    st.stop()

MAX_IOU_LINES = 40  # more classes: per-class IoU as a heatmap
AT_STEP = (("bank", "confidence bank Conf"), ("copy_paste_prob", "Copy-Paste distribution"),
           ("cutmix_prob", "CutMix distribution"), ("sampling_ratio", "sampling ratio r_c"))

class_names = tailer.run.class_names
with st.expander("Options", expanded=False):
    c1, c2 = st.columns(2)
    c2.toggle("Logarithmic frequency axis", value=True, key="conf_log_freq")
    c1.toggle("WebGL lines (for a browser with a GPU)", value=False, key="conf_webgl")
    st.caption("Tail = classes whose share of the labeled pixels is below a quarter of the uniform share 1/C "
               "(none when the run recorded no pixel frequencies).")
c1, c2 = st.columns([1, 3])
show = c1.segmented_control("Classes shown", ["all", "tail", "chosen"], default="all", key="conf_show",
                            required=True)
chosen = c2.multiselect("Chosen classes", list(range(len(class_names))), key=f"conf_chosen_{tailer.run.run_id}",
                        format_func=lambda c: f"{c}: {class_names[c]}", disabled=show != "chosen",
                        placeholder="pick classes to draw")
st.caption("Legend clicks hide or isolate a class at once, until the next live refresh redraws the chart; "
           "the choice above stays.")


def _panel() -> None:
    with state.guard("the confidence bank"):
        run = tailer.refresh()
        state.show_notes(tailer)
        names = run.class_vector_names()
        if "bank" not in names:
            st.info("No confidence bank logged yet (class vectors are written every `train.classes_every` steps).")
            return
        palette = run.palette
        highlight = tail_indices(run.class_frequencies())
        visible = {"all": None, "tail": highlight, "chosen": chosen}.get(show)
        bank = run.class_vectors("bank")
        uirev = run.run_id
        st.subheader("Per-class confidence over steps")
        version = (len(bank.steps), int(bank.steps[-1]))
        webgl = True if st.session_state.get("conf_webgl") else None
        choice = (run.run_id, tuple(highlight), None if visible is None else tuple(visible), webgl)
        points = min(len(bank.steps), 40_000 // max(1, len(bank.class_names))) * len(bank.class_names)
        live_chart("conf_lines", lambda: class_lines_figure(
            bank.steps, bank.values, bank.class_names, palette=palette, highlight=highlight, visible=visible,
            y_title="Conf_c", uirevision=f"{uirev}/bank", webgl=webgl), inputs=choice, version=version, points=points)
        if highlight:
            st.caption("Highlighted tail classes: " + ", ".join(bank.class_names[c] for c in highlight))
        st.subheader("Classes x steps")
        live_chart("conf_heatmap", lambda: class_heatmap_figure(
            bank.steps, bank.values, bank.class_names, colorbar_title="Conf", uirevision=f"{uirev}/heat"),
            inputs=(run.run_id,), version=version, points=min(len(bank.steps), 400) * len(bank.class_names) // 4)

        st.subheader("At one step")
        step = choose_step(run, key="conf_step", latest=int(bank.steps[-1]))
        vectors = {}
        for name, title in AT_STEP:
            if name in names:
                found = row_at(run.class_vectors(name), step)
                if found is not None:
                    vectors[f"{title} (step {found[0]})"] = found[1]
        c = len(bank.class_names)
        live_chart("conf_bars", lambda: class_bars_figure(vectors, bank.class_names, palette=palette,
                                                          highlight=highlight),
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
                    live_chart("conf_iou", lambda: class_lines_figure(
                        iou.steps, iou.values, iou.class_names, palette=palette, highlight=highlight,
                        visible=visible, y_title="IoU", markers=len(iou.steps) < 60, uirevision=f"{uirev}/iou",
                        height=380), inputs=(*choice, model), version=len(iou.steps),
                        points=3 * c * min(len(iou.steps), 600))
                else:  # a legend of 150 lines is unreadable and slow: classes x evaluations instead
                    live_chart("conf_iou", lambda: class_heatmap_figure(
                        iou.steps, iou.values, iou.class_names, colorbar_title="IoU", uirevision=f"{uirev}/iou"),
                        inputs=(run.run_id, model), version=len(iou.steps), points=c * min(len(iou.steps), 400) // 4)
            else:
                st.info("No evaluation yet.")
        with right:
            st.subheader("Class pixel frequency")
            groups = {}
            for name, label in (("freq_labeled", "labels"), ("freq_pseudo", "pseudo-labels")):
                if name in names:
                    found = row_at(run.class_vectors(name), step)
                    if found is not None:
                        groups[f"{label} (step {found[0]})"] = found[1]
            if groups:
                log_y = bool(st.session_state.get("conf_log_freq", True))
                live_chart("conf_freq", lambda: grouped_bars_figure(groups, bank.class_names,
                                                                    y_title="share of pixels", log_y=log_y),
                           inputs=(run.run_id, log_y, step if not st.session_state.get(
                               f"conf_step_{run.run_id}_follow", True) else None),
                           version=tuple(groups), points=4 * len(groups) * c)
            else:
                st.info("No pixel frequencies logged (`freq_labeled`, `freq_pseudo`).")
        extra = [n for n in names if n not in dict(AT_STEP) and not n.startswith("iou_")
                 and n not in ("freq_labeled", "freq_pseudo")]
        if extra:
            st.caption("Other class vectors in this run: " + ", ".join(
                f"{n} ({run.vector_description(n) or 'custom'})" for n in extra))


state.live_panel(_panel, key="confidence_panel", tailers=[tailer])
