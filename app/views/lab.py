"""Augmentation lab: AEL's adaptive Copy-Paste and CutMix, and the sampling ratio r_c, from the run's bank (or an edited one)."""

from __future__ import annotations

import numpy as np
import streamlit as st
from ael_app import state
from ael_app.render import chart, choose_step, class_legend

from ael.lab import AugmentationLab, lab_dataset_from_config
from ael.runs import row_at
from ael.runs.sample_text import describe_box
from ael.viz import overlay
from ael.viz.class_figures import class_bars_figure
from ael.viz.images import draw_box, draw_outline

st.title("Augmentation lab")
sel = state.selection()
tailer = state.open_tailer(sel)
if tailer is None:
    st.stop()
MAX_SLIDERS = 40
BOX = (255, 255, 0)  # the CutMix box
OUTLINE = (255, 0, 255)  # pasted pixels, the chosen component


@st.cache_resource(max_entries=4, show_spinner="Loading images for the lab…")
def _lab(runs_dir: str, run_id: str, num_classes: int, _config: dict) -> tuple[AugmentationLab, str | None]:
    dataset, params, note = lab_dataset_from_config(_config, num_classes)
    return AugmentationLab.from_dataset(dataset, **params), note


def _redraw() -> None:
    st.session_state["lab_seed"] = int(st.session_state.get("lab_seed", 0)) + 1


