"""How the live dashboard is served: the Streamlit app to run and the command line that runs it.

``ael dashboard`` (:mod:`ael.commands.dashboard`) runs this command line; a notebook or a script
can too. The server watches no files (``--server.fileWatcherType none``), never opens a browser
itself and binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ael.resources import CHECKOUT_ROOT, app_entry

__all__ = ["APP_ENTRY", "streamlit_command"]


def _default_app() -> Path:
    try:
        return app_entry()
    except FileNotFoundError:
        return CHECKOUT_ROOT / "app" / "dashboard.py"


#: The Streamlit entry point: the source checkout's ``app/dashboard.py``, else the installed copy.
APP_ENTRY = _default_app()


def streamlit_command(runs_dir: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8501,
                      app: Path | None = None) -> list[str]:
    """The ``python -m streamlit run ...`` command line that serves the dashboard over ``runs_dir``."""
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
