"""One entry point for a CPU run, one GPU and torchrun, plus collective helpers.

The environment decides: when torchrun (or anything else) has set ``RANK`` and ``WORLD_SIZE``,
:func:`setup_distributed` joins the process group (``env://``, backend ``nccl`` on CUDA and
``gloo`` on CPU) and binds the process to ``cuda:LOCAL_RANK``; otherwise the run is a single
process and every helper below is a no-op (rank 0 of a world of 1). Nothing here calls
``.cuda()``: the device comes from :class:`DistContext`.

Examples::

    # one process (CPU or one GPU)
    ael train --config configs/synthetic.yaml

    # one node, 4 GPUs
    torchrun --standalone --nproc-per-node=4 --no-python ael train --config configs/voc.yaml

SLURM, 2 nodes x 8 GPUs (one torchrun per node; torchrun starts one process per GPU and sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; the first node of the allocation hosts the rendezvous)::

    #!/bin/bash
    #SBATCH --job-name=ael
    #SBATCH --nodes=2
    #SBATCH --ntasks-per-node=1
    #SBATCH --gpus-per-node=8
    #SBATCH --cpus-per-task=64
    #SBATCH --time=24:00:00

    export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    export MASTER_PORT=29500
    export OMP_NUM_THREADS=8

    srun torchrun \\
        --nnodes="$SLURM_NNODES" --nproc-per-node=8 \\
        --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d \\
        --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" \\
        --no-python ael train --config configs/cityscapes.yaml

Collectives are meant for the few places that need them (bank statistics, the evaluation
confusion matrix, checkpoint barriers): :func:`all_reduce_sum_` reduces a list of tensors in
one call per dtype/device by flattening them into one buffer.
"""

from __future__ import annotations

import datetime
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "DistributedSetupError",
    "all_gather_cat",
    "all_reduce_sum_",
    "barrier",
    "broadcast_",
    "cleanup",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "rank_seed",
    "resolve_device",
    "seed_everything",
    "setup_distributed",
]

logger = logging.getLogger(__name__)

DeviceSpec = Literal["auto", "cpu", "cuda"]


class DistributedSetupError(RuntimeError):
    """The environment or the requested device does not allow the run to start."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the run.

    Attributes:
        rank: Global rank (0 in a single process).
        world_size: Number of processes (1 in a single process).
        local_rank: Rank on this node; selects ``cuda:local_rank``.
        device: The device this process computes on.
        is_distributed: True when a process group is initialised.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_distributed: bool

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes runs and checkpoints."""
        return self.rank == 0


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise DistributedSetupError(f"environment variable {name}={raw!r} is not an integer") from None


