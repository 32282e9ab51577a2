"""The ipywidgets of the augmentation explorer (notebook 02): controls in, figure and previews redrawn.

:class:`ExplorerUI` binds widgets to an :class:`~ael.notebook.explorer.AugmentationExplorer`:
sliders per class, k, the thresholds, the seed, and a run / step picker whose bank it loads;
every change redraws the distributions figure, the two previews and the description in place.
All the logic is the explorer's; tests drive this class by setting widget values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ael.notebook.common import figure_widget, png_bytes, sync_figure
from ael.notebook.explorer import AugmentationExplorer
from ael.runs import Run, RunStoreError, list_runs, open_run

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["ExplorerUI"]


class ExplorerUI:
    """ipywidgets for an :class:`AugmentationExplorer`; every control change redraws in place.

    Args:
        explorer: the logic.
        runs_dir: a runs folder whose runs' banks can be loaded (None: hand-edited only).

    Attributes:
        sliders: one ``FloatSlider`` per class (the bank).
        k, area_thresh, area_thresh2, seed: the parameter controls.
        run, step: the run picker and its step slider.
        figure: the distributions ``FigureWidget``; copy_paste, cutmix: ``Image`` previews;
        text: the description.
    """

    def __init__(self, explorer: AugmentationExplorer, *, runs_dir: str | os.PathLike[str] | None = None) -> None:
        import ipywidgets as w

        self.explorer = explorer
        self.runs_dir = Path(runs_dir) if runs_dir is not None else None
        self._run: Run | None = None
        self._quiet = False
        self.renders = 0
        names = explorer.class_names
        # Labels read in full ("initial": as wide as the text), never cut to "area_thre…".
        full = {"description_width": "initial"}
        wide = w.Layout(width="auto", min_width="340px")
        self.sliders = [
            w.FloatSlider(value=float(explorer.bank[c]), min=0.0, max=1.0, step=0.01, description=f"{c}: {name}",
                          continuous_update=False, layout=w.Layout(width="auto"), style=full)
            for c, name in enumerate(names)
        ]
        self.k = w.IntSlider(value=explorer.num_categories, min=1, max=explorer.num_classes, description="k",
                             continuous_update=False, style=full, layout=wide)
        self.area_thresh = w.FloatSlider(value=explorer.area_thresh, min=0.0, max=0.2, step=0.001, readout_format=".3f",
                                         description="area_thresh", continuous_update=False, style=full, layout=wide)
        self.area_thresh2 = w.FloatSlider(value=explorer.area_thresh2, min=0.0, max=0.2, step=0.001,
                                          readout_format=".3f", description="area_thresh2", continuous_update=False,
                                          style=full, layout=wide)
        self.seed = w.IntText(value=explorer.seed, description="seed", style=full, layout=w.Layout(width="160px"))
        self.redraw = w.Button(description="Re-draw", icon="random")
        run_ids = [r.run_id for r in list_runs(self.runs_dir)] if self.runs_dir is not None and self.runs_dir.is_dir() else []
        self.run = w.Dropdown(options=["(by hand)", *run_ids], value="(by hand)", description="bank of run",
                              style=full, layout=w.Layout(width="auto", min_width="420px"))
        self.step = w.IntSlider(value=0, min=0, max=0, description="at step", continuous_update=False, disabled=True,
                                style=full, layout=wide)
        self.figure = figure_widget()
        self.copy_paste = w.Image(format="png", layout=w.Layout(width="auto", max_width="100%"))
        self.cutmix = w.Image(format="png", layout=w.Layout(width="auto", max_width="100%"))
        self.text = w.HTML()
        for c, slider in enumerate(self.sliders):
            slider.observe(lambda change, c=c: self._on_slider(c, change["new"]), names="value")
        for control in (self.k, self.area_thresh, self.area_thresh2, self.seed):
            control.observe(lambda _change: self._on_params(), names="value")
        self.redraw.on_click(lambda _b: setattr(self.seed, "value", self.seed.value + 1))
        self.run.observe(lambda change: self._on_run(change["new"]), names="value")
        self.step.observe(lambda _change: self._load_run_bank(), names="value")
        # As many columns as fit, each wide enough for a class name, its track and its readout.
        grid = w.GridBox(self.sliders, layout=w.Layout(grid_template_columns="repeat(auto-fill, minmax(300px, 1fr))",
                                                      grid_gap="2px 12px"))
        self.box = w.VBox([
            w.HTML("<b>Confidence bank</b> (low = under-performing class: drawn more often)"),
            grid,
            w.HBox([self.run, self.step], layout=w.Layout(flex_flow="row wrap")),
            w.HBox([self.k, self.seed, self.redraw], layout=w.Layout(flex_flow="row wrap")),
            w.HBox([self.area_thresh, self.area_thresh2], layout=w.Layout(flex_flow="row wrap")),
            self.figure,
            w.HTML("<b>Adaptive Copy-Paste</b>"), self.copy_paste,
            w.HTML("<b>Adaptive CutMix</b>"), self.cutmix,
            self.text,
        ])
        self.render()

    # -------------------------------------------------------------------------- events

    def _on_slider(self, cls: int, value: float) -> None:
        if self._quiet:
            return
        self.explorer.set_class_confidence(cls, value)
        self.render()

    def _on_params(self) -> None:
        self.explorer.set_params(num_categories=self.k.value, area_thresh=self.area_thresh.value,
                                 area_thresh2=self.area_thresh2.value, seed=self.seed.value)
        self.render()

    def _on_run(self, run_id: str) -> None:
        if run_id == "(by hand)" or self.runs_dir is None:
            self._run = None
            self.step.disabled = True
            self.explorer.bank_source = "by hand"
            self.render()
            return
        try:
            self._run = open_run(self.runs_dir, run_id)
        except RunStoreError as err:
            self.text.value = f"<span style='color:#b00'>{err}</span>"
            return
        steps = self._run.class_vectors("bank").steps if "bank" in self._run.class_vector_names() else np.array([0])
        self._quiet = True
        self.step.max = max(int(steps[-1]), 1)
        self.step.value = int(steps[-1])
        self._quiet = False
        self.step.disabled = False
        self._load_run_bank()

    def _load_run_bank(self) -> None:
        if self._quiet or self._run is None:
            return
        self._run.poll()
        try:
            self.explorer.use_run_bank(self._run, self.step.value)
        except ValueError as err:
            self.text.value = f"<span style='color:#b00'>{err}</span>"
            return
        self._quiet = True
        for slider, value in zip(self.sliders, self.explorer.bank):
            slider.value = float(value)
        self._quiet = False
        self.render()

    def render(self) -> None:
        """Redraw the figure, the previews and the description from the explorer's state."""
        draw = self.explorer.draw()
        sync_figure(self.figure, self.explorer.distribution_figure(draw))
        self.copy_paste.value = png_bytes(self.explorer.copy_paste_strip(draw))
        self.cutmix.value = png_bytes(self.explorer.cutmix_strip(draw))
        self.text.value = self.explorer.describe(draw)
        self.renders += 1

    def widget(self) -> ipywidgets.VBox:
        """The whole explorer."""
        return self.box
