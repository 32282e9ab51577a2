"""``ael train``: train a model from presets, overrides, or resume a run folder in place.

Examples::

    ael train --config configs/synthetic.yaml
    ael train --config configs/cityscapes.yaml --config configs/release.yaml train.grad_accum=2
    ael train --config cityscapes --config ablations/cutmix_seg   # shipped presets by name
    ael train --resume runs/20260101-120000-synthetic
    torchrun --standalone --nproc-per-node=4 --no-python ael train --config configs/voc_classic.yaml

Several ``--config`` files are merged key by key, later files winning (so ``release.yaml`` and
``ablations/*.yaml`` are overlays on a dataset preset); ``key.sub=value`` overrides come last.
A ``--config`` that is not a file names a shipped preset (``configs/<name>.yaml`` of the checkout
or of the installed copy).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ael.config import Config, ConfigError, apply_overrides, config_from_dict, load_yaml
from ael.resources import presets_dir

__all__ = ["EXIT_STOPPED", "cli_main", "load_presets", "merge_dicts", "preset_name"]

#: Exit status of a run stopped gracefully (SIGTERM/SIGINT) with a checkpoint: resume it.
EXIT_STOPPED = 75

logger = logging.getLogger(__name__)


def merge_dicts(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """A deep merge of two nested mappings: ``overlay`` wins key by key, sections merge."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def resolve_preset(path: str | Path) -> Path:
    """A preset file: ``path`` itself when it is a file, else the shipped preset of that name.

    ``cityscapes`` and ``ablations/ael`` name ``configs/cityscapes.yaml`` and
    ``configs/ablations/ael.yaml`` of the checkout or of the installed copy
    (:func:`ael.resources.presets_dir`), so an installed ``ael`` needs no checkout.
    """
    given = Path(path)
    if given.is_file() or given.is_absolute():
        return given
    shipped = presets_dir() / (given if given.suffix else given.with_suffix(".yaml"))
    return shipped if shipped.is_file() else given


def load_presets(paths: Sequence[str | Path], overrides: Sequence[str] = ()) -> Config:
    """Load preset files (merged in order, later ones winning), then apply dotted overrides.

    Each file is validated on its own first, so an error names the file it is in. A name that is
    not a file is looked up among the shipped presets (:func:`resolve_preset`).

    Raises:
        ConfigError: naming the file (or "command line") and the key at fault.
    """
    merged: dict[str, Any] = {}
    paths = [resolve_preset(p) for p in paths]
    for path in paths:
        data = load_yaml(path)
        config_from_dict(data, str(path))  # errors name this file
        merged = merge_dicts(merged, data)
    source = " + ".join(str(p) for p in paths) or "<defaults>"
    if overrides:
        apply_overrides(merged, overrides)
        source += " + command line"
    return config_from_dict(merged, source)


def preset_name(paths: Sequence[str | Path]) -> str:
    """A short run-id tag from the preset file names (``cityscapes-release``)."""
    if not paths:
        return "synthetic"
    return "-".join(Path(p).stem for p in paths)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ael train",
        description="Train AEL (or an ablation) from presets; one entry point for CPU, one GPU and torchrun.",
    )
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="a preset YAML, or a shipped preset's name (cityscapes, ablations/ael); repeat "
                             "to overlay (later files win). Default: the built-in defaults (synthetic set)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR in place, from its latest valid checkpoint "
                             "(its saved config is used; overrides still apply)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines instead)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="config overrides, e.g. train.iterations=100 core.cutmix.adaptive=false")
    return parser


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``ael train``; returns the exit code."""
    args = _parser().parse_args(argv)
    from ael.engine.trainer import Trainer, TrainingStopped, load_run_config

    if args.resume:
        if args.config:
            raise ConfigError("--resume uses the config saved in the run folder; give overrides, not --config")
        cfg = load_run_config(args.resume, args.overrides)
        trainer = Trainer(cfg, resume_dir=args.resume, progress=not args.no_progress)
    else:
        cfg = load_presets(args.config, args.overrides)
        trainer = Trainer(cfg, preset=preset_name(args.config), progress=not args.no_progress)
    try:
        with trainer.stop_on_signals():
            result = trainer.fit()
    except TrainingStopped as stopped:
        print(f"ael train: {stopped}", file=sys.stderr)
        return EXIT_STOPPED
    if result.is_main:
        print(result.summary())
    return 0
