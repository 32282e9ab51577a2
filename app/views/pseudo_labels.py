"""Pseudo-labels: for a chosen step, input, ground truth, teacher pseudo-label, confidence and error maps."""

from __future__ import annotations

import numpy as np
import streamlit as st
from ael_app import state
from ael_app.render import choose_step, class_legend

from ael.runs import RunStoreError
from ael.viz import confidence_colormap, draw_box, error_map, overlay

st.title("Pseudo-labels")
sel = state.selection()
tailer = state.open_tailer(sel)
if tailer is None:
    st.stop()


def _columns(parts: list[tuple[str, np.ndarray]]) -> None:
    cols = st.columns(len(parts))
    for col, (caption, image) in zip(cols, parts):
        col.image(image, caption=caption, width="stretch")


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
                            key=f"pl_kind_{run.run_id}")
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
        wanted = choose_step(run, key=f"pl_step_{kind}", latest=steps[-1])
        step = max((s for s in steps if s <= wanted), default=steps[0])
        chosen = [r for r in records if r.step == step]
        st.caption(f"{kind} samples at step {step} ({len(chosen)} sample(s); {len(steps)} step(s) with samples)")
        class_legend(names, palette, only=sorted(visible) if visible else None)
        ignore = run.ignore_index if run.ignore_index is not None else 255
        shown = visible or None
        for record in chosen:
            try:
                sample = run.load_sample(record)
            except RunStoreError as err:
                st.warning(f"Sample {record.kind} #{record.index} at step {record.step}: {err}")
                continue
            base = next((sample.images[k] for k in ("mixed", "image") if k in sample.images),
                        next(iter(sample.images.values()), None))
            parts: list[tuple[str, np.ndarray]] = []
            for name, image in sample.images.items():
                box = sample.record.meta.get("box") if name in ("mixed", "image_b") else None
                if isinstance(box, list) and len(box) == 4:
                    image = draw_box(image, box, colour=(255, 255, 0))
                parts.append((name, image))
            for name, label in sample.labels.items():
                background = base if base is not None and base.shape[:2] == label.shape else np.zeros(
                    (*label.shape, 3), np.uint8)
                parts.append((name, overlay(background, label, palette, alpha=alpha, ignore_index=ignore,
                                            visible_classes=shown)))
            for name, value in sample.maps.items():
                parts.append((f"{name} (0 → 1)", confidence_colormap(value)))
            if "gt" in sample.labels and "pseudo" in sample.labels:
                gt, pseudo = sample.labels["gt"], sample.labels["pseudo"]
                wrong = float(np.mean((gt != pseudo)[gt != ignore])) if np.any(gt != ignore) else float("nan")
                parts.append((f"error (red wrong, {100 * wrong:.1f}%)", error_map(pseudo, gt, ignore_index=ignore)))
            meta = {k: v for k, v in sample.record.meta.items() if k != "box"}
            st.markdown(f"**#{record.index}**" + (f" — {meta}" if meta else ""))
            _columns(parts)


state.live_panel(_panel, key="pseudo_panel", tailers=[tailer])
