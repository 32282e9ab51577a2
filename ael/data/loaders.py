"""Infinite rank-sharded training streams, the validation loader, and their thin builders.

Sampling follows detectron2's ``TrainingSampler``: the global stream is an endless sequence of
seeded permutations of the dataset (permutation ``e`` seeded by ``(seed, stream, e)``), and rank
``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of it, so within every epoch the ranks
see disjoint indices that together cover the dataset, and streams of different lengths
(labeled, unlabeled) each cycle on their own. Every draw carries its own augmentation seed,
derived from ``(seed, stream, global position)``: a batch's content depends neither on the number
of workers nor on prefetching, and a resumed run (``state_dict`` / ``load_state_dict`` count the
batches the trainer actually took) continues with exactly the batches it would have seen.

Batches are dicts of tensors: ``image`` (B, 3, S, S) float32, ``label`` (B, S, S) int64,
``index`` (B,) int64 (position in the labeled or unlabeled set: the CutMix bank column), and
optionally ``image_strong`` (strong view), ``source_image`` / ``source_label`` /
``source_index`` (the Copy-Paste source of each labeled image).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.utils.data

from ael.config import DataConfig
from ael.data.base import SegmentationDataset
from ael.data.info import IGNORE_INDEX
from ael.data.transforms import (
    JointTransform,
    Normalize,
    StrongPhotometric,
    image_to_tensor,
    label_to_tensor,
)

__all__ = [
    "InfiniteLoader",
    "InfiniteShardedSampler",
    "LabeledTrainSet",
    "ShardedEvalSampler",
    "TrainLoaders",
    "UnlabeledTrainSet",
    "ValSet",
    "build_train_loaders",
    "build_val_loader",
    "draw_seed",
    "pad_collate",
    "seed_worker",
]

logger = logging.getLogger(__name__)

LABELED_STREAM = 1
UNLABELED_STREAM = 2
AUGMENT, PERMUTE, LOADER, FETCH = 0, 1, 2, 3  # purposes of derived seeds
_MASK63 = (1 << 63) - 1


def draw_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the integers ``parts``.

    Parts used here: ``(seed, stream, purpose, position)``, purpose one of ``AUGMENT``,
    ``PERMUTE``, ``LOADER``, ``FETCH``.
    """
    words = [int(p) % 2**64 for p in parts]  # negative user seeds wrap, as numpy requires >= 0
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] & _MASK63)


