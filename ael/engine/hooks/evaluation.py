"""The evaluation hook: the teacher and/or student on the validation split, final and best kept.

Evaluations run every ``train.eval.every`` iterations and at the end, in the configured inference
mode; each is recorded in the run store (rank 0) and kept here, so a resumed run knows its past
evaluations, and the best of each model is picked in one place
(:func:`ael.runs.best_evaluation`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ael.config import EvalConfig
from ael.engine.evaluate import EvalResult, describe_mode, evaluate
from ael.engine.hooks.base import Hook
from ael.models import unwrap_model
from ael.runs import best_evaluation

if TYPE_CHECKING:
    from ael.engine.trainer import Trainer

__all__ = ["EvaluationHook"]

logger = logging.getLogger(__name__)


class EvaluationHook(Hook):
    """Evaluates at its cadence and at the end; keeps every evaluation's summary.

    Args:
        eval_cfg: the evaluation section.
        iterations: the run's planned iterations (the final evaluation).
        crop_size: the sliding window when ``eval_cfg.crop_size`` is unset (the training crop).
    """

    state_key = "evaluation"

    def __init__(self, eval_cfg: EvalConfig, *, iterations: int, crop_size: int) -> None:
        self.cfg = eval_cfg
        self.iterations = iterations
        self.crop_size = eval_cfg.crop_size or crop_size
        # The protocol in one line ("sliding 769 stride 2/3"), recorded with every evaluation.
        self.mode = describe_mode(eval_cfg.mode, crop_size=self.crop_size, stride_ratio=eval_cfg.stride_ratio,
                                  scales=eval_cfg.scales, flip=eval_cfg.flip)
        self.records: dict[str, list[dict[str, Any]]] = {}

    def after_step(self, trainer: Trainer) -> None:
        every = self.cfg.every
        if trainer.iteration == self.iterations or (every > 0 and trainer.iteration % every == 0):
            trainer.reporter.flush()
            self.run(trainer)

    def run(self, trainer: Trainer) -> dict[str, EvalResult]:
        """Evaluate the configured model(s) now; recorded on rank 0."""
        names = ["teacher", "student"] if self.cfg.model == "both" else [self.cfg.model]
        results = {}
        for name in names:
            model = trainer.teacher.module if name == "teacher" else unwrap_model(trainer.student)
            result = evaluate(model, trainer.val_loader, num_classes=trainer.num_classes,
                              ignore_index=trainer.info.ignore_index, device=trainer.device, mode=self.cfg.mode,
                              crop_size=self.crop_size, stride_ratio=self.cfg.stride_ratio, scales=self.cfg.scales,
                              flip=self.cfg.flip, amp_dtype=trainer.amp_dtype)
            if name == "teacher":
                trainer.teacher.module.train(trainer.teacher.train_mode)
            results[name] = result
            record = {"step": trainer.iteration, "miou": float(result.miou), "mode": self.mode,
                      "iou": [None if math.isnan(v) else float(v) for v in result.iou.tolist()]}
            self.records.setdefault(name, []).append(record)
            if trainer.writer is not None:
                trainer.writer.log_eval(trainer.iteration, miou=result.miou, iou=result.iou.numpy(),
                                        confusion=result.confusion.numpy(), model=name, mode=self.mode,
                                        extra={"pixel_acc": result.acc, "eval_seconds": result.seconds})
            logger.info("iteration %d: %s mIoU %.2f", trainer.iteration, name, 100 * result.miou)
        trainer.model.train()
        return results

    def final(self) -> dict[str, dict[str, Any]]:
        """Model name -> its last evaluation."""
        return {name: records[-1] for name, records in self.records.items()}

    def best(self) -> dict[str, dict[str, Any]]:
        """Model name -> its best evaluation."""
        return {name: best_evaluation(records) for name, records in self.records.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"records": json.dumps(self.records)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.records = json.loads(state.get("records", "{}"))