def _panel() -> None:
    with state.guard("the augmentation lab"):
        run = tailer.refresh()
        names = run.class_names
        if not names:
            st.error("The run names no classes (its manifest is missing or damaged); the lab needs them.")
            return
        try:
            lab, note = _lab(str(sel.runs_dir), run.run_id, len(names), run.config)
        except ValueError as err:
            st.error(f"The lab cannot load images for this run: {err}")
            return
        if note:
            st.info(note)
        st.caption("The lab has no network: ground-truth labels stand in for the teacher's predictions "
                   "(CutMix bank, connected components). Copy-Paste always pastes here.")
        palette = run.palette
        has_bank = "bank" in run.class_vector_names()
        c1, c2, c3 = st.columns([2, 1, 1])
        source = c1.radio("Bank", ["from the run", "edited by hand"] if has_bank else ["edited by hand"],
                          horizontal=True, key="lab_source")
        st.session_state.setdefault("lab_seed", 0)
        c2.number_input("Seed", min_value=0, step=1, key="lab_seed")
        c3.button("Re-draw", icon=":material/casino:", on_click=_redraw, key="lab_redraw")
        run_row = None
        if has_bank:
            bank = run.class_vectors("bank")
            step = choose_step(run, key="lab_step", latest=int(bank.steps[-1]))
            run_row = row_at(bank, step)
        base = run_row[1] if run_row is not None else np.full(len(names), 0.5)
        if source == "edited by hand":
            conf = np.array(base, dtype=np.float64)
            with st.expander("Edit the bank", expanded=True):
                if st.button("Reset to the run's bank", key="lab_reset"):
                    for c in range(len(names)):
                        st.session_state.pop(f"lab_conf_{run.run_id}_{c}", None)
                if len(names) <= MAX_SLIDERS:
                    cols = st.columns(4)
                    for c, name in enumerate(names):
                        conf[c] = cols[c % 4].slider(f"{c}: {name}", 0.0, 1.0, float(np.clip(base[c], 0, 1)), 0.01,
                                                     key=f"lab_conf_{run.run_id}_{c}")
                else:
                    import pandas as pd

                    edited = st.data_editor(pd.DataFrame({"class": names, "Conf": np.clip(base, 0, 1)}),
                                            key=f"lab_table_{run.run_id}", hide_index=True, disabled=["class"])
                    conf = edited["Conf"].to_numpy(dtype=np.float64).clip(0, 1)
        else:
            conf = np.asarray(base, dtype=np.float64)
            st.caption(f"Bank of step {run_row[0]}" if run_row else "")
        seed = int(st.session_state["lab_seed"])
        dist = lab.distributions(conf)
        ratio_title = f"equalization sampling ratio r_c (γ2 = {lab.gamma2:g})"
        chart(class_bars_figure({"confidence bank Conf": dist.bank, "Copy-Paste distribution": dist.copy_paste,
                                 "CutMix distribution": dist.cutmix, ratio_title: dist.sampling_ratio},
                                names, palette=palette),
              key="lab_dist")
        st.caption("Equalization sampling keeps a pixel the teacher labels c with probability "
                   "r_c = ((1 − Conf_c) / max_k (1 − Conf_k)) ^ γ2: the least confident class keeps all its pixels."
                   + ("" if lab.sampling else " This run trains with sampling off (r_c = 1 for every class); "
                      "the bars show what sampling would use."))
        ignore = lab.ignore_index
        pal = palette if palette is not None else np.zeros((len(names), 3), np.uint8)

        st.subheader("Adaptive Copy-Paste")
        cp = lab.copy_paste(conf, seed=seed)
        chosen = ", ".join(f"{c}: {names[c]}" for c in cp.chosen)
        pasted = ", ".join(f"{c}: {names[c]}" for c in cp.pasted) or "none (absent from the source)"
        st.markdown(f"Sampled classes: **{chosen}** · pasted: **{pasted}** · target #{cp.target}, source #{cp.source}")
        st.caption("Magenta outline: the pasted pixels.")
        cols = st.columns(4)
        cols[0].image(overlay(cp.image, cp.label, pal, alpha=0.5, ignore_index=ignore), caption="target", width="stretch")
        cols[1].image(overlay(cp.source_image, cp.source_label, pal, alpha=0.7, ignore_index=ignore,
                              visible_classes=cp.chosen), caption="source (sampled classes)", width="stretch")
        cols[2].image(draw_outline(cp.result_image, cp.paste_mask, colour=OUTLINE), caption="result (pasted outlined)",
                      width="stretch")
        cols[3].image(draw_outline(overlay(cp.result_image, cp.result_label, pal, alpha=0.5, ignore_index=ignore),
                                   cp.paste_mask, colour=OUTLINE), caption="result label", width="stretch")

        st.subheader("Adaptive CutMix")
        cm = lab.cutmix(conf, seed=seed)
        how = "a connected component of the class" if cm.from_component else "the random half-area fallback"
        partner = "has the class (CutMix bank)" if cm.partner_has_class else "drawn uniformly (no image has the class)"
        st.markdown(f"Sampled class: **{cm.sampled_class}: {names[cm.sampled_class]}** · partner #{cm.image_b} "
                    f"{partner} · box {describe_box(cm.box)} from {how}")
        st.caption("Yellow frame: the CutMix box" + ("; magenta outline: the component." if cm.from_component else "."))
        cols = st.columns(4)
        cols[0].image(cm.a, caption=f"image i (#{cm.image_a})", width="stretch")
        b_view = overlay(cm.b, cm.label_b, pal, alpha=0.6, ignore_index=ignore, visible_classes=[cm.sampled_class])

        def marked(image: np.ndarray) -> np.ndarray:
            # A 1-px frame just outside the box and a 1-px ring around the component: a small box
            # on a small image stays visible.
            return draw_outline(draw_box(image, cm.box, colour=BOX, outside=True), cm.component, colour=OUTLINE)

        cols[1].image(marked(b_view), caption=f"partner j (#{cm.image_b}), class, box and component", width="stretch")
        cols[2].image(marked(cm.mixed), caption="mixed", width="stretch")
        cols[3].image(overlay(cm.mixed, cm.mixed_label, pal, alpha=0.5, ignore_index=ignore), caption="mixed label",
                      width="stretch")
        class_legend(names, palette, only=sorted(set(cp.chosen) | {cm.sampled_class}))


state.live_panel(_panel, key="lab_panel", tailers=[tailer])
