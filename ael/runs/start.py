"""Starting a run: a fresh run folder under a given or generated id, and its writer.

The trainer calls :func:`start_run` with explicit values (no config object: ``ael.runs`` knows
nothing of ``ael.config``)::

    with start_run(cfg.run.runs_dir, cfg.run.name, preset="cityscapes", class_names=names,
                   palette=palette, ignore_index=255, config=config_to_dict(cfg),
                   dataset="cityscapes", split="1/8 seed 0", total_steps=18000,
                   method="ael", vectors={"bank": "confidence bank Conf_c", ...},
                   group="cityscapes-1/8") as writer:
        writer.log_scalars(step, {"loss": 0.7, "lr": 0.01})
        ...

A resumed run is reopened with ``RunWriter(runs_dir, run_id, ..., resume=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ael.runs.schema import RunStoreError, unique_run_id
from ael.runs.writer import RunWriter

__all__ = ["start_run"]


def start_run(
    runs_dir: str | os.PathLike[str],
    name: str | None = None,
    *,
    preset: str = "run",
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]] | np.ndarray | None = None,
    ignore_index: int = 255,
    config: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    split: str | None = None,
    total_steps: int | None = None,
    heartbeat_s: float = 10.0,
    stalled_after_s: float = 120.0,
    media_queue: int = 32,
    extra: Mapping[str, Any] | None = None,
    method: str | None = None,
    vectors: Mapping[str, str] | None = None,
    group: str | None = None,
) -> RunWriter:
    """Create a new run folder and return its open :class:`RunWriter`.

    Args:
        runs_dir: the folder holding runs (created if missing).
        name: the run id; None generates ``YYYYmmdd-HHMMSS-<preset>`` (with ``-2``, ``-3``, ...
            for runs started within one second: :func:`ael.runs.schema.unique_run_id`).
        preset: the tag of a generated id (e.g. the preset or dataset name).
        class_names, palette, ignore_index, config, dataset, split, total_steps, heartbeat_s,
        stalled_after_s, media_queue, extra, method, vectors, group: as :class:`RunWriter`
            takes them (``config`` as plain data).

    Raises:
        RunStoreError: ``name`` is unsafe or already taken; ValueError / TypeError: a bad argument.
    """
    kwargs = dict(class_names=class_names, palette=palette, ignore_index=ignore_index, config=config,
                  dataset=dataset, split=split, total_steps=total_steps, heartbeat_s=heartbeat_s,
                  stalled_after_s=stalled_after_s, media_queue=media_queue, extra=extra, method=method,
                  vectors=vectors, group=group)
    if name is not None:
        return RunWriter(runs_dir, name, **kwargs)
    while True:
        run_id = unique_run_id(runs_dir, preset)
        try:
            return RunWriter(runs_dir, run_id, **kwargs)
        except RunStoreError:
            if not (Path(runs_dir) / run_id).exists():
                raise
            # another process took this id between the check and the mkdir: take the next one
