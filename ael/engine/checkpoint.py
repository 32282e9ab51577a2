"""Atomic, safely loadable checkpoints with fallback, and RNG state capture.

Layout of a checkpoint folder::

    checkpoints/
      ckpt_00000500.pt     one file per saved iteration
      ckpt_00001000.pt     the highest iteration is the latest

Writes are atomic: the state is written to a temp file in the same folder, fsynced, renamed
over the final name with ``os.replace`` and the folder fsynced, so a kill at any moment leaves
every previously completed checkpoint intact (at worst a stray ``.tmp`` file, removed by the next
save), and a file with a final name is always complete. There is no separate "latest" pointer
that could lag behind the files: the latest checkpoint is the highest iteration. After a save,
only the latest plus ``keep`` older checkpoints are kept, and checkpoints of higher iterations
(left by a run that was resumed from an earlier point) are removed.

Files are read with ``torch.load(weights_only=True)``: a checkpoint holds only tensors and
plain containers (dict, list, tuple, str, int, float, bool, None). :func:`save_checkpoint`
checks that before writing, and :func:`capture_rng_state` stores every random state as tensors
for that reason. Each file carries a ``metadata`` dict (schema version, ``num_classes``,
``backbone``, ...) that :func:`load_checkpoint` compares with what the caller expects, and
:func:`check_state_dict_compatible` compares parameter names and shapes, so resuming with
another model or class count fails with a message naming the file and the difference.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import random
import re
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ael.fs import TEMP_PREFIX, write_atomic

__all__ = [
    "SCHEMA_VERSION",
    "CheckpointError",
    "CheckpointMismatchError",
    "CorruptCheckpointError",
    "capture_rng_state",
    "check_state_dict_compatible",
    "checkpoint_metadata",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest_valid",
    "restore_rng_state",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

# 2: the method layer (per-rank method state, hook states); 1: ael 0.1's AEL-only trainer.
SCHEMA_VERSION = 2
_NAME = re.compile(r"^ckpt_(\d{8,})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the file."""


class CorruptCheckpointError(CheckpointError):
    """The file is truncated, corrupted or not a checkpoint at all."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint is valid but belongs to another model, class count or schema."""


# --------------------------------------------------------------------------------------------
# metadata and state checks
# --------------------------------------------------------------------------------------------


def checkpoint_metadata(*, num_classes: int, backbone: str, **extra: Any) -> dict[str, Any]:
    """The metadata dict stored with (and expected from) a checkpoint.

    Args:
        num_classes: Classes of the model's output.
        backbone: Backbone name, e.g. ``"resnet101"``.
        **extra: Further plain values to store (compared too when passed as expectations).
    """
    return {"schema_version": SCHEMA_VERSION, "num_classes": int(num_classes), "backbone": str(backbone),
            **extra}


_PLAIN = (str, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)


def _check_plain(value: Any, where: str) -> None:
    """Refuse anything ``torch.load(weights_only=True)`` would refuse, naming its key path."""
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, nn.Parameter):
            raise TypeError(f"checkpoint state {where} is a {type(value).__name__}; store a plain tensor")
        return
    if isinstance(value, _PLAIN):
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint state {where} has a key of type {type(key).__name__}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"checkpoint state {where} is a {type(value).__name__}; only tensors and plain containers "
        "(dict, list, tuple, str, int, float, bool, None) load with weights_only=True"
    )


