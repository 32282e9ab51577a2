"""``supervised``: OHEM cross-entropy on the labeled batch's two heads, and nothing else."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ael.config.methods import OhemConfig, SupervisedConfig
from ael.core import ohem_cross_entropy
from ael.methods import Collectives, MeanTeacherMethod, MethodContext, SupervisedMethod

from .helpers import CLASS_NAMES, C, make_batch, make_method, make_models, run_step


class WatchedDict(dict):
    """A dict that records every read of its content."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[str] = []

    def __getitem__(self, key):
        self.reads.append(f"[{key!r}]")
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.reads.append(f"get({key!r})")
        return super().get(key, default)

    def __contains__(self, key):
        self.reads.append(f"in {key!r}")
        return super().__contains__(key)

    def __iter__(self):
        self.reads.append("iter")
        return super().__iter__()

    def keys(self):
        self.reads.append("keys")
        return super().keys()

    def values(self):
        self.reads.append("values")
        return super().values()

    def items(self):
        self.reads.append("items")
        return super().items()


def test_supervised_touches_no_unlabeled_data_and_its_loss_is_ohem_plus_aux():
    method, student, teacher = make_method(SupervisedConfig(ohem=OhemConfig(thresh=0.7, min_kept=10)),
                                           aux_weight=0.4)
    assert isinstance(method, SupervisedMethod)
    with torch.no_grad():  # a student whose pixels have all sorts of GT-class probabilities
        student.conv.weight.copy_(torch.randn(C, 3, 1, 1, generator=torch.Generator().manual_seed(3)) * 2)
    teacher_calls = []
    teacher.module.register_forward_hook(lambda *a: teacher_calls.append(1))
    batch = make_batch()
    batch.labeled["image"] = batch.labeled["image"] + 0.5 * torch.rand(batch.labeled["image"].shape,
                                                                       generator=torch.Generator().manual_seed(4))
    batch.unlabeled = WatchedDict(batch.unlabeled)
    loss, storage = run_step(method, batch)

    assert batch.unlabeled.reads == [] and not teacher_calls
    images, labels = batch.labeled["image"], batch.labeled["label"]
    assert len(student.inputs) == 1 and torch.equal(student.inputs[0], images)
    logits = student.conv(images)
    sup = ohem_cross_entropy(logits, labels, thresh=0.7, min_kept=10, ignore_index=255)
    sup_aux = ohem_cross_entropy(0.5 * logits, labels, thresh=0.7, min_kept=10, ignore_index=255)
    assert not torch.allclose(sup, F.cross_entropy(logits, labels, ignore_index=255))  # OHEM drops pixels
    assert torch.allclose(loss, sup + 0.4 * sup_aux, atol=1e-6)
    scalars = storage.iteration_scalars()
    assert set(scalars) == {"loss/total", "loss/sup", "loss/sup_aux"}
    assert torch.allclose(scalars["loss/sup"], sup, atol=1e-6)
    assert torch.allclose(scalars["loss/sup_aux"], sup_aux, atol=1e-6)
    assert torch.allclose(scalars["loss/total"], loss.detach())
    counts = storage.take_class_counts()
    assert set(counts) == {"freq_labeled"}
    assert torch.equal(counts["freq_labeled"], torch.bincount(labels[labels != 255], minlength=C))
    # The loss has its graph: the trainer's backward reaches the student.
    loss.backward()
    assert student.conv.weight.grad is not None and student.conv.weight.grad.abs().sum() > 0


def test_supervised_without_aux_weight_ignores_the_aux_head():
    method, student, _ = make_method(SupervisedConfig(ohem=OhemConfig(enabled=False)), aux_weight=0.0)
    batch = make_batch()
    loss, storage = run_step(method, batch)
    expected = F.cross_entropy(student.conv(batch.labeled["image"]), batch.labeled["label"], ignore_index=255)
    assert torch.allclose(loss, expected)
    assert storage.iteration_scalars()["loss/sup_aux"].item() == 0.0


def test_supervised_needs_no_unlabeled_stream():
    assert not SupervisedMethod.loader_needs(SupervisedConfig()).unlabeled
    method, _, _ = make_method(SupervisedConfig(), aux_weight=0.4)
    batch = make_batch()
    batch.unlabeled = None
    loss, _ = run_step(method, batch)
    assert torch.isfinite(loss)


@pytest.mark.parametrize(("per_gpu", "expected"), [(False, 25), (True, 100)])
def test_min_kept_counts_the_global_batch_unless_per_gpu(per_gpu, expected):
    student, teacher = make_models()
    ctx = MethodContext(num_classes=C, ignore_index=255, class_names=CLASS_NAMES, device=torch.device("cpu"),
                        generator=torch.Generator(), student=student, teacher=teacher,
                        collectives=Collectives(world_size=4))
    method = SupervisedMethod(SupervisedConfig(ohem=OhemConfig(min_kept=100, min_kept_per_gpu=per_gpu)), ctx)
    assert method.min_kept == expected


def test_a_method_refuses_another_methods_section():
    student, teacher = make_models()
    ctx = MethodContext(num_classes=C, ignore_index=255, class_names=CLASS_NAMES, device=torch.device("cpu"),
                        generator=torch.Generator(), student=student, teacher=teacher)
    with pytest.raises(TypeError, match="MeanTeacherConfig, got SupervisedConfig"):
        MeanTeacherMethod(SupervisedConfig(), ctx)
