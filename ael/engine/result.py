"""What a training run ended with, and its per-class summary table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ael.runs.classes import tail_classes

__all__ = ["TrainResult"]


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


@dataclass
class TrainResult:
    """What a training run ended with (complete on rank 0; other ranks get the same numbers).

    Attributes:
        run_dir: the run folder (None on ranks other than 0).
        is_main: True on rank 0.
        iterations: iterations completed.
        class_names: the C class names.
        frequencies: ``(C,)`` labeled pixel share per class (for head / tail marking).
        method: the method's name.
        final: model name -> the last evaluation's metrics dict (``miou``, ``iou``, ``step``).
        best: model name -> the best evaluation's metrics dict over the run.
    """

    run_dir: Path | None
    is_main: bool
    iterations: int
    class_names: list[str]
    frequencies: list[float]
    method: str = "ael"
    final: dict[str, dict[str, Any]] = field(default_factory=dict)
    best: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        """A per-class IoU table (head / tail marked) with the final and best mIoU of each model."""
        lines = []
        tails = tail_classes(self.frequencies)
        models = list(self.final)
        if not models:
            lines.append("no evaluation was run")
        else:
            header = f"{'class':<16} {'share':>7}  {'':4}" + "".join(f"{m + ' IoU':>14}" for m in models)
            lines += [header, "-" * len(header)]
            for c, name in enumerate(self.class_names):
                row = f"{name[:16]:<16} {100 * self.frequencies[c]:6.2f}%  {'tail' if tails[c] else 'head':4}"
                for m in models:
                    v = self.final[m]["iou"][c]
                    row += f"{'-' if v is None or math.isnan(v) else f'{100 * v:.1f}':>14}"
                lines.append(row)
            lines.append("-" * len(header))
            for m in models:
                f, b = self.final[m], self.best.get(m, self.final[m])
                tail_iou = _finite([v for v, t in zip(f["iou"], tails) if t])
                head_iou = _finite([v for v, t in zip(f["iou"], tails) if not t])
                extra = ""
                if tail_iou and head_iou:
                    extra = (f"; head mean {100 * sum(head_iou) / len(head_iou):.1f}, "
                             f"tail mean {100 * sum(tail_iou) / len(tail_iou):.1f}")
                lines.append(f"{m}: final mIoU {100 * f['miou']:.2f} (step {f['step']}), "
                             f"best {100 * b['miou']:.2f} (step {b['step']}){extra}")
        if self.run_dir is not None:
            lines.append(f"run folder: {self.run_dir} (method: {self.method})")
        return "\n".join(lines)
