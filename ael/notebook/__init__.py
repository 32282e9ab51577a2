"""The logic behind the JupyterLab notebooks in ``notebooks/``, as plain classes tests call directly.

- :class:`TrainingLauncher` (+ :class:`LauncherPanel` buttons): ``ael train`` in a background
  process, stopped and resumed from the notebook.
- :class:`LiveMonitor`: losses, per-class confidence, mIoU and samples of a run, updated in place.
- :class:`AugmentationExplorer` (+ :class:`ExplorerUI` widgets): adaptive Copy-Paste and CutMix for
  an edited or logged confidence bank, on real dataset images.
- :class:`RunAnalysis`: tail-class analysis, AEL against baselines, bank trajectories, export.

Everything reads runs through :mod:`ael.runs` and draws with :mod:`ael.viz`, as the dashboard does.
"""

from ael.notebook.analysis import RunAnalysis, RunResult, default_runs, method_label, tail_mask
from ael.notebook.common import (
    ABLATIONS_DIR,
    REPO_ROOT,
    clock,
    figure_widget,
    notebook_config,
    notebook_logging,
    placeholder_figure,
    png_bytes,
    readable,
    sync_figure,
)
from ael.notebook.controls import LauncherPanel
from ael.notebook.explorer import CAMVID_ROOT, AugmentationExplorer, ExplorerDraw, explorer_dataset
from ael.notebook.explorer_ui import ExplorerUI
from ael.notebook.launcher import LauncherError, TrainingLauncher
from ael.notebook.monitor import LiveMonitor, sample_strip
from ael.notebook.worker import EXIT_STOPPED, StopRequested

__all__ = [
    "ABLATIONS_DIR",
    "CAMVID_ROOT",
    "EXIT_STOPPED",
    "REPO_ROOT",
    "AugmentationExplorer",
    "ExplorerDraw",
    "ExplorerUI",
    "LauncherError",
    "LauncherPanel",
    "LiveMonitor",
    "RunAnalysis",
    "RunResult",
    "StopRequested",
    "TrainingLauncher",
    "clock",
    "default_runs",
    "explorer_dataset",
    "figure_widget",
    "method_label",
    "notebook_config",
    "notebook_logging",
    "placeholder_figure",
    "png_bytes",
    "readable",
    "sample_strip",
    "sync_figure",
    "tail_mask",
]
