"""Each method's declared per-class vectors: state vectors from ``class_vectors``, frequencies via the storage."""

from __future__ import annotations

import pytest
import torch

from ael.config.methods import CutMixSegConfig, MeanTeacherConfig, SupervisedConfig
from ael.core import copy_paste_class_probs, cutmix_class_probs, equalization_ratio
from ael.methods import (
    AELMethod,
    CutMixSegMethod,
    MeanTeacherMethod,
    StepStorage,
    SupervisedMethod,
    method_names,
)

from .helpers import C, H, W, make_ael, make_batch, make_method, run_step

FREQUENCIES = {"freq_labeled", "freq_pseudo"}
DECLARED = {
    "supervised": {"freq_labeled"},
    "mean_teacher": {"freq_labeled", "freq_pseudo"},
    "cutmix_seg": {"freq_labeled", "freq_pseudo"},
    # + what equalization sampling kept and the re-weighting weights (counted over the steps).
    "ael": {"bank", "copy_paste_prob", "cutmix_prob", "sampling_ratio", "sampling_kept", "pseudo_weight",
            "freq_labeled", "freq_pseudo"},
}


def build(name: str):
    if name == "ael":
        return make_ael()[0]
    cfg = {"supervised": SupervisedConfig, "mean_teacher": MeanTeacherConfig, "cutmix_seg": CutMixSegConfig}[name]()
    return make_method(cfg, aux_weight=0.4)[0]


def test_the_built_in_ladder_is_registered_in_order():
    assert method_names()[:4] == ["supervised", "mean_teacher", "cutmix_seg", "ael"]
    classes = {"supervised": SupervisedMethod, "mean_teacher": MeanTeacherMethod, "cutmix_seg": CutMixSegMethod,
               "ael": AELMethod}
    for name, cls in classes.items():
        assert type(build(name)) is cls


@pytest.mark.parametrize("name", list(DECLARED))
def test_vectors_names_the_declared_vectors_and_class_vectors_returns_the_non_frequency_ones(name):
    method = build(name)
    vectors = method.vectors()
    assert set(vectors) == DECLARED[name]
    assert all(isinstance(text, str) and text for text in vectors.values())
    state = method.class_vectors()
    assert set(state) == set(vectors) - FREQUENCIES
    for value in state.values():
        assert isinstance(value, torch.Tensor) and value.shape == (C,) and value.is_floating_point()
    # The frequency vectors come through the storage, as (C,) counts.
    _, storage = run_step(method, make_batch())
    counts = storage.take_class_counts()
    assert set(counts) == set(vectors) & FREQUENCIES
    assert all(c.shape == (C,) for c in counts.values())
    assert storage.take_class_counts() == {}  # taken: a fresh start


def test_ael_class_vectors_are_what_its_strategies_read():
    method, _, _, _ = make_ael(copy_paste={"excluded_classes": ("car",)})
    conf = method.bank.values
    vectors = method.class_vectors()
    assert torch.equal(vectors["bank"], conf)
    assert torch.allclose(vectors["cutmix_prob"], torch.softmax(1 - conf, 0))
    expected_cp = torch.softmax((1 - conf).sqrt(), 0) * torch.tensor([1.0, 0.0, 1.0])
    assert torch.allclose(vectors["copy_paste_prob"], expected_cp / expected_cp.sum())
    assert torch.allclose(vectors["copy_paste_prob"],
                          copy_paste_class_probs(conf, excluded=torch.tensor([False, True, False])))
    assert torch.allclose(vectors["sampling_ratio"], equalization_ratio(conf))
    assert torch.allclose(vectors["sampling_ratio"], torch.tensor([0.125, 0.625, 1.0]))
    # They follow the bank.
    run_step(method, make_batch())
    assert torch.equal(method.class_vectors()["bank"], method.bank.values)
    assert torch.allclose(method.class_vectors()["cutmix_prob"], cutmix_class_probs(method.bank.values))


def test_ael_vectors_say_when_a_strategy_is_off():
    method, _, _, _ = make_ael(sampling={"enabled": False}, copy_paste={"adaptive": False},
                               cutmix={"adaptive": False})
    vectors = method.vectors()
    assert "sampling off" in vectors["sampling_ratio"]
    assert "not adaptive" in vectors["copy_paste_prob"] and "not adaptive" in vectors["cutmix_prob"]
    state = method.class_vectors()
    assert torch.equal(state["sampling_ratio"], torch.ones(C))
    assert torch.allclose(state["copy_paste_prob"], torch.full((C,), 1 / C))
    assert torch.allclose(state["cutmix_prob"], torch.full((C,), 1 / C))


def test_micro_steps_of_one_iteration_average_scalars_and_add_counts():
    method, _, _, _ = make_ael(copy_paste={"enabled": False})
    storage = StepStorage()
    storage.begin_iteration(wants_samples=False)
    batches = [make_batch(seed=1), make_batch(seed=2)]
    totals = [method.train_step(batch, iteration=0, micro_step=k, storage=storage).detach()
              for k, batch in enumerate(batches)]
    assert torch.allclose(storage.iteration_scalars()["loss/total"], (totals[0] + totals[1]) / 2)
    taken = storage.take_class_counts()
    labels = torch.cat([b.labeled["label"] for b in batches])
    assert torch.equal(taken["freq_labeled"], torch.bincount(labels[labels != 255], minlength=C))
    assert taken["freq_pseudo"].sum().item() == 2 * 2 * H * W
