"""``ael``: when the sampled loss reads the bank, the partner stream, and the method's state."""

from __future__ import annotations

import pytest
import torch

from ael.config.methods import AELConfig
from ael.core import equalization_ratio
from ael.methods import AELMethod

from .helpers import (
    C,
    FixedPartners,
    ael_config,
    make_ael,
    make_batch,
    make_context,
    make_models,
    partner_images,
    run_step,
    sample,
)


@pytest.mark.parametrize("when", ["end_of_step", "before_unsup_loss"])
def test_sampled_loss_reads_the_bank_of_its_update_timing(when):
    # Bank (0.9, 0.5, 0.2): rates (1/8, 5/8, 1). With momentum 0 the update puts the batch's mean
    # GT-class probability, the same for every class (one-hot colour images): rates all 1. So the
    # mixed images keep every pixel when the sampled loss reads the updated bank (release), and
    # about the old rates' share when it reads the bank of the step start (paper).
    method, student, _, _ = make_ael(copy_paste={"enabled": False}, sampling={"enabled": True},
                                     bank={"update": when, "momentum": 0.0})
    old = method.bank.values.clone()
    _, storage = run_step(method, make_batch())
    new = method.bank.values
    assert not torch.allclose(new, old)
    assert torch.allclose(new, new[0].expand(C), atol=1e-5)
    with torch.no_grad():
        pred = student.conv(student.inputs[0][2:]).argmax(1)  # the student's classes on the mixed images
    expected = {"end_of_step": equalization_ratio(old)[pred].mean().item(), "before_unsup_loss": 1.0}
    kept = storage.iteration_scalars()["unsup/mask_ratio"].item()
    assert kept == pytest.approx(expected[when], abs=0.06)
    other = "before_unsup_loss" if when == "end_of_step" else "end_of_step"
    assert abs(expected[when] - expected[other]) > 0.2  # the two timings are told apart


def test_partners_are_drawn_from_the_banks_one_micro_step_ahead():
    method, _, teacher, fetch = make_ael(copy_paste={"enabled": False})
    run_step(method, make_batch(seed=1), micro_step=0)
    pending = method.partners.state_dict()
    assert pending["step"] == 1
    ids, classes = pending["indices"], pending["classes"]
    # Each partner holds the class it was drawn for, in the CutMix bank as step 0 left it.
    assert method.cutmix_bank.values[classes, ids].all()
    teacher.module.inputs.clear()
    _, storage = run_step(method, make_batch(seed=2), micro_step=1, samples=True)
    assert (ids.tolist(), 1) in fetch.calls  # loaded for step 1
    assert torch.equal(teacher.module.inputs[0][2:4], partner_images(2))  # and predicted by the teacher
    assert sample(storage, "cutmix").meta["class"].item() == classes[0].item()
    assert method.partners.pending_step == 2
    with pytest.raises(RuntimeError, match="requested for step 2, not 3"):
        run_step(method, make_batch(seed=3), micro_step=3)


def test_state_dict_round_trip_keeps_the_banks_and_the_pending_partners():
    a, _, _, fetch_a = make_ael()
    run_step(a, make_batch(seed=1), micro_step=0)
    run_step(a, make_batch(seed=2), micro_step=1)
    state = a.state_dict()
    saved = {"bank": state["bank"].clone(), "cutmix_bank": state["cutmix_bank"].clone(),
             "indices": state["partners"]["indices"].clone()}
    assert state["partners"]["step"] == 2

    # Resume as the trainer does: build, load, then before_train at the resumed micro-step.
    b, _, _, fetch_b = make_ael(start=False)
    b.load_state_dict(state)
    b.before_train(2)
    assert torch.equal(b.bank.values, a.bank.values)
    assert torch.equal(b.cutmix_bank.values, a.cutmix_bank.values)
    pa, pb = a.partners.state_dict(), b.partners.state_dict()
    assert pb["step"] == 2
    assert torch.equal(pb["indices"], pa["indices"]) and torch.equal(pb["classes"], pa["classes"])

    # Same random state and weights: the resumed method takes the very same step 2.
    b.ctx.generator.set_state(a.ctx.generator.get_state())
    batch = make_batch(seed=3)
    loss_a, _ = run_step(a, batch, micro_step=2)
    loss_b, _ = run_step(b, batch, micro_step=2)
    assert torch.equal(loss_a, loss_b)
    assert torch.equal(a.bank.values, b.bank.values) and torch.equal(a.cutmix_bank.values, b.cutmix_bank.values)
    assert [c for c in fetch_b.calls if c[1] == 2] == [c for c in fetch_a.calls if c[1] == 2]
    assert torch.equal(a.partners.state_dict()["indices"], b.partners.state_dict()["indices"])
    # The saved state is a snapshot: the step after saving did not move it.
    assert torch.equal(state["bank"], saved["bank"]) and torch.equal(state["cutmix_bank"], saved["cutmix_bank"])
    assert torch.equal(state["partners"]["indices"], saved["indices"])


