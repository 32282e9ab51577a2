"""Fixtures for the dashboard tests: run folders written by the real run writer, and the AppTest harness."""

from __future__ import annotations

from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app" / "dashboard.py"


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def app_factory(monkeypatch):
    """``make(runs_dir) -> AppTest`` of the whole dashboard, already run once on its first page."""
    from streamlit.testing.v1 import AppTest

    def make(runs: Path, *, run: bool = True) -> AppTest:
        import streamlit as st

        st.cache_data.clear()
        monkeypatch.setenv("AEL_RUNS_DIR", str(runs))
        at = AppTest.from_file(str(APP), default_timeout=60)
        return at.run() if run else at

    return make