class InfiniteShardedSampler(torch.utils.data.Sampler):
    """Endless ``(index, augmentation seed)`` pairs for one rank.

    Args:
        size: dataset length.
        rank: this process's rank.
        world_size: number of processes.
        seed: run seed (the same on every rank).
        stream: distinguishes streams that share a seed (labeled, unlabeled).
        start: number of draws this rank has already consumed (resume point).
        shuffle: False keeps the dataset order in every epoch.
    """

    def __init__(self, size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0, stream: int = 0,
                 start: int = 0, shuffle: bool = True):
        if size <= 0:
            raise ValueError("InfiniteShardedSampler: the dataset is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"InfiniteShardedSampler: rank {rank} not in [0, {world_size})")
        self.size, self.rank, self.world_size = int(size), int(rank), int(world_size)
        self.seed, self.stream, self.start, self.shuffle = int(seed), int(stream), int(start), shuffle

    def permutation(self, epoch: int) -> torch.Tensor:
        """(size,) int64: the order of global epoch ``epoch``."""
        if not self.shuffle:
            return torch.arange(self.size)
        generator = torch.Generator().manual_seed(draw_seed(self.seed, self.stream, PERMUTE, epoch))
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start
        epoch, perm = -1, None
        while True:
            g = position * self.world_size + self.rank  # position in the global stream
            e, k = divmod(g, self.size)
            if e != epoch:
                epoch, perm = e, self.permutation(e).tolist()
            yield perm[k], draw_seed(self.seed, self.stream, AUGMENT, g)
            position += 1

    def __len__(self) -> int:  # DataLoader asks; the stream is endless
        return 2**62


class ShardedEvalSampler(torch.utils.data.Sampler):
    """Indices ``rank, rank + W, ...`` once, without padding (every image is evaluated once overall)."""

    def __init__(self, size: int, *, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, size, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one thread per worker, library RNGs seeded from torch's seed."""
    torch.set_num_threads(1)
    base = torch.initial_seed() % 2**32
    np.random.seed(base)
    random.seed(base)


def _label_fill(label_pad: str) -> int:
    if label_pad not in ("ignore", "zero"):
        raise ValueError(f"label_pad must be 'ignore' or 'zero', got {label_pad!r}")
    return IGNORE_INDEX if label_pad == "ignore" else 0


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


class InfiniteLoader:
    """An endless iterator of batches over an :class:`InfiniteShardedSampler`, resumable exactly.

    Args:
        dataset: a set indexed by ``(index, seed)`` pairs (:class:`LabeledTrainSet`, ...).
        batch_size: per-rank batch size.
        rank, world_size: this process's shard.
        seed: run seed (the same on every rank).
        stream: stream id (keeps labeled and unlabeled draws independent).
        num_workers: DataLoader worker processes (0: load in the main process).
        pin_memory: pin batches (only when CUDA is available).
        prefetch_factor: batches prefetched per worker.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, *, batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, stream: int = 0, num_workers: int = 0, pin_memory: bool = False,
                 prefetch_factor: int = 2):
        self.dataset = dataset
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.seed, self.stream = seed, stream
        self.num_workers, self.prefetch_factor = num_workers, prefetch_factor
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.consumed_batches = 0
        self._iterator: Iterator | None = None

    def _make_iterator(self) -> Iterator:
        sampler = InfiniteShardedSampler(len(self.dataset), rank=self.rank, world_size=self.world_size,
                                         seed=self.seed, stream=self.stream,
                                         start=self.consumed_batches * self.batch_size)
        extra: dict[str, Any] = {}
        if self.num_workers > 0:
            extra = {"persistent_workers": True, "prefetch_factor": self.prefetch_factor,
                     "worker_init_fn": seed_worker,
                     "generator": torch.Generator().manual_seed(draw_seed(self.seed, self.stream, LOADER))}
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler,
                                             num_workers=self.num_workers, pin_memory=self.pin_memory,
                                             drop_last=True, **extra)
        return iter(loader)

    def __iter__(self) -> InfiniteLoader:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._iterator is None:
            self._iterator = self._make_iterator()
        batch = next(self._iterator)
        self.consumed_batches += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        """Resume point: the batches the trainer took, and what they depend on."""
        return {"consumed_batches": self.consumed_batches, "batch_size": self.batch_size,
                "world_size": self.world_size, "seed": self.seed, "size": len(self.dataset)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after ``state['consumed_batches']`` batches.

        Raises:
            ValueError: when batch size, world size, seed or dataset size changed (the stream
                would not be the same one).
        """
        for key in ("batch_size", "world_size", "seed", "size"):
            current = self.state_dict()[key]
            if key in state and int(state[key]) != current:
                raise ValueError(f"cannot resume the data stream: {key} was {state[key]}, now {current}")
        self.close()
        self.consumed_batches = int(state["consumed_batches"])

    def close(self) -> None:
        """Stop the worker processes (a later ``next`` starts new ones)."""
        self._iterator = None


@dataclass
class TrainLoaders:
    """The labeled and unlabeled streams of one rank, and a by-index fetch for CutMix partners."""

    labeled: InfiniteLoader
    unlabeled: InfiniteLoader
    unlabeled_set: UnlabeledTrainSet
    seed: int = 0

    def fetch_unlabeled(self, indices: Sequence[int], step: int) -> dict[str, torch.Tensor]:
        """Unlabeled samples by index with the weak transform (the CutMix partners j of a step).

        Args:
            indices: positions in the unlabeled set.
            step: the training step (with the index, it seeds each sample's augmentation, so a
                resumed run fetches the same crops).

        Returns:
            A batch dict like the unlabeled stream's, (len(indices), ...) tensors.
        """
        samples = [self.unlabeled_set.get(int(i), draw_seed(self.seed, UNLABELED_STREAM, FETCH, step, int(i)))
                   for i in indices]
        return torch.utils.data.default_collate(samples)

    def state_dict(self) -> dict[str, dict[str, int]]:
        return {"labeled": self.labeled.state_dict(), "unlabeled": self.unlabeled.state_dict()}

    def load_state_dict(self, state: dict[str, dict[str, int]]) -> None:
        self.labeled.load_state_dict(state["labeled"])
        self.unlabeled.load_state_dict(state["unlabeled"])

    def close(self) -> None:
        self.labeled.close()
        self.unlabeled.close()


def build_train_loaders(data_cfg: DataConfig, labeled: SegmentationDataset, unlabeled: SegmentationDataset, *,
                        rank: int = 0, world_size: int = 1, seed: int = 0,
                        paste_source_scale: tuple[float, float] | None = None,
                        allow_self_source: bool = False) -> TrainLoaders:
    """The training streams of one rank (thin adapter reading ``data_cfg``).

    Args:
        data_cfg: crop, scale, flip, padding, batch sizes, workers, normalisation.
        labeled: labeled training images (``SplitDatasets.labeled``).
        unlabeled: unlabeled training images (``SplitDatasets.unlabeled``).
        rank, world_size: this process's shard.
        seed: run seed (the same on every rank).
        paste_source_scale: Copy-Paste source scale range (``core.copy_paste.source_scale``);
            None: Copy-Paste off, no source attached to labeled samples.
        allow_self_source: an image may be its own paste source (release behaviour).
    """
    label_fill = _label_fill(data_cfg.label_pad)
    weak = JointTransform(crop_size=data_cfg.crop_size, scale_range=data_cfg.scale_range,
                          scale_mode=data_cfg.scale_mode, label_fill=label_fill, flip=data_cfg.flip,
                          mean=data_cfg.mean)
    source = None
    if paste_source_scale is not None:
        source = JointTransform(crop_size=data_cfg.crop_size, scale_range=paste_source_scale,
                                scale_mode="uniform", label_fill=label_fill, flip=data_cfg.flip,
                                mean=data_cfg.mean)
    normalize = Normalize(data_cfg.mean, data_cfg.std)
    labeled_set = LabeledTrainSet(labeled, weak, normalize, source_transform=source,
                                  allow_self_source=allow_self_source)
    unlabeled_set = UnlabeledTrainSet(unlabeled, weak, normalize,
                                      strong=StrongPhotometric() if data_cfg.strong_view else None)
    common = {"rank": rank, "world_size": world_size, "seed": seed, "num_workers": data_cfg.num_workers,
              "pin_memory": data_cfg.pin_memory}
    return TrainLoaders(
        labeled=InfiniteLoader(labeled_set, batch_size=data_cfg.batch_size_labeled, stream=LABELED_STREAM,
                               **common),
        unlabeled=InfiniteLoader(unlabeled_set, batch_size=data_cfg.batch_size_unlabeled,
                                 stream=UNLABELED_STREAM, **common),
        unlabeled_set=unlabeled_set,
        seed=seed,
    )


def build_val_loader(data_cfg: DataConfig, val: SegmentationDataset, *, batch_size: int = 1, rank: int = 0,
                     world_size: int = 1) -> torch.utils.data.DataLoader:
    """Whole-image validation batches of this rank's shard (each image once over all ranks).

    Batches: ``image`` (B, 3, H, W) padded with 0, ``label`` (B, H, W) padded with the ignore index,
    ``index`` (B,), ``size`` (B, 2) original (H, W).
    """
    return torch.utils.data.DataLoader(
        ValSet(val, Normalize(data_cfg.mean, data_cfg.std)),
        batch_size=batch_size,
        sampler=ShardedEvalSampler(len(val), rank=rank, world_size=world_size),
        num_workers=data_cfg.num_workers,
        pin_memory=data_cfg.pin_memory and torch.cuda.is_available(),
        collate_fn=pad_collate,
        worker_init_fn=seed_worker if data_cfg.num_workers > 0 else None,
    )
