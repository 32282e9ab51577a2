"""``ael train``: train a model from presets, overrides, or resume a run folder in place.

Examples::

    ael train --config configs/synthetic.yaml
    ael train --config configs/cityscapes.yaml --config configs/release.yaml train.grad_accum=2
    ael train --config cityscapes --config ablations/cutmix_seg   # shipped presets by name
    ael train --resume runs/20260101-120000-synthetic
    torchrun --standalone --nproc-per-node=4 --no-python ael train --config configs/voc_classic.yaml

Several ``--config`` files are merged key by key, later files winning (so ``release.yaml`` and
``ablations/*.yaml`` are overlays on a dataset preset, :func:`ael.config.load_presets`);
``key.sub=value`` overrides come last.
A ``--config`` that is not a file names a shipped preset (``configs/<name>.yaml`` of the checkout
or of the installed copy).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ael.config import ConfigError, load_presets, preset_name

__all__ = ["cli_main"]


logger = logging.getLogger(__name__)


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
                        help="config overrides, e.g. train.iterations=100 method.cutmix.adaptive=false")
    return parser


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``ael train``; returns the exit code."""
    args = _parser().parse_args(argv)
    from ael.engine.trainer import EXIT_STOPPED, Trainer, TrainingStopped, load_run_config

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
