"""Confusion matrix, IoU and accuracy on hand-made cases."""

import math

import pytest
import torch

from ael.engine.metrics import (
    ConfusionMatrix,
    class_pixel_counts,
    confusion_matrix,
    metrics_from_confusion,
)

IGN = 255


def test_confusion_matrix_hand_made_with_ignore():
    target = torch.tensor([[0, 0, 1, 2],
                           [1, IGN, 2, 2]])
    pred = torch.tensor([[0, 1, 1, 2],
                         [2, 0, 2, 0]])
    cm = confusion_matrix(pred, target, num_classes=3, ignore_index=IGN)
    expected = torch.tensor([[1, 1, 0],   # gt 0: one right, one as 1
                             [0, 1, 1],   # gt 1: one right, one as 2
                             [1, 0, 2]])  # gt 2: two right, one as 0; the ignored pixel is gone
    assert cm.dtype == torch.int64
    assert torch.equal(cm, expected)


def test_out_of_range_labels_are_dropped_not_counted():
    target = torch.tensor([0, 1, 7, -1, IGN])
    pred = torch.tensor([0, 1, 1, 0, 1])
    cm = confusion_matrix(pred, target, num_classes=2, ignore_index=IGN)
    assert torch.equal(cm, torch.tensor([[1, 0], [0, 1]]))


def test_iou_absent_classes_are_nan_and_excluded():
    # 4 classes: class 2 is predicted but never in GT (IoU 0, counts), class 3 appears nowhere (NaN).
    target = torch.tensor([0, 0, 0, 1, 1, IGN])
    pred = torch.tensor([0, 0, 2, 1, 0, 3])
    m = metrics_from_confusion(confusion_matrix(pred, target, num_classes=4, ignore_index=IGN))
    # class 0: TP 2, FP 1 (gt 1), FN 1 (pred 2) -> 2/4; class 1: TP 1, FN 1 -> 1/2; class 2: 0/1.
    assert m.iou[:3].tolist() == [0.5, 0.5, 0.0]
    assert math.isnan(m.iou[3].item())
    assert m.miou == pytest.approx((0.5 + 0.5 + 0.0) / 3, abs=1e-15)
    assert m.acc == pytest.approx(3 / 5, abs=1e-15)
    assert m.class_acc[:2].tolist() == [2 / 3, 1 / 2]
    assert all(math.isnan(v) for v in m.class_acc[2:].tolist())
    assert m.class_frequency.tolist() == [3 / 5, 2 / 5, 0.0, 0.0]
    d = m.to_dict(["a", "b", "c", "d"])
    assert d["iou"] == [0.5, 0.5, 0.0, None]
    assert d["iou_by_class"]["d"] is None
    assert d["miou"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="class names"):
        m.to_dict(["a"])


def test_perfect_and_empty():
    labels = torch.tensor([[0, 1], [2, 2]])
    m = metrics_from_confusion(confusion_matrix(labels, labels, num_classes=3))
    assert m.miou == 1.0 and m.acc == 1.0
    empty = metrics_from_confusion(torch.zeros(3, 3, dtype=torch.int64))
    assert math.isnan(empty.miou) and math.isnan(empty.acc)
    assert empty.to_dict()["miou"] is None


def test_accumulator_matches_one_shot_and_guards_double_reduce(generator):
    pred = torch.randint(0, 5, (4, 8, 8), generator=generator)
    target = torch.randint(0, 6, (4, 8, 8), generator=generator)
    target[target == 5] = IGN
    acc = ConfusionMatrix(5, ignore_index=IGN)
    for i in range(4):
        acc.update(pred[i], target[i])
    assert torch.equal(acc.mat, confusion_matrix(pred, target, num_classes=5, ignore_index=IGN))
    assert int(acc.mat.sum()) == int((target != IGN).sum())
    acc.reduce_()  # one process: the counts stay
    assert acc.compute().confusion.sum() == (target != IGN).sum()
    with pytest.raises(RuntimeError, match="twice"):
        acc.reduce_()
    with pytest.raises(RuntimeError, match="reset"):
        acc.update(pred[0], target[0])
    acc.reset()
    assert int(acc.mat.sum()) == 0


def test_class_pixel_counts():
    labels = torch.tensor([[0, 0, 2], [IGN, 2, 9]])
    assert class_pixel_counts(labels, num_classes=3, ignore_index=IGN).tolist() == [2, 0, 2]


def test_shape_errors():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), num_classes=2)
    with pytest.raises(ValueError, match=r"\(C, C\)"):
        metrics_from_confusion(torch.zeros(2, 3))