def resolve_device(device: DeviceSpec | str = "auto", local_rank: int = 0) -> torch.device:
    """The device a process should use.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
        local_rank: Picks ``cuda:local_rank`` on a multi-GPU node.

    Raises:
        DistributedSetupError: ``"cuda"`` without a usable GPU, or a local rank past the GPU count.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise DistributedSetupError(f"device={device!r} is not one of 'auto', 'cpu', 'cuda'")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DistributedSetupError("device='cuda' was requested but torch.cuda.is_available() is False")
    count = torch.cuda.device_count()
    if not 0 <= local_rank < count:
        raise DistributedSetupError(
            f"LOCAL_RANK={local_rank} but this node has {count} visible CUDA device(s)"
        )
    return torch.device("cuda", local_rank)


def setup_distributed(device: DeviceSpec | str = "auto", *, backend: str | None = None,
                      timeout_s: float = 1800.0) -> DistContext:
    """Start (or join) the run's processes as the environment says.

    Without ``RANK`` in the environment this is a single process and nothing is initialised.
    With it (torchrun), ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` must be set too, and
    the default process group is initialised with ``env://``. A process group that is already
    initialised is reused.

    Args:
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; CUDA processes use ``cuda:LOCAL_RANK``.
        backend: Overrides the backend (default ``nccl`` on CUDA, ``gloo`` on CPU).
        timeout_s: Collective timeout.

    Returns:
        The process's :class:`DistContext`.

    Raises:
        DistributedSetupError: Missing or inconsistent environment variables, or no GPU for
            ``device="cuda"``; the message names the variable.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK")
        local_rank = rank if local_rank is None else local_rank
        ctx_device = resolve_device(device, local_rank)
        if ctx_device.type == "cuda":
            torch.cuda.set_device(ctx_device)
        return DistContext(rank, world, local_rank, ctx_device, True)

    rank = _env_int("RANK")
    if rank is None:
        ctx_device = resolve_device(device, 0)
        if ctx_device.type == "cuda":
            torch.cuda.set_device(ctx_device)
        logger.info("single process on %s", ctx_device)
        return DistContext(0, 1, 0, ctx_device, False)

    world = _env_int("WORLD_SIZE")
    if world is None:
        raise DistributedSetupError("RANK is set but WORLD_SIZE is not (start the run with torchrun)")
    if world < 1 or not 0 <= rank < world:
        raise DistributedSetupError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise DistributedSetupError(f"RANK is set but {name} is not (start the run with torchrun)")
    if not dist.is_available():
        raise DistributedSetupError("RANK is set but this torch build has no torch.distributed")
    local_rank = _env_int("LOCAL_RANK")
    local_rank = rank if local_rank is None else local_rank
    ctx_device = resolve_device(device, local_rank)
    if ctx_device.type == "cuda":
        torch.cuda.set_device(ctx_device)
    backend = backend or ("nccl" if ctx_device.type == "cuda" else "gloo")
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    logger.info("rank %d/%d (local %d) on %s, backend %s", rank, world, local_rank, ctx_device, backend)
    return DistContext(rank, world, local_rank, ctx_device, True)


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank; 0 without a process group."""
    return dist.get_rank() if _initialized() else 0


def get_world_size() -> int:
    """Number of processes; 1 without a process group."""
    return dist.get_world_size() if _initialized() else 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single process)."""
    return get_rank() == 0


def all_reduce_sum_(tensors: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor | Sequence[torch.Tensor]:
    """Sum tensors over all ranks, in place; one collective per (device, dtype) group.

    Several tensors are flattened into one buffer, reduced once and copied back, so the cost is
    one round trip however many statistics are reduced. A no-op in a single process.

    Args:
        tensors: One tensor or a sequence of tensors (any shapes; bool is refused).

    Returns:
        ``tensors``, now holding the sums.
    """
    items = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
    for i, t in enumerate(items):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"all_reduce_sum_: item {i} is a {type(t).__name__}, not a tensor")
        if t.dtype == torch.bool:
            raise TypeError(f"all_reduce_sum_: item {i} is a bool tensor; cast it to an integer dtype")
    if get_world_size() == 1 or not items:
        return tensors
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in items:
        groups.setdefault((t.device, t.dtype), []).append(t)
    for group in groups.values():
        if len(group) == 1 and group[0].is_contiguous():
            dist.all_reduce(group[0], op=dist.ReduceOp.SUM)
            continue
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        for t, chunk in zip(group, flat.split([t.numel() for t in group])):
            t.copy_(chunk.view(t.shape))
    return tensors


def all_gather_cat(tensor: torch.Tensor, *, same_size: bool = False) -> torch.Tensor:
    """Concatenate a tensor from every rank along dim 0, in rank order.

    Ranks may hold different lengths along dim 0 (the other dims must agree); the lengths are
    exchanged first, which waits for the host. Pass ``same_size=True`` when every rank is known
    to hold the same shape to skip that exchange. Returns ``tensor`` itself in a single process.
    The result carries no autograd history.

    Args:
        tensor: ``(N_rank, ...)``.
        same_size: Every rank holds the same shape.

    Returns:
        ``(sum of N_rank, ...)``.
    """
    world = get_world_size()
    if world == 1:
        return tensor
    if tensor.dim() == 0:
        tensor = tensor.reshape(1)
    tensor = tensor.contiguous()
    if same_size:
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor)
        return torch.cat(parts)
    length = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    lengths = [torch.empty_like(length) for _ in range(world)]
    dist.all_gather(lengths, length)
    sizes = [int(n.item()) for n in lengths]
    longest = max(sizes)
    padded = tensor
    if tensor.shape[0] < longest:
        pad = tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([tensor, pad])
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s copy, in place; a no-op alone."""
    if get_world_size() > 1:
        dist.broadcast(tensor, src=src)
    return tensor


def barrier() -> None:
    """Wait for every rank; a no-op in a single process."""
    if not _initialized() or get_world_size() == 1:
        return
    if dist.get_backend() == "nccl":
        # Naming the device stops NCCL from guessing it (and warning) on the first barrier.
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (safe to call when none was started)."""
    if _initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int | None = None) -> int:
    """The seed of one rank: ``seed + rank``, so ranks draw different augmentations.

    Rank 0 keeps the configured seed, so a single-process run and rank 0 of a distributed run
    start from the same random state.
    """
    rank = get_rank() if rank is None else rank
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    return int(seed) + int(rank)


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
