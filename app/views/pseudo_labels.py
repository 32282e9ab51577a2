"""Pseudo-labels: the image samples the trainer logged, each saying which stream it shows and what happened.

``pseudo``: the teacher on a labeled image (input, ground truth, pseudo-label, confidence, errors);
``copy_paste``: a labeled image before → after, the pasted pixels outlined; ``cutmix``: images A
and B, the mix, the box (a thin frame around it) and the chosen component of B outlined. The
panels are :func:`ael.viz.sample_panels.sample_panels`', as in the notebooks' live monitor.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from ael_app import state
from ael_app.render import class_legend

from ael.runs import RunStoreError
from ael.runs.sample_text import describe_sample, sample_stream
from ael.viz.sample_panels import sample_panels

st.title("Pseudo-labels")
sel = state.selection()
tailer = state.open_tailer(sel)
if tailer is None:
    st.stop()

# The kind chooser's short names (the full stream is each sample's title).
KIND_NAMES = {"pseudo": "pseudo: teacher on labeled", "cutmix": "cutmix: unlabeled", "copy_paste": "copy_paste: labeled"}


def _columns(parts: list[tuple[str, np.ndarray]]) -> None:
    cols = st.columns(len(parts))
    for col, (caption, image) in zip(cols, parts):
        col.image(image, caption=caption, width="stretch")


def _sample_step(run_id: str, kind: str, steps: list[int]) -> int:
    """The step shown: the latest while "Follow latest sample" is on, else one of the steps that have samples."""
    follow = st.toggle("Follow latest sample", value=True, key=f"pl_follow_{run_id}")
    key = f"pl_step_{run_id}_{kind}"
    if follow or len(steps) == 1:
        st.caption(f"Step {steps[-1]} (latest with samples)")
        return steps[-1]
    # A select slider over the sample steps only: every position shows samples. Its value is
    # kept in the session (a live refresh adds steps; the chosen one stays).
    if st.session_state.get(key) not in steps:
        st.session_state[key] = steps[-1]
    return int(st.select_slider("Step (steps with samples)", options=steps, key=key))


def _panel() -> None:
    with state.guard("the pseudo-labels"):
        run = tailer.refresh()
        state.show_notes(tailer)
        kinds = run.sample_kinds()
        if not kinds:
            st.info("No image samples logged yet (the trainer writes them every `train.media_every` steps).")
            return
        c1, c2, c3 = st.columns([1, 1, 2])
        kind = c1.selectbox("Sample kind", kinds, index=kinds.index("pseudo") if "pseudo" in kinds else 0,
                            key=f"pl_kind_{run.run_id}", format_func=lambda k: KIND_NAMES.get(k, k))
        alpha = c2.slider("Label opacity", 0.0, 1.0, 0.6, 0.05, key="pl_alpha")
        names = run.class_names
        palette = run.palette
        if palette is None:
            from ael.data import default_palette

            palette = np.asarray(default_palette(max(1, len(names))), dtype=np.uint8)
        visible = c3.multiselect("Classes shown", list(range(len(names))), default=None, key=f"pl_visible_{run.run_id}",
                                 format_func=lambda c: f"{c}: {names[c]}", placeholder="all classes")
        records = run.samples(kind)
        steps = sorted({r.step for r in records})
        step = _sample_step(run.run_id, kind, steps)
        chosen = [r for r in records if r.step == step]
        st.caption(f"{kind} samples at step {step} ({len(chosen)} sample(s); {len(steps)} step(s) with samples)")
        class_legend(names, palette, only=sorted(visible) if visible else None)
        ignore = run.ignore_index if run.ignore_index is not None else 255
        for record in chosen:
            st.markdown(f"**#{record.index} · {sample_stream(record.kind, record.meta)}**")
            st.caption(describe_sample(record.kind, record.meta, names))
            try:
                sample = run.load_sample(record)
            except RunStoreError as err:
                st.warning(f"Sample {record.kind} #{record.index} at step {record.step}: {err}")
                continue
            parts, marks = sample_panels(record.kind, sample.images, sample.labels, sample.maps, record.meta, palette,
                                         alpha=alpha, ignore_index=ignore, shown=visible or None)
            if marks:
                st.caption(marks)
            _columns(parts)


state.live_panel(_panel, key="pseudo_panel", tailers=[tailer])
