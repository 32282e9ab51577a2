"""What the trainer does around its loop, each with its own state: reporting to the run store,
evaluation, checkpoints, progress; and the graceful-stop signal."""

from ael.engine.hooks.base import Hook
from ael.engine.hooks.checkpointing import CheckpointHook
from ael.engine.hooks.evaluation import EvaluationHook
from ael.engine.hooks.progress import ProgressHook
from ael.engine.hooks.reporting import RunReporter, memory_mb
from ael.engine.hooks.stopping import StopSignal

__all__ = ["CheckpointHook", "EvaluationHook", "Hook", "ProgressHook", "RunReporter", "StopSignal", "memory_mb"]
