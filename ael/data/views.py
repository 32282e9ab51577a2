"""The training and validation views of a dataset: its samples as (augmented) tensors.

Training sets are indexed by ``(index, augmentation seed)`` pairs (what
:class:`~ael.data.sampling.InfiniteShardedSampler` yields), so a sample's augmentation is a pure
function of its draw. Samples are dicts of tensors: ``image`` (3, S, S) float32, ``label`` (S, S)
int64, ``index`` (position in the labeled or unlabeled set: the CutMix bank column), and
optionally ``image_strong`` (strong view), ``source_image`` / ``source_label`` / ``source_index``
(the Copy-Paste source of a labeled image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.utils.data

from ael.data.base import SegmentationDataset
from ael.data.info import IGNORE_INDEX
from ael.data.sampling import AUGMENT, LABELED_STREAM, UNLABELED_STREAM, draw_seed
from ael.data.transforms import (
    JointTransform,
    Normalize,
    StrongPhotometric,
    image_to_tensor,
    label_to_tensor,
)

__all__ = ["LabeledTrainSet", "UnlabeledTrainSet", "ValSet", "pad_collate"]


class LabeledTrainSet(torch.utils.data.Dataset):
    """Labeled training samples (weak view), each with an optional Copy-Paste source.

    Args:
        dataset: labeled images.
        transform: the weak pipeline.
        normalize: mean/std normalisation applied last.
        source_transform: the Copy-Paste source pipeline; None: no source is attached.
        allow_self_source: let an image be its own paste source (release behaviour).
    """

    def __init__(self, dataset: SegmentationDataset, transform: JointTransform, normalize: Normalize, *,
                 source_transform: JointTransform | None = None, allow_self_source: bool = False):
        self.dataset, self.transform, self.normalize = dataset, transform, normalize
        self.source_transform = source_transform
        self.allow_self_source = allow_self_source

    def __len__(self) -> int:
        return len(self.dataset)

    def _view(self, index: int, transform: JointTransform, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.dataset.load(index)
        if sample.label is None:
            raise ValueError(f"labeled sample {sample.id!r} has no label")
        image, label = transform(image_to_tensor(sample.image), label_to_tensor(sample.label), generator)
        assert label is not None
        return self.normalize(image), label

    def get(self, index: int, seed: int) -> dict[str, Any]:
        """Sample ``index`` transformed with augmentation seed ``seed``."""
        generator = torch.Generator().manual_seed(seed)
        image, label = self._view(index, self.transform, generator)
        out: dict[str, Any] = {"image": image, "label": label, "index": index}
        if self.source_transform is not None:
            n = len(self.dataset)
            if self.allow_self_source or n == 1:
                source = int(torch.randint(0, n, (), generator=generator))
            else:  # uniform over the other images
                source = int(torch.randint(0, n - 1, (), generator=generator))
                source += source >= index
            out["source_image"], out["source_label"] = self._view(source, self.source_transform, generator)
            out["source_index"] = source
        return out

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, draw_seed(0, LABELED_STREAM, AUGMENT, key))
        return self.get(index, seed)


class UnlabeledTrainSet(torch.utils.data.Dataset):
    """Unlabeled training samples: the weak view, the strong view when asked, the index.

    Args:
        dataset: unlabeled images (labels are passed on only if the dataset keeps them).
        transform: the weak pipeline (labels, if any, follow the same geometry).
        normalize: mean/std normalisation applied last.
        strong: the photometric strong view; None: no ``image_strong``.
    """

    def __init__(self, dataset: SegmentationDataset, transform: JointTransform, normalize: Normalize, *,
                 strong: StrongPhotometric | None = None):
        self.dataset, self.transform, self.normalize, self.strong = dataset, transform, normalize, strong

    def __len__(self) -> int:
        return len(self.dataset)

    def get(self, index: int, seed: int) -> dict[str, Any]:
        """Sample ``index`` transformed with augmentation seed ``seed`` (the CutMix partner fetch)."""
        generator = torch.Generator().manual_seed(seed)
        sample = self.dataset.load(index)
        label = label_to_tensor(sample.label) if sample.label is not None else None
        image, label = self.transform(image_to_tensor(sample.image), label, generator)
        out: dict[str, Any] = {"image": self.normalize(image), "index": index}
        if self.strong is not None:
            out["image_strong"] = self.normalize(self.strong(image, generator))
        if label is not None:
            out["label"] = label
        return out

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, draw_seed(0, UNLABELED_STREAM, AUGMENT, key))
        return self.get(index, seed)


class ValSet(torch.utils.data.Dataset):
    """Whole validation images, normalised, with int64 labels and their index."""

    def __init__(self, dataset: SegmentationDataset, normalize: Normalize):
        self.dataset, self.normalize = dataset, normalize

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset.load(index)
        if sample.label is None:
            raise ValueError(f"validation sample {sample.id!r} has no label")
        return {"image": self.normalize(image_to_tensor(sample.image)), "label": label_to_tensor(sample.label),
                "index": index}


def pad_collate(batch: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack validation samples of different sizes: images padded with 0, labels with the ignore index.

    Each sample also reports its original ``size`` (B, 2) as (H, W).
    """
    h = max(s["image"].shape[-2] for s in batch)
    w = max(s["image"].shape[-1] for s in batch)
    images = torch.zeros(len(batch), 3, h, w)
    labels = torch.full((len(batch), h, w), IGNORE_INDEX, dtype=torch.long)
    for i, s in enumerate(batch):
        sh, sw = s["image"].shape[-2:]
        images[i, :, :sh, :sw] = s["image"]
        labels[i, :sh, :sw] = s["label"]
    return {
        "image": images,
        "label": labels,
        "index": torch.tensor([s["index"] for s in batch], dtype=torch.long),
        "size": torch.tensor([list(s["image"].shape[-2:]) for s in batch], dtype=torch.long),
    }
