"""``ael dashboard``: serve the live Streamlit dashboard (``app/dashboard.py``) over a runs folder.

Examples::

    ael dashboard --runs runs                 # http://127.0.0.1:8501
    ael dashboard --runs /data/runs --port 8600 --host 0.0.0.0

The server binds to 127.0.0.1 unless ``--host`` says otherwise, watches no files
(``--server.fileWatcherType none``) and never opens a browser itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ael.resources import CHECKOUT_ROOT, app_entry

__all__ = ["APP_ENTRY", "cli_main", "streamlit_command"]

logger = logging.getLogger(__name__)

def _default_app() -> Path:
    try:
        return app_entry()
    except FileNotFoundError:
        return CHECKOUT_ROOT / "app" / "dashboard.py"


#: The Streamlit entry point: the source checkout's ``app/dashboard.py``, else the installed copy.
APP_ENTRY = _default_app()


def streamlit_command(runs_dir: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8501,
                      app: Path | None = None) -> list[str]:
    """The ``python -m streamlit run ...`` command line that serves the dashboard."""
    app = APP_ENTRY if app is None else app
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--",
        "--runs", str(Path(runs_dir).resolve()),
    ]


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
