"""How the live dashboard is served: the Streamlit app to run and the command line that runs it.

``ael dashboard`` (:mod:`ael.commands.dashboard`) runs this command line; a notebook or a script
can too. The server watches no files (``--server.fileWatcherType none``), never opens a browser
itself and binds to 127.0.0.1 unless told otherwise.

The command runs this module (``python -m ael.dashboard run ...``), which loads what every page
draws with (plotly and its theme, pandas, :mod:`ael.runs`, :mod:`ael.viz`) before handing over to
Streamlit's own command line in the same process. The server starts about a second later, and the
first page a user opens no longer pays those imports (about 0.7 s of its server time on a 2-core
machine, measured in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

from ael.resources import CHECKOUT_ROOT, app_entry

__all__ = ["APP_ENTRY", "serve", "streamlit_command", "warm_up"]


def _default_app() -> Path:
    try:
        return app_entry()
    except FileNotFoundError:
        return CHECKOUT_ROOT / "app" / "dashboard.py"


#: The Streamlit entry point: the source checkout's ``app/dashboard.py``, else the installed copy.
APP_ENTRY = _default_app()


def streamlit_command(runs_dir: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8501,
                      app: Path | None = None) -> list[str]:
    """The ``python -m ael.dashboard run ...`` command line (Streamlit's ``streamlit run`` options,
    after :func:`warm_up`) that serves the dashboard over ``runs_dir``."""
    app = APP_ENTRY if app is None else app
    return [
        sys.executable, "-m", "ael.dashboard", "run", str(app),
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


def warm_up() -> None:
    """Import and initialise, once per server process, what the pages' first drawing needs.

    Without it the first page opened after the server starts imports plotly's figure and trace
    classes and builds its theme, imports pandas and the run reader, and Streamlit inspects the
    whole call stack once (``inspect.stack``, to decide whether to warn that the script was not
    started by ``streamlit run``: this process is). Each figure builder the pages use draws a
    tiny figure here, in the dashboard's theme (:func:`ael.viz.style.register_white_theme`),
    and is serialised as Streamlit does. What is loaded is then frozen out of the garbage
    collector's full passes (:func:`gc.freeze`).
    """
    import numpy as np
    import pandas  # noqa: F401 - imported for its side effect: the module cache
    import plotly.io as pio
    from streamlit import delta_generator  # first: importing streamlit sets its own default template

    import ael.runs  # noqa: F401
    from ael.viz.class_figures import class_bars_figure
    from ael.viz.figures import scalar_lines_figure
    from ael.viz.style import register_white_theme

    pio.templates.default = register_white_theme()
    steps, values, names = np.arange(3), np.full((3, 2), 0.5), ["a", "b"]
    # The plotly figures pages still draw (the lab's bars, the training curves); the confidence and
    # comparison pages draw on canvas.
    for figure in (class_bars_figure({"bank": values[0]}, names), scalar_lines_figure({"loss": (steps, values[:, 0])})):
        pio.to_json(figure, validate=False)
    if hasattr(delta_generator, "_use_warning_has_been_displayed"):
        delta_generator._use_warning_has_been_displayed = True
    # Streamlit collects garbage in full after every script run (every live refresh too); what
    # was loaded so far lives as long as the process, so leave it out of those collections.
    gc.collect()
    gc.freeze()


def serve(argv: list[str]) -> None:
    """Warm up (:func:`warm_up`), then run Streamlit's command line (``argv`` as after ``streamlit``)."""
    warm_up()
    from streamlit.web import cli

    sys.argv = ["streamlit", *argv]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    serve(sys.argv[1:])
