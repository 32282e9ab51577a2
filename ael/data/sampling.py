"""Which samples each rank draws, and with which augmentation seed: the sharded samplers.

Sampling follows detectron2's ``TrainingSampler``: the global stream is an endless sequence of
seeded permutations of the dataset (permutation ``e`` seeded by ``(seed, stream, e)``), and rank
``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of it, so within every epoch the ranks
see disjoint indices that together cover the dataset, and streams of different lengths
(labeled, unlabeled) each cycle on their own. Every draw carries its own augmentation seed,
derived from ``(seed, stream, global position)``: a batch's content depends neither on the number
of workers nor on prefetching, and a resumed stream (started ``start`` draws in) continues with
exactly the draws it would have made.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
import torch.utils.data

__all__ = [
    "AUGMENT",
    "FETCH",
    "LABELED_STREAM",
    "LOADER",
    "PERMUTE",
    "UNLABELED_STREAM",
    "InfiniteShardedSampler",
    "ShardedEvalSampler",
    "draw_seed",
    "seed_worker",
]

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
