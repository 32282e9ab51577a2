"""The demo's config: AEL on the built-in synthetic set, sized for two CPU cores (``ael demo``, notebooks)."""

from __future__ import annotations

from typing import Any

from ael.config.loader import config_from_dict
from ael.config.sections import Config

__all__ = ["demo_config"]


def demo_config(*, runs_dir: str = "runs", iterations: int = 480, seed: int = 0, num_val: int = 32) -> Config:
    """The demo's config: AEL on the synthetic default, sized for two CPU cores.

    ``num_val`` validation images: the notebooks' quick views use 32; ``ael demo`` uses 256, so that
    its side-by-side comparison is not dominated by the noise of a small validation set.
    """
    evals = max(1, iterations // 3)
    data: dict[str, Any] = {
        # Trained from scratch: ramp lambda_u up over the first third so the teacher knows
        # something before the student follows it.
        # Bank momentum 0.99 (paper: 0.999): a 0.999 EMA moves only a third of the way from its
        # initial value in the demo's few hundred steps: the bank would show its start, not the model.
        "method": {"copy_paste": {"num_categories": 3}, "ohem": {"min_kept": 2000},
                 "unsup": {"rampup_iters": iterations // 3}, "bank": {"momentum": 0.99}},
        "model": {"backbone": "resnet18", "output_stride": 16, "aspp_channels": 64, "low_level_channels": 32},
        "data": {
            "dataset": "synthetic",
            "synthetic": {"num_classes": 8, "image_size": 64, "num_labeled": 32, "num_unlabeled": 256,
                          "num_val": num_val},
            "crop_size": 64, "batch_size_labeled": 4, "batch_size_unlabeled": 4, "num_workers": 0,
        },
        "train": {
            "iterations": iterations, "lr": 0.01, "seed": seed, "device": "cpu",
            "eval": {"every": evals, "model": "both", "batch_size": 8},
            "classes_every": 5, "media_every": 50, "checkpoint_every": 0, "keep_checkpoints": 0,
        },
        "run": {"runs_dir": runs_dir},
    }
    return config_from_dict(data, "<ael demo>")
