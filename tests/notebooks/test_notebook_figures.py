"""What the notebooks draw reads as meant: an empty chart says why, real data replaces the message
and its hidden axes entirely, and the explorer's labels are never cut."""

from __future__ import annotations

import numpy as np
import pytest

from ael.notebook import AugmentationExplorer, ExplorerUI, figure_widget, placeholder_figure, sync_figure
from ael.viz.figures import scalar_lines_figure


def test_placeholder_says_why_and_data_replaces_it():
    widget = figure_widget(placeholder_figure("no evaluation yet", title="mIoU over evaluations"))
    assert [a.text for a in widget.layout.annotations] == ["no evaluation yet"] and not widget.data
    assert widget.layout.xaxis.visible is False and widget.layout.yaxis.visible is False
    fig = scalar_lines_figure({"teacher mIoU (%)": (np.array([100, 200, 300]), np.array([10.0, 20.0, 30.0]))},
                              title="mIoU over evaluations", markers=True)
    sync_figure(widget, fig)
    assert not widget.layout.annotations  # the message is gone, not drawn over the data
    assert widget.layout.xaxis.visible is True and widget.layout.yaxis.visible is True
    assert list(widget.data[0].x) == [100, 200, 300] and list(widget.data[0].y) == [10.0, 20.0, 30.0]


def test_explorer_labels_are_whole():
    rng = np.random.default_rng(0)
    names = ["background", "a-class-with-a-long-name", "pole", "traffic light"]
    images = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, (3, 32, 32), dtype=np.uint8)
    ui = ExplorerUI(AugmentationExplorer(images, labels, names))
    assert [s.description for s in ui.sliders] == [f"{c}: {n}" for c, n in enumerate(names)]
    controls = [*ui.sliders, ui.k, ui.area_thresh, ui.area_thresh2, ui.seed, ui.run, ui.step]
    assert {c.style.description_width for c in controls} == {"initial"}
    assert (ui.area_thresh.description, ui.area_thresh2.description) == ("area_thresh", "area_thresh2")


def test_monitor_smoothing_slider_draws_the_ema_over_the_faint_raw_losses(runs_dir):
    from nb_helpers import write_run

    from ael.notebook import LiveMonitor

    write_run(runs_dir, "smooth", class_names=["a", "b"], losses={0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0})
    monitor = LiveMonitor(runs_dir, "smooth", smoothing=0.0)
    box = monitor.widget()
    monitor.poll()
    assert [(t.name, list(t.y)) for t in monitor.losses.data] == [("loss/sup", [0.5, 1.0, 1.5, 2.0]),
                                                                   ("loss/total", [1.0, 2.0, 3.0, 4.0])]
    monitor._ui["smoothing"].value = 0.5  # what dragging the slider does
    total = [t for t in monitor.losses.data if t.name == "loss/total"]
    raw, ema = sorted(total, key=lambda t: t.showlegend is False, reverse=True)
    assert list(raw.y) == [1.0, 2.0, 3.0, 4.0] and raw.opacity < 1
    # The debiased EMA with weight 0.5: e_t = (0.5 e_(t-1) + 0.5 x_t) / (1 - 0.5^(t+1)).
    assert list(ema.y) == pytest.approx([1.0, 5 / 3, 17 / 7, 49 / 15])
    assert box.children[2].children[0] is monitor.losses  # the view shows the redrawn chart
