"""The `ael dashboard` launcher: the command it runs and its argument checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ael.commands.dashboard import cli_main
from ael.dashboard import APP_ENTRY, streamlit_command


def test_command_binds_localhost_and_watches_nothing(tmp_path):
    cmd = streamlit_command(tmp_path, port=8600)
    assert cmd[:4] == [sys.executable, "-m", "ael.dashboard", "run"]
    assert cmd[4] == str(APP_ENTRY) and APP_ENTRY.is_file()
    options = dict(zip(cmd[5:-3:2], cmd[6:-3:2]))
    assert options["--server.address"] == "127.0.0.1"
    assert options["--server.port"] == "8600"
    assert options["--server.fileWatcherType"] == "none"
    assert options["--server.headless"] == "true"
    assert cmd[-3:] == ["--", "--runs", str(tmp_path.resolve())]
    assert streamlit_command(tmp_path, host="0.0.0.0")[6] == "0.0.0.0"


def test_the_server_process_warms_up_before_serving():
    # In a process of its own: the warm-up freezes the garbage collector's view of what is loaded.
    code = ("import gc, sys; import plotly.io as pio; from ael.dashboard import warm_up; warm_up(); "
            "assert pio.templates.default == 'ael_white', pio.templates.default; "
            "assert gc.get_freeze_count() > 0; "
            "assert {'plotly.graph_objects', 'pandas', 'ael.runs', 'ael.viz.figures'} <= set(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_bad_port_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["--port", "70000"])
    assert exc.value.code == 2
    assert "--port" in capsys.readouterr().err
