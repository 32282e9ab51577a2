"""The training streams and the validation loader of one rank, and their thin builders.

:class:`InfiniteLoader` batches an endless :class:`~ael.data.sampling.InfiniteShardedSampler`
stream and is resumable exactly (``state_dict`` / ``load_state_dict`` count the batches the
trainer actually took); :class:`TrainLoaders` pairs the labeled and unlabeled streams with a
by-index fetch for CutMix partners. The sets they batch are :mod:`ael.data.views`'.

Batches are dicts of tensors: ``image`` (B, 3, S, S) float32, ``label`` (B, S, S) int64,
``index`` (B,) int64 (position in the labeled or unlabeled set: the CutMix bank column), and
optionally ``image_strong`` (strong view), ``source_image`` / ``source_label`` /
``source_index`` (the Copy-Paste source of each labeled image).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.data

from ael.config import DataConfig
from ael.data.base import SegmentationDataset
from ael.data.info import IGNORE_INDEX
from ael.data.sampling import (
    FETCH,
    LABELED_STREAM,
    LOADER,
    UNLABELED_STREAM,
    InfiniteShardedSampler,
    ShardedEvalSampler,
    draw_seed,
    seed_worker,
)
from ael.data.transforms import JointTransform, Normalize, StrongPhotometric
from ael.data.views import LabeledTrainSet, UnlabeledTrainSet, ValSet, pad_collate

__all__ = [
    "InfiniteLoader",
    "TrainLoaders",
    "build_train_loaders",
    "build_val_loader",
]


def _label_fill(label_pad: str) -> int:
    if label_pad not in ("ignore", "zero"):
        raise ValueError(f"label_pad must be 'ignore' or 'zero', got {label_pad!r}")
    return IGNORE_INDEX if label_pad == "ignore" else 0


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
        paste_source_scale: Copy-Paste source scale range (``method.copy_paste.source_scale`` of AEL);
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
