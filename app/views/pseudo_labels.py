"""Pseudo-labels: the image samples the trainer logged, each saying which stream it shows and what happened.

``pseudo``: the teacher on a labeled image (input, ground truth, pseudo-label, confidence, errors);
``copy_paste``: a labeled image before → after, the pasted pixels outlined; ``cutmix``: images A
and B, the mix, the box (a thin frame around it) and the chosen component of B outlined.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from ael_app import state
from ael_app.render import class_legend

from ael.runs import RunStoreError
from ael.runs.sample_text import describe_sample, sample_stream
from ael.viz import confidence_colormap, error_map, overlay
from ael.viz.images import component_in_box, draw_box, draw_outline

st.title("Pseudo-labels")
sel = state.selection()
tailer = state.open_tailer(sel)
if tailer is None:
    st.stop()

BOX_COLOUR = (255, 255, 0)  # the CutMix box: a 1-px frame just outside it
OUTLINE_COLOUR = (255, 0, 255)  # pasted pixels / the chosen component: a 1-px ring around them
CAPTIONS = {
    "pseudo": {"image": "labeled image", "gt": "ground truth", "pseudo": "teacher's pseudo-label"},
    "copy_paste": {"before": "before Copy-Paste", "label_before": "label before",
                   "image": "after Copy-Paste (pasted pixels outlined)", "label": "label after (pasted outlined)"},
    "cutmix": {"image_a": "image A (unlabeled)", "image_b": "image B: box and component",
               "mixed": "mixed: A with B's box", "pseudo_b": "teacher's pseudo-label of B",
               "pseudo_mixed": "pseudo-label of the mix"},
}
# Left to right: Copy-Paste as before → after (older runs stored "after" first); CutMix as A, B
# and what the box was cut from, then the mix.
ORDER = {"copy_paste": ("before", "label_before", "image", "label"),
         "cutmix": ("image_a", "image_b", "pseudo_b", "mixed", "pseudo_mixed")}
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


def _outlines(kind: str, sample, meta: dict) -> tuple[np.ndarray | None, list | None, str]:
    """The mask to outline, the CutMix box, and a line saying what the marks are."""
    box = meta.get("box") if isinstance(meta.get("box"), list) and len(meta["box"]) == 4 else None
    if kind == "copy_paste":
        pasted = sample.maps.get("pasted")
        if pasted is None:
            return None, None, "This run did not record the pasted pixels (an older run): no outline."
        mask = pasted > 0.5
        return mask, None, "Magenta outline: the pasted pixels." if mask.any() else "Nothing pasted: no outline."
    if kind == "cutmix" and box is not None:
        cls, label_b = meta.get("class"), sample.labels.get("pseudo_b")
        if not (isinstance(cls, int) and cls >= 0 and meta.get("component_box")):
            return None, box, "Yellow frame: the CutMix box (a random one: no component)."
        if label_b is None:
            return None, box, "Yellow frame: the CutMix box; this run did not record B's pseudo-label (older run)."
        return component_in_box(label_b, cls, box), box, "Yellow frame: the CutMix box; magenta: the component."
    return None, box, ""


def _parts(kind: str, sample, palette: np.ndarray, alpha: float, ignore: int,
           shown: list[int] | None) -> tuple[list[tuple[str, np.ndarray]], str]:
    meta = sample.record.meta
    mask, box, marks = _outlines(kind, sample, meta)
    captions = dict(CAPTIONS.get(kind, {}))
    if kind == "cutmix" and mask is None:
        captions["image_b"] = "image B and the box"

    def marked(image: np.ndarray, name: str) -> np.ndarray:
        # The box and component sit on B and on the mix; the pasted pixels on the "after" views.
        if kind == "cutmix" and name in ("image_b", "mixed", "pseudo_b", "pseudo_mixed"):
            if box is not None:
                image = draw_box(image, box, colour=BOX_COLOUR, outside=True)
            if mask is not None:
                image = draw_outline(image, mask, colour=OUTLINE_COLOUR)
        elif kind == "copy_paste" and name in ("image", "label") and mask is not None:
            image = draw_outline(image, mask, colour=OUTLINE_COLOUR)
        return image

    images = sample.images
    named = [(name, marked(image, name)) for name, image in images.items()]
    for name, label in sample.labels.items():
        under = {"label_before": "before", "pseudo_b": "image_b"}.get(name)
        base = images.get(under) if under else next((images[k] for k in ("mixed", "image") if k in images), None)
        background = base if base is not None and base.shape[:2] == label.shape else np.zeros((*label.shape, 3),
                                                                                              np.uint8)
        drawn = overlay(background, label, palette, alpha=alpha, ignore_index=ignore, visible_classes=shown)
        named.append((name, marked(drawn, name)))
    order = ORDER.get(kind, ())
    named.sort(key=lambda p: order.index(p[0]) if p[0] in order else len(order))  # stable: the rest as stored
    parts = [(captions.get(name, name), image) for name, image in named]
    for name, value in sample.maps.items():
        if not (kind == "copy_paste" and name == "pasted"):  # drawn as the outline
            parts.append((f"{name} (0 → 1)", confidence_colormap(value)))
    if "gt" in sample.labels and "pseudo" in sample.labels:
        gt, pseudo = sample.labels["gt"], sample.labels["pseudo"]
        wrong = float(np.mean((gt != pseudo)[gt != ignore])) if np.any(gt != ignore) else float("nan")
        parts.append((f"error (red wrong, {100 * wrong:.1f}%)", error_map(pseudo, gt, ignore_index=ignore)))
    return parts, marks


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
            parts, marks = _parts(record.kind, sample, palette, alpha, ignore, visible or None)
            if marks:
                st.caption(marks)
            _columns(parts)


state.live_panel(_panel, key="pseudo_panel", tailers=[tailer])
