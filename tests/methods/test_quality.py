"""Pseudo-label quality and AEL's sampling diagnostics: exact counts, and never a change to training."""

from __future__ import annotations

import math

import pytest
import torch

from ael.methods.quality import ClassShares, PseudoLabelQuality, class_histogram


def test_pseudo_label_quality_counts_precision_recall_iou_by_hand():
    quality = PseudoLabelQuality(3, 255, torch.device("cpu"))
    truth = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 1]]])
    pseudo = torch.tensor([[[0, 1, 1, 1], [2, 0, 2, 0]]])
    quality.update(pseudo, truth)
    out = quality.take()
    # class 0: predicted at 3 valid pixels (one right), 2 true pixels -> tp 1, fp 2, fn 1
    # class 1: predicted at 3 (two right), 3 true -> tp 2, fp 1, fn 1
    # class 2: predicted at 1 valid pixel (right; the ignored pixel does not count), 2 true -> tp 1, fp 0, fn 1
    assert out["pseudo_precision"].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert out["pseudo_recall"].tolist() == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert out["pseudo_iou"].tolist() == pytest.approx([1 / 4, 2 / 4, 1 / 2])
    again = quality.take()  # reset after each take: a class without pixels reads NaN
    assert all(math.isnan(v) for v in again["pseudo_iou"].tolist())


def test_class_shares_are_per_class_means_and_nan_without_pixels():
    shares = ClassShares(3, 255, torch.device("cpu"))
    labels = torch.tensor([[0, 0, 1, 255]])
    shares.update(labels, torch.tensor([[1.0, 0.0, 0.5, 1.0]]))
    shares.update(labels, torch.tensor([[1.0, 1.0, 0.5, 1.0]]))
    kept = shares.take().tolist()
    assert kept[:2] == pytest.approx([0.75, 0.5]) and math.isnan(kept[2])
    assert class_histogram(labels, 3, 255).tolist() == [2.0, 1.0, 0.0]