def test_a_state_saved_without_adaptive_cutmix_does_not_load_into_adaptive_cutmix():
    plain, _, _, _ = make_ael(cutmix={"adaptive": False})
    run_step(plain, make_batch())
    state = plain.state_dict()
    assert state["cutmix_bank"] is None and state["partners"] == {"step": -1}
    adaptive, _, _, _ = make_ael(start=False)
    with pytest.raises(ValueError, match="saved without adaptive CutMix"):
        adaptive.load_state_dict(state)


def test_a_state_without_pending_partners_does_not_load_into_adaptive_cutmix():
    unstarted, _, _, _ = make_ael(start=False)  # saved before its first step: nothing requested
    state = unstarted.state_dict()
    assert state["partners"] == {"step": -1}
    other, _, _, _ = make_ael(start=False)
    with pytest.raises(ValueError, match="no pending CutMix partners"):
        other.load_state_dict(state)


def test_adaptive_cutmix_needs_the_unlabeled_set():
    student, teacher = make_models()
    with pytest.raises(ValueError, match="needs the unlabeled set"):
        AELMethod(AELConfig(), make_context(student, teacher, fetch=None))
    with pytest.raises(ValueError, match="needs the unlabeled set"):
        AELMethod(AELConfig(), make_context(student, teacher, fetch=FixedPartners(), num_unlabeled=0))
    plain = AELMethod(ael_config(cutmix={"adaptive": False}), make_context(student, teacher, fetch=None))
    assert plain.partners is None and plain.cutmix_bank is None
    plain.close()


def test_loader_needs_follow_copy_paste():
    on = AELMethod.loader_needs(ael_config(copy_paste={"source_scale": (0.5, 1.5), "allow_self_source": True}))
    assert on.unlabeled and on.paste_source_scale == (0.5, 1.5) and on.allow_self_source
    off = AELMethod.loader_needs(ael_config(copy_paste={"enabled": False}))
    assert off.unlabeled and off.paste_source_scale is None


def test_samples_name_their_classes_and_come_only_when_wanted():
    method, _, _, _ = make_ael(copy_paste={"prob": 1.0, "num_categories": 5, "excluded_classes": ("road",)})
    _, storage = run_step(method, make_batch(), samples=True)
    assert sorted(s.kind for s in storage.samples()) == ["copy_paste", "cutmix", "pseudo"]
    plain = lambda meta: {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in meta.items()}  # noqa: E731
    cutmix = sample(storage, "cutmix")
    assert cutmix.describe(plain(cutmix.meta))["class_name"] == "sign"
    paste = sample(storage, "copy_paste")
    described = paste.describe(plain(paste.meta))
    assert set(described["pasted_classes"]) <= {1, 2} and described["pasted_classes"]
    assert described["pasted_names"] == [("road", "car", "sign")[c] for c in described["pasted_classes"]]
    _, storage = run_step(method, make_batch(seed=2), micro_step=1, samples=False)
    assert storage.samples() == []


def test_the_bank_keeps_no_graph_across_steps():
    method, _, _, _ = make_ael()
    for step in range(3):
        loss, _ = run_step(method, make_batch(seed=step), micro_step=step)
        loss.backward()  # a graph kept in the bank would be freed twice here
        assert not method.bank.values.requires_grad
        assert not any(v.requires_grad for v in method.class_vectors().values())
