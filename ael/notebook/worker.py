"""The background training process a :class:`~ael.notebook.launcher.TrainingLauncher` starts.

``python -m ael.notebook.worker <ael train arguments>`` runs ``ael train``. Once training runs,
a SIGINT or SIGTERM (the launcher's Stop) is handled by the trainer itself: it finishes the
iteration, writes a checkpoint, records the run as stopped (``TrainingStopped``) and ``ael train``
exits with :data:`EXIT_STOPPED`; ``--resume`` then continues exactly there. Before training starts
(imports, dataset validation) the handlers below raise :class:`StopRequested` instead.

The handlers are installed explicitly because a process started from a Jupyter kernel may
inherit an ignored SIGINT, which Python would keep.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from ael.engine.trainer import EXIT_STOPPED as TRAIN_EXIT_STOPPED

__all__ = ["EXIT_STOPPED", "StopRequested", "main"]

#: Exit status of a run stopped on request (sysexits' EX_TEMPFAIL: try again, i.e. resume).
EXIT_STOPPED = TRAIN_EXIT_STOPPED

logger = logging.getLogger(__name__)


class StopRequested(BaseException):  # a request, not an error: code catching Exception lets it through
    """Stop was requested (SIGINT / SIGTERM); the run can be resumed from its latest checkpoint."""


def _install_stop_handlers() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        # One request is enough: further signals must not interrupt the cleanup (marking the
        # run, flushing samples). The launcher escalates to SIGKILL if cleanup hangs.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise StopRequested(f"stopped on request ({signal.Signals(signum).name}); "
                            "resume continues from the latest checkpoint")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ael train`` with ``argv``; returns the exit status (:data:`EXIT_STOPPED` when stopped)."""
    from ael import cli

    _install_stop_handlers()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return cli.main(["train", *args])
    except StopRequested as stop:
        logger.warning("%s", stop)
        return EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(main())
