"""Fixtures for the run-store tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from runs_helpers import CLASS_NAMES, PALETTE

from ael.runs import RunWriter


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def make_writer(runs_dir: Path):
    """Build a RunWriter on the test's runs folder with 4 classes; closes the ones left open."""
    made: list[RunWriter] = []

    def make(run_id: str = "run1", **kwargs) -> RunWriter:
        kwargs.setdefault("class_names", CLASS_NAMES)
        kwargs.setdefault("palette", PALETTE)
        writer = RunWriter(runs_dir, run_id, **kwargs)
        made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.finish()