def _compare_metadata(path: Path, found: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    version = found.get("schema_version")
    if version != expected.get("schema_version", SCHEMA_VERSION):
        hint = (" (written by ael 0.1, before the method layer: resume it with ael 0.1, or start a new run)"
                if version == 1 else "")
        raise CheckpointMismatchError(
            f"{path}: checkpoint schema version {version!r}, this ael reads version {SCHEMA_VERSION}{hint}"
        )
    for key, want in expected.items():
        if key == "schema_version":
            continue
        if key not in found:
            raise CheckpointMismatchError(f"{path}: checkpoint metadata has no {key!r} (expected {want!r})")
        if found[key] != want:
            raise CheckpointMismatchError(
                f"{path}: checkpoint was saved with {key}={found[key]!r}, this run has {key}={want!r}"
            )


def check_state_dict_compatible(state_dict: Mapping[str, torch.Tensor], model: nn.Module, *,
                                source: str | os.PathLike[str] = "<state dict>") -> None:
    """Raise unless ``state_dict`` has exactly the model's keys with the same shapes.

    Args:
        state_dict: Parameters and buffers from a checkpoint.
        model: The model about to receive them.
        source: The checkpoint file, named in the error.

    Raises:
        CheckpointMismatchError: Listing missing keys, unexpected keys and shape differences
            (the first few of each).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointMismatchError(f"{source}: checkpoint does not fit this model ({'; '.join(problems)})")


# --------------------------------------------------------------------------------------------
# atomic writing
# --------------------------------------------------------------------------------------------


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Checkpoint files of a folder, oldest first (by the iteration in their name)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def save_checkpoint(directory: str | os.PathLike[str], state: Mapping[str, Any], *, iteration: int,
                    metadata: Mapping[str, Any], keep: int = 1) -> Path:
    """Write ``state`` atomically as ``ckpt_<iteration>.pt``, then prune older and abandoned ones.

    Call on rank 0 only. The stored dict is ``state`` plus ``"iteration"`` and ``"metadata"``.

    Args:
        directory: Checkpoint folder (created if needed).
        state: Tensors and plain containers only (model/optimizer/scheduler state dicts, RNG
            states from :func:`capture_rng_state`, the config as a plain dict or YAML text).
        iteration: Completed iterations; orders the files.
        metadata: From :func:`checkpoint_metadata`.
        keep: Older checkpoints kept besides the latest. Checkpoints of higher iterations than
            ``iteration`` belong to an abandoned continuation (the run was resumed from an earlier
            checkpoint) and are removed.

    Returns:
        The written file.

    Raises:
        TypeError: ``state`` holds something ``weights_only`` loading would refuse (the key path
            is named).
    """
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    if "schema_version" not in metadata:
        raise ValueError("metadata has no 'schema_version': build it with checkpoint_metadata()")
    for reserved in ("iteration", "metadata"):
        if reserved in state:
            raise ValueError(f"state may not use the reserved key {reserved!r}")
    payload = {**state, "iteration": int(iteration), "metadata": dict(metadata)}
    _check_plain(payload, "")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f"{TEMP_PREFIX}*"):
        # Only rank 0 writes here, so a temp file is what a killed save left behind.
        with contextlib.suppress(OSError):
            stale.unlink()
            logger.warning("removed %s, left by an interrupted save", stale)
    path = directory / f"ckpt_{iteration:08d}.pt"
    write_atomic(path, lambda f: torch.save(payload, f))
    files = list_checkpoints(directory)
    position = files.index(path)
    for abandoned in files[position + 1:]:
        logger.warning("removing %s: saved after the iteration this run resumed from", abandoned)
        with contextlib.suppress(OSError):
            abandoned.unlink()
    for old in files[: max(0, position - keep)]:
        with contextlib.suppress(OSError):
            old.unlink()
    logger.info("saved checkpoint %s", path)
    return path


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike[str], *, map_location: torch.device | str = "cpu",
                    expected_metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check its metadata.

    Args:
        path: A file written by :func:`save_checkpoint`.
        map_location: Where tensors are loaded.
        expected_metadata: Values the checkpoint must match (from :func:`checkpoint_metadata`);
            None checks only that it is an ``ael`` checkpoint.

    Returns:
        The stored dict (``state`` plus ``"iteration"`` and ``"metadata"``).

    Raises:
        CheckpointError: Missing file, or content that is not tensors and plain containers.
        CorruptCheckpointError: Truncated, corrupted or not a checkpoint.
        CheckpointMismatchError: Metadata differs from ``expected_metadata``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) or "Weights only" in str(err):
            raise CheckpointError(
                f"{path}: holds objects other than tensors and plain containers; refusing to "
                "unpickle it (weights_only=True)"
            ) from None
        raise CorruptCheckpointError(f"{path}: corrupted checkpoint ({err})") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, KeyError) as err:
        raise CorruptCheckpointError(f"{path}: truncated or corrupted checkpoint ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict) or "iteration" not in data:
        raise CorruptCheckpointError(f"{path}: not an ael checkpoint (no 'metadata'/'iteration' entries)")
    _compare_metadata(path, data["metadata"], expected_metadata or {"schema_version": SCHEMA_VERSION})
    return data


def load_latest_valid(directory: str | os.PathLike[str], *, map_location: torch.device | str = "cpu",
                      expected_metadata: Mapping[str, Any] | None = None
                      ) -> tuple[Path, dict[str, Any]] | None:
    """Load the newest readable checkpoint of a folder, falling back past corrupted ones.

    Candidates are tried from the highest iteration down. A truncated or corrupted file is
    logged and skipped; a mismatched one (other model, class count or schema) raises, as no
    older file of the same run would fit either.

    Returns:
        ``(path, data)``, or None when the folder holds no checkpoint file.

    Raises:
        CorruptCheckpointError: Every checkpoint file is corrupted (all are named).
        CheckpointMismatchError: The newest readable checkpoint does not match.
    """
    directory = Path(directory)
    candidates = list(reversed(list_checkpoints(directory)))
    if not candidates:
        return None
    failures = []
    for path in candidates:
        try:
            data = load_checkpoint(path, map_location=map_location, expected_metadata=expected_metadata)
        except CorruptCheckpointError as err:
            logger.warning("skipping checkpoint: %s", err)
            failures.append(str(err))
            continue
        if failures:
            logger.warning("fell back to %s", path)
        return path, data
    raise CorruptCheckpointError(f"{directory}: no readable checkpoint: " + "; ".join(failures))


# --------------------------------------------------------------------------------------------
# random states
# --------------------------------------------------------------------------------------------


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every random state of the process as tensors and plain numbers (``weights_only``-safe).

    Covers Python ``random``, NumPy's global generator, torch's CPU generator, every CUDA
    device's default generator (when CUDA is initialised) and the named ``generators``.
    """
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"name": str(np_name), "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized()
        else [],
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    return state


def restore_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Put back the random states saved by :func:`capture_rng_state`.

    Args:
        state: The captured dict.
        generators: Generators to restore, by the names they were captured under.

    Raises:
        KeyError: A generator name absent from the saved state.
    """
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states:
        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            if count != len(cuda_states):
                logger.warning("restoring %d saved CUDA RNG states on %d devices", len(cuda_states), count)
            for i, s in enumerate(cuda_states[:count]):
                torch.cuda.set_rng_state(s.cpu(), i)
        else:
            logger.warning("the checkpoint has CUDA RNG states but CUDA is not available; not restored")
    saved = state.get("generators", {})
    for name, g in (generators or {}).items():
        if name not in saved:
            raise KeyError(f"no saved state for generator {name!r} (saved: {sorted(saved)})")
        g.set_state(saved[name].cpu())
