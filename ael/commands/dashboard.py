"""``ael dashboard``: serve the live Streamlit dashboard (``app/dashboard.py``) over a runs folder.

Examples::

    ael dashboard --runs runs                 # http://127.0.0.1:8501
    ael dashboard --runs /data/runs --port 8600 --host 0.0.0.0

The server binds to 127.0.0.1 unless ``--host`` says otherwise; the command line it runs is
:func:`ael.dashboard.streamlit_command`'s.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ael.dashboard import streamlit_command
from ael.resources import app_entry

__all__ = ["cli_main"]

logger = logging.getLogger(__name__)


def cli_main(argv: Sequence[str]) -> int:
    """``ael dashboard [--runs DIR] [--host H] [--port N]``: serve the dashboard until interrupted.

    On POSIX the process becomes the Streamlit server (``exec``) and does not return.

    Returns:
        The Streamlit server's exit code; 2 for a missing app or streamlit.
    """
    parser = argparse.ArgumentParser(prog="ael dashboard", description="Serve the live AEL dashboard.")
    parser.add_argument("--runs", default="runs", help="the runs folder (default: ./runs)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    args = parser.parse_args(list(argv))
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in [1, 65535], got {args.port}")
    try:
        app = app_entry()
    except FileNotFoundError as err:
        sys.stderr.write(f"ael dashboard: {err}\n")
        return 2
    try:
        import streamlit  # noqa: F401
    except ImportError:
        sys.stderr.write("ael dashboard: streamlit is not installed (pip install 'ael[dashboard]')\n")
        return 2
    runs = Path(args.runs)
    if not runs.is_dir():
        logger.warning("runs folder %s does not exist yet; the dashboard lists runs once it does", runs)
    command = streamlit_command(runs, host=args.host, port=args.port, app=app)
    logger.info("serving the dashboard on http://%s:%d (runs: %s)", args.host, args.port, runs.resolve())
    if os.name == "posix":
        # Become the server: signals (Ctrl-C, a supervisor's SIGTERM) reach it directly, no orphan.
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(command[0], command)
    process = subprocess.Popen(command)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(cli_main(sys.argv[1:]))
