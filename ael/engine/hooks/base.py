"""The hook interface: what the trainer calls around its loop (after detectron2's ``HookBase``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ael.engine.trainer import Trainer

__all__ = ["Hook"]


class Hook:
    """Something done around the training loop, with its own checkpointed state.

    The trainer calls :meth:`before_train` once (after a resume has restored every state),
    :meth:`after_step` after each iteration (``trainer.iteration`` is then the number of
    iterations done, ``trainer.stopping`` whether the loop ends here on a stop request), and
    :meth:`after_train` once when the loop ends, normally or on a stop (not on an error).
    """

    #: key of this hook's state in a checkpoint (None: nothing to keep)
    state_key: str | None = None

    def before_train(self, trainer: Trainer) -> None:
        """Before the first iteration."""
        return None

    def after_step(self, trainer: Trainer) -> None:
        """After each iteration."""
        return None

    def after_train(self, trainer: Trainer) -> None:
        """After the last iteration (or a stop)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of this hook (plain data)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        return None
