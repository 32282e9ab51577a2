"""The progress hook: a tqdm bar on rank 0 (or a log line every 50 steps without one)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ael.engine.hooks.base import Hook

if TYPE_CHECKING:
    from ael.engine.trainer import Trainer

__all__ = ["ProgressHook"]

logger = logging.getLogger(__name__)


class ProgressHook(Hook):
    """Shows the loop's progress and the latest written scalars.

    Args:
        bar: draw a tqdm bar (else log a line every 50 steps).
        enabled: False on ranks other than 0.
    """

    def __init__(self, *, bar: bool, enabled: bool) -> None:
        self.use_bar = bar
        self.enabled = enabled
        self.bar: Any = None

    def before_train(self, trainer: Trainer) -> None:
        if self.enabled and self.use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=trainer.cfg.train.iterations, initial=trainer.iteration, desc="train",
                            dynamic_ncols=True, unit="it", smoothing=0.1)

    def after_step(self, trainer: Trainer) -> None:
        if not self.enabled:
            return
        for step, values in trainer.reporter.recent:
            self._show(step, values)
        if self.bar is not None:
            self.bar.update(1)

    def _show(self, step: int, values: dict[str, float]) -> None:
        loss, rate = values.get("loss/total", float("nan")), values.get("throughput_img_s", 0.0)
        if self.bar is not None:
            unsup = values.get("loss/unsup_mixed", 0.0) + values.get("loss/unsup_labeled", 0.0)
            self.bar.set_postfix_str(f"loss {loss:.3f} sup {values.get('loss/sup', float('nan')):.3f} "
                                     f"unsup {unsup:.3f} {rate:.1f} img/s", refresh=False)
        elif step % 50 == 0:
            logger.info("step %d: loss %.4f, %.1f img/s", step, loss, rate)

    def after_train(self, trainer: Trainer) -> None:
        if self.enabled:
            for step, values in trainer.reporter.recent:
                self._show(step, values)
        self.close()

    def close(self) -> None:
        """Close the bar (also on an error)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
