"""A run folder given back to the trainer (``--resume``, ``ael eval``): its manifest and config."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ael.config import Config, apply_overrides, config_from_dict
from ael.runs.manifest import read_manifest
from ael.runs.schema import MANIFEST_FILE, RunStoreError

__all__ = ["RunFolderError", "load_run_config", "run_manifest"]


class RunFolderError(RunStoreError):
    """A folder given as a run (``--resume``, ``ael eval``) is not one; the message names it."""


def run_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a run folder that holds a resolved config.

    Raises:
        RunFolderError: no such folder, no manifest, or a manifest without a config.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: no such run folder")
    if not (run_dir / MANIFEST_FILE).is_file():
        raise RunFolderError(f"{run_dir}: not a run folder (no {MANIFEST_FILE})")
    try:
        manifest = read_manifest(run_dir, allow_unknown_schema=True)
    except RunStoreError as err:
        raise RunFolderError(f"{run_dir}: not a run folder ({err})") from None
    if not isinstance(manifest.get("config"), dict):
        raise RunFolderError(f"{run_dir / MANIFEST_FILE}: not an ael run manifest (no 'config' entry)")
    return manifest


def load_run_config(run_dir: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Config:
    """The resolved config saved with a run, with ``key=value`` overrides applied.

    Raises:
        RunFolderError: ``run_dir`` is not a run folder (names the folder or file).
        ConfigError: the saved config or an override is invalid (a run of ael 0.1, whose config has
            a ``core:`` section, is refused with a message saying so).
    """
    data = run_manifest(run_dir)["config"]
    source = str(Path(run_dir) / MANIFEST_FILE)
    if overrides:
        apply_overrides(data, overrides)
        source += " + command line"
    return config_from_dict(data, source)
