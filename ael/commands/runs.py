"""``ael runs``: print a table of the runs in a runs folder (status, method, progress, mIoU)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ael.runs import RunNotFoundError, list_runs
from ael.runs.listing import format_runs_table

__all__ = ["cli_main"]


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``ael runs [--runs DIR] [--stalled-after S]``: print a table of the runs in DIR.

    Returns:
        0 on success, 1 when the folder does not exist.
    """
    parser = argparse.ArgumentParser(prog="ael runs", description="List the runs in a runs folder.")
    parser.add_argument("--runs", default="runs", help="the runs folder (default: ./runs)")
    parser.add_argument("--stalled-after", type=float, default=None, metavar="S",
                        help="call a running run stalled after S seconds without heartbeat "
                             "(default: the value the run recorded)")
    args = parser.parse_args(argv)
    try:
        rows = list_runs(args.runs, stalled_after_s=args.stalled_after)
    except RunNotFoundError as err:
        sys.stderr.write(f"ael runs: {err}\n")
        return 1
    if not rows:
        sys.stdout.write(f"no runs in {args.runs}\n")
        return 0
    sys.stdout.write(format_runs_table(rows) + "\n")
    for r in rows:
        if r.error and r.status in ("crashed", "damaged", "unsupported"):
            sys.stdout.write(f"{r.run_id}: {r.error}\n")
    return 0
