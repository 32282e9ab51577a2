"""The Pseudo-labels page on a run the real trainer wrote: stream titles, metadata in words, the sample-step slider."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_app_trained_run import tiny_config

from ael.config import config_from_dict
from ael.engine.trainer import train
from ael.runs import open_run
from ael.runs.sample_text import describe_box

PAGE = "views/pseudo_labels.py"


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory) -> tuple[Path, str]:
    runs = tmp_path_factory.mktemp("samples") / "runs"
    cfg = tiny_config(runs)  # 12 iterations, samples every 5 steps
    cfg["method"]["copy_paste"]["prob"] = 1.0  # every step pastes when its source holds a drawn class
    train(config_from_dict(cfg), progress=False)
    (run_id,) = [p.name for p in runs.iterdir() if not p.name.startswith(".")]
    return runs, run_id


def _texts(at, element: str) -> list[str]:
    return [e.value for e in getattr(at, element)]


def test_each_sample_names_its_stream_and_its_metadata_in_words(sampled_run, app_factory):
    runs, run_id = sampled_run
    run = open_run(runs, run_id)
    at = app_factory(runs)
    at.switch_page(PAGE).run()
    assert not at.exception and not at.error
    # The pseudo sample is the teacher on a labeled image, and says so.
    assert "**#0 · labeled image: the teacher's pseudo-label (beside the ground truth)**" in _texts(at, "markdown")
    assert "the teacher's prediction on a labeled image, compared with its ground truth" in _texts(at, "caption")

    at.selectbox(key=f"pl_kind_{run_id}").set_value("cutmix").run()
    assert not at.exception and not at.error
    record = run.samples("cutmix")[-1]
    meta = record.meta
    assert record.step == 10 and meta["class_name"] == f"blob-{meta['class'] - 1}"
    assert "**#0 · unlabeled images after CutMix (image B's box pasted onto image A)**" in _texts(at, "markdown")
    cls = f"{meta['class_name']} (class {meta['class']})"
    where = describe_box(meta["box"])
    expected = (f"CutMix box around a component of {cls}, box {where}" if meta["component_box"] else
                f"no large component of {cls} in image B: a random half-area box instead, {where}")
    captions = _texts(at, "caption")
    assert expected in captions
    assert not any("{" in c for c in captions)  # no raw dict anywhere
    assert [i.proto.imgs[0].caption for i in at.get("image")] == [
        "image A (unlabeled)", "image B: box and component" if meta["component_box"] else "image B and the box",
        "teacher's pseudo-label of B", "mixed: A with B's box",
        "pseudo-label of the mix", "confidence (0 → 1)"]

    at.selectbox(key=f"pl_kind_{run_id}").set_value("copy_paste").run()
    assert "**#0 · labeled image after Copy-Paste (before → after)**" in _texts(at, "markdown")
    paste = run.samples("copy_paste")[-1]
    pasted = run.load_sample(paste).maps["pasted"]
    assert paste.meta["pasted_classes"] and pasted.any()  # this run's last sample pasted something
    words = " and ".join(f"{n} (class {c})" for c, n in zip(paste.meta["pasted_classes"], paste.meta["pasted_names"]))
    assert f"pasted the pixels of {words} from a labeled paste-source image" in _texts(at, "caption")
    assert "Magenta outline: the pasted pixels." in _texts(at, "caption")
    assert [i.proto.imgs[0].caption for i in at.get("image")] == [
        "before Copy-Paste", "label before", "after Copy-Paste (pasted pixels outlined)",
        "label after (pasted outlined)"]


def test_the_step_slider_moves_between_the_steps_that_have_samples(sampled_run, app_factory):
    runs, run_id = sampled_run
    steps = sorted({r.step for r in open_run(runs, run_id).samples("pseudo")})
    assert steps == [0, 5, 10]  # media_every 5 over 12 iterations
    at = app_factory(runs)
    at.switch_page(PAGE).run()
    assert "pseudo samples at step 10 (1 sample(s); 3 step(s) with samples)" in _texts(at, "caption")
    at.toggle(key=f"pl_follow_{run_id}").set_value(False).run()
    slider = at.select_slider(key=f"pl_step_{run_id}_pseudo")
    assert slider.options == [str(s) for s in steps] and slider.value == 10
    slider.set_value(5).run()
    assert not at.exception
    assert "pseudo samples at step 5 (1 sample(s); 3 step(s) with samples)" in _texts(at, "caption")
    assert at.select_slider(key=f"pl_step_{run_id}_pseudo").value == 5


def _cutmix_run(runs: Path, run_id: str, *, with_partner_label: bool) -> None:
    """A run holding one CutMix sample whose box is a component's: class 3 at rows 10..19, cols 20..33 of B."""
    import numpy as np

    from ael.runs import RunWriter

    rng = np.random.default_rng(0)
    label_b = np.zeros((48, 48), np.uint8)
    label_b[10:20, 20:34] = 3
    label_b[30:40, 5:15] = 3  # another component of the class: not the one cut
    images = {k: rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for k in ("image_a", "image_b", "mixed")}
    labels = {"pseudo_mixed": label_b.copy(), **({"pseudo_b": label_b} if with_partner_label else {})}
    writer = RunWriter(runs, run_id, class_names=["sky", "road", "car", "sign"], total_steps=10, heartbeat_s=0.2)
    writer.log_scalars(0, {"loss/total": 1.0})
    writer.log_sample(4, "cutmix", images=images, labels=labels,
                      meta={"stream": "unlabeled", "box": [10, 20, 20, 34], "class": 3, "component_box": True,
                            "class_name": "sign"})
    writer.finish()


@pytest.mark.parametrize("with_partner_label", [True, False], ids=["this version", "older run"])
def test_cutmix_component_is_outlined_when_the_run_recorded_b_s_pseudo_label(tmp_path, app_factory,
                                                                             with_partner_label):
    runs = tmp_path / "runs"
    _cutmix_run(runs, "mix", with_partner_label=with_partner_label)
    at = app_factory(runs)
    at.switch_page(PAGE).run()
    assert not at.exception and not at.error
    captions = _texts(at, "caption")
    assert "CutMix box around a component of sign (class 3), box 14×10 px (width × height) at x=20, y=10" in captions
    images = [i.proto.imgs[0].caption for i in at.get("image")]
    if with_partner_label:
        assert "Yellow frame: the CutMix box; magenta: the component." in captions
        assert images[:3] == ["image A (unlabeled)", "image B: box and component", "teacher's pseudo-label of B"]
    else:
        assert ("Yellow frame: the CutMix box; this run did not record B's pseudo-label (older run)." in captions)
        assert images[:2] == ["image A (unlabeled)", "image B and the box"]
