"""The notebooks' logic called directly: the launcher drives a real background training process
(start, stop, resume), the live monitor's poll appends new points in place, the explorer's controls
change the distributions and the previews, and the analysis computes exact tables."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from nb_helpers import tiny_config, write_run
from PIL import Image

from ael.config import ConfigError, load_yaml
from ael.data.base import DatasetError
from ael.engine.trainer import RunFolderError
from ael.notebook import (
    ABLATIONS_DIR,
    EXIT_STOPPED,
    AugmentationExplorer,
    ExplorerUI,
    LauncherError,
    LauncherPanel,
    LiveMonitor,
    RunAnalysis,
    TrainingLauncher,
    explorer_dataset,
    figure_widget,
    method_label,
    notebook_config,
    sync_figure,
    tail_mask,
)
from ael.runs import open_run

NAMES5 = ["background", "road", "car", "pole", "rider"]


# ------------------------------------------------------------------------------------------ launcher


def test_launcher_starts_stops_and_resumes_a_real_training_process(runs_dir, tmp_path):
    cfg = tiny_config(runs_dir, iterations=400, overrides=("train.checkpoint_every=2", "train.eval.every=0",
                                                          "train.media_every=0"))
    launcher = TrainingLauncher(cfg, run_id="bg", log_dir=tmp_path / "logs")
    monitor = LiveMonitor(launcher.runs_dir, launcher.run_id)
    panel = LauncherPanel(launcher, monitor, interval_s=0.3, resume_overrides=["train.iterations=7"])
    panel.widget()
    assert launcher.state() == "not started" and not monitor.poll()
    assert "waiting for the run folder" in monitor.status_text()
    try:
        panel.start()
        assert launcher.running and monitor.watching
        with pytest.raises(LauncherError, match="already training"):
            launcher.start()
        with pytest.raises(LauncherError, match="stop it first"):
            launcher.resume()
        assert launcher.wait_for_run(timeout=120), launcher.log_tail(40)
        deadline = time.monotonic() + 120
        while not (runs_dir / "bg" / "checkpoints" / "ckpt_00000004.pt").exists():
            assert time.monotonic() < deadline and launcher.running, launcher.log_tail(40)
            time.sleep(0.2)
        panel.stop()
    finally:
        launcher.kill()
    assert launcher.returncode == EXIT_STOPPED and launcher.state() == "stopped", launcher.log_tail(40)
    assert "stopped (exit 75)" in panel.widget().children[1].value
    stopped = open_run(runs_dir, "bg")
    assert stopped.status() == "crashed" and stopped.error["type"] == "TrainingStopped"
    assert stopped.last_step is not None and stopped.last_step >= 2  # scalars are written one step late
    with pytest.raises(LauncherError, match="already exists"):
        launcher.start()

    try:
        panel.resume()  # iterations=7 from the panel's overrides: continues from the latest checkpoint
        assert launcher.wait(150) == 0, launcher.log_tail(40)
    finally:
        launcher.kill()
        monitor.stop()
    assert launcher.state() == "finished"
    run = open_run(runs_dir, "bg")
    assert run.status() == "finished"
    log = launcher.log_tail(200)
    assert "--resume" in log and "on SIGINT" in log
    resumed_at = int(re.search(r"resumed from \S+ckpt_(\d+)\.pt at iteration", log).group(1))
    assert resumed_at >= 4
    steps, _ = run.scalar("loss/total")
    # The stop checkpoints the iteration it stopped at: every step is in the store exactly once.
    assert list(steps) == list(range(7))
    monitor.poll()
    assert monitor.points("loss/total") == len(steps) and "bg: finished, step 7 / 7" in monitor.status_text()
    status, buttons = panel.widget().children[1], panel.widget().children[0].children
    assert status.value.startswith("<b>bg</b>: finished")  # refreshed by the monitor's poll
    assert [b.disabled for b in buttons] == [True, True, False, False]  # start, stop, resume, refresh


def test_launcher_refuses_what_it_cannot_do(runs_dir, tmp_path):
    cfg = tiny_config(runs_dir)
    launcher = TrainingLauncher(cfg, run_id="never", log_dir=tmp_path)
    assert launcher.stop() is None and launcher.wait(0) is None and launcher.state() == "not started"
    with pytest.raises(LauncherError, match="no run to resume yet"):
        launcher.resume()
    with pytest.raises(ValueError, match="invalid run id"):
        TrainingLauncher(cfg, run_id="../outside")
    assert Path(launcher.cfg.run.runs_dir).is_absolute() and launcher.cfg.run.name == "never"
    (runs_dir / "notarun").mkdir()
    with pytest.raises(RunFolderError, match=r"notarun: not a run folder \(no manifest.json\)"):
        TrainingLauncher.for_run(runs_dir / "notarun")


# ------------------------------------------------------------------------------------------ configs


def test_notebook_config_overlays_and_errors(tmp_path):
    cfg = notebook_config(runs_dir=tmp_path, iterations=9, image_size=48, overlays=["supervised"],
                          overrides=["train.lr=0.02"])
    assert (cfg.train.iterations, cfg.data.crop_size, cfg.data.synthetic.image_size, cfg.train.lr) == (9, 48, 48, 0.02)
    assert cfg.method.name == "supervised" and not hasattr(cfg.method, "copy_paste")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method:\n  cutmix: {adaptiv: true}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'method\.cutmix\.adaptiv'"):
        notebook_config(overlays=[bad])
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        notebook_config(overlays=["nope"])
    with pytest.raises(ConfigError, match=r"unknown key 'train\.iters'"):
        notebook_config(overrides=["train.iters=3"])
    with pytest.raises(ConfigError, match=r"data.crop_size \(80\) is larger than the synthetic images \(64\)"):
        notebook_config(image_size=64, crop_size=80)


@pytest.mark.parametrize(("overlay", "label"), [
    ("supervised", "supervised"), ("mean_teacher", "mean teacher"), ("cutmix_seg", "CutMix-Seg"),
    ("cutmix_seg_adaptive_copy_paste", "CutMix-Seg + adaptive Copy-Paste"),
    ("cutmix_seg_adaptive_cutmix", "CutMix-Seg + adaptive CutMix"),
    ("cutmix_seg_sampling", "CutMix-Seg + equalization sampling"),
    ("cutmix_seg_reweight", "CutMix-Seg + re-weighting"), ("ael", "AEL"),
])
def test_method_label_names_every_ablation(overlay, label):
    assert method_label(load_yaml(ABLATIONS_DIR / f"{overlay}.yaml")) == label


# ------------------------------------------------------------------------------------------ monitor


def test_monitor_poll_appends_new_points_in_place(runs_dir):
    monitor = LiveMonitor(runs_dir, "live")
    assert monitor.poll() is False and monitor.run is None
    freq = np.array([0.6, 0.3, 0.07, 0.02, 0.01])
    writer = write_run(runs_dir, "live", class_names=NAMES5, losses={s: 2.0 - 0.1 * s for s in range(5)},
                       banks={0: np.full(5, 0.5), 2: np.linspace(0.9, 0.1, 5)}, finish=False)
    writer.log_classes(2, {"freq_labeled": freq.astype(np.float32)})
    image = np.full((16, 20, 3), 120, np.uint8)
    gt = np.zeros((16, 20), np.uint8)
    gt[4:8] = 3
    writer.log_sample(2, "pseudo", images={"image": image}, labels={"gt": gt, "pseudo": np.zeros_like(gt)},
                      maps={"confidence": np.full((16, 20), 0.25, np.float32)})
    pasted = np.zeros((16, 20), np.float32)
    pasted[6:10, 8:12] = 1.0
    writer.log_sample(2, "copy_paste", images={"before": image, "image": image},
                      labels={"label_before": gt, "label": np.where(pasted > 0, 1, gt).astype(np.uint8)},
                      maps={"pasted": pasted})
    assert writer.flush_media(10)
    assert monitor.poll() is True
    losses, confidence = monitor.losses, monitor.confidence  # drawn now: the placeholders are replaced
    assert monitor.points("loss/total") == 5 and monitor.points("bank") == 2
    assert {t.name: len(t.x) for t in losses.data} == {"loss/sup": 5, "loss/total": 5}
    assert len(confidence.data) == 5 and list(confidence.data[4].y) == pytest.approx([0.5, 0.1])
    # the two rarest classes (pole, rider) are drawn thick
    assert [t.line.width for t in confidence.data] == [1.2, 1.2, 1.2, 2.5, 2.5]
    strip = monitor.samples["pseudo"]
    assert strip.startswith(b"\x89PNG") and monitor.sample_steps == {"pseudo": 2, "copy_paste": 2}
    # Each sample says which stream it is, as the dashboard does, and Copy-Paste outlines the pasted pixels.
    assert monitor.sample_captions["pseudo"].startswith("<b>labeled image: the teacher's pseudo-label")
    assert "at step 2: the teacher's prediction on a labeled image" in monitor.sample_captions["pseudo"]
    assert "Copy-Paste" in monitor.sample_captions["copy_paste"]
    pixels = np.asarray(Image.open(io.BytesIO(monitor.samples["copy_paste"])).convert("RGB"))
    assert (pixels == (255, 0, 255)).all(axis=2).sum() > 0
    assert monitor.poll() is False  # nothing new

    writer.log_scalars(5, {"loss/total": 1.4, "loss/sup": 0.7})
    writer.log_scalars(6, {"loss/total": 1.3, "loss/sup": 0.6})
    writer.log_classes(6, {"bank": np.linspace(0.8, 0.2, 5).astype(np.float32)})
    writer.log_eval(6, miou=0.25, iou=np.array([0.5, 0.25, 0.25, 0.0, 0.25]), model="teacher")
    assert monitor.poll() is True
    assert monitor.losses is losses and monitor.confidence is confidence  # same widgets, updated
    total = next(t for t in losses.data if t.name == "loss/total")
    assert list(total.x) == [0, 1, 2, 3, 4, 5, 6] and total.y[-1] == pytest.approx(1.3)
    assert list(confidence.data[0].x) == [0, 2, 6]
    assert [t.name for t in monitor.miou.data] == ["teacher mIoU (%)"] and list(monitor.miou.data[0].y) == [25.0]
    assert monitor.status_text() == "live: running, step 6 / 100, loss 1.3000, teacher mIoU 25.00 at step 6"
    writer.finish()


def test_monitor_thread_follows_a_run_until_it_ends(runs_dir):
    writer = write_run(runs_dir, "bgpoll", class_names=NAMES5, losses={0: 1.0}, finish=False)
    monitor = LiveMonitor(runs_dir, "bgpoll")
    box = monitor.widget()
    monitor.start(interval_s=0.05)
    writer.log_scalars(1, {"loss/total": 0.5, "loss/sup": 0.2})
    writer.finish()
    deadline = time.monotonic() + 20
    while monitor.watching and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not monitor.watching and monitor.points("loss/total") == 2  # stopped by itself at the end
    assert "bgpoll: finished" in box.children[0].value
    with pytest.raises(ValueError, match="interval_s"):
        monitor.start(0)


def test_sync_figure_updates_same_traces_and_replaces_others():
    import plotly.graph_objects as go

    widget = figure_widget(go.Figure(go.Scatter(x=[0], y=[1], name="a")))
    first = widget.data[0]
    sync_figure(widget, go.Figure(go.Scatter(x=[0, 1], y=[1, 2], name="a"), layout={"title": {"text": "t"}}))
    assert widget.data[0] is first and list(first.x) == [0, 1] and widget.layout.title.text == "t"
    sync_figure(widget, go.Figure([go.Bar(x=["c"], y=[3], name="b"), go.Scatter(x=[1], y=[1], name="d")]))
    assert [(t.type, t.name) for t in widget.data] == [("bar", "b"), ("scatter", "d")]


# ------------------------------------------------------------------------------------------ explorer


@pytest.fixture(scope="module")
def explorer_pool():
    dataset, note = explorer_dataset("synthetic", image_size=64)
    assert note == "synthetic long-tailed set, 8 classes, 64 px"
    explorer = AugmentationExplorer.from_dataset(dataset, num_images=8)
    return explorer.images, explorer.labels, explorer.class_names, explorer.palette


def make_explorer(pool, **kwargs) -> AugmentationExplorer:
    images, labels, names, palette = pool
    return AugmentationExplorer(images, labels, names, palette=palette, **kwargs)


def test_slider_changes_the_distributions_and_the_preview(explorer_pool):
    names = explorer_pool[2]
    low = np.full(8, 0.5)
    low[5] = 0.0
    # a seed whose draws differ between the two banks (the draws are a function of seed and bank)
    seed = next(s for s in range(50)
                if make_explorer(explorer_pool, seed=s).draw().cutmix.sampled_class
                != make_explorer(explorer_pool, seed=s, bank=low).draw().cutmix.sampled_class)
    ui = ExplorerUI(make_explorer(explorer_pool, seed=seed))
    explorer = ui.explorer
    rows = {t.name: np.array(t.y) for t in ui.figure.data}
    preview = ui.cutmix.value
    assert rows["CutMix: softmax(1 - Conf)"] == pytest.approx(np.full(8, 1 / 8))

    ui.sliders[5].value = 0.0
    assert explorer.bank[5] == 0.0 and explorer.bank_source == "by hand"
    after = {t.name: np.array(t.y) for t in ui.figure.data}
    e = np.exp(np.full(8, 0.5))
    e[5] = np.exp(1.0)
    assert after["CutMix: softmax(1 - Conf)"] == pytest.approx(e / e.sum(), rel=1e-5)
    sq = np.exp(np.sqrt(np.full(8, 0.5)))
    sq[5] = np.e
    assert after["Copy-Paste: softmax(sqrt(1 - Conf))"] == pytest.approx(sq / sq.sum(), rel=1e-5)
    assert after["equalization sampling ratio r_c"] == pytest.approx([0.5] * 5 + [1.0] + [0.5] * 2, rel=1e-5)
    assert ui.cutmix.value != preview
    reference = make_explorer(explorer_pool, seed=seed, bank=low).draw().cutmix
    got = explorer.draw().cutmix
    assert (got.sampled_class, got.image_a, got.image_b, got.box) == (reference.sampled_class, reference.image_a,
                                                                      reference.image_b, reference.box)
    assert np.array_equal(got.mixed, reference.mixed)
    assert f"CutMix: class {explorer.draw().cutmix.sampled_class}: {names[explorer.draw().cutmix.sampled_class]}" \
        in ui.text.value


def test_k_thresholds_and_seed_controls(explorer_pool):
    ui = ExplorerUI(make_explorer(explorer_pool))
    ui.k.value = 1
    assert len(ui.explorer.draw().copy_paste.chosen) == 1 and "(k=1)" in ui.text.value
    ui.area_thresh.value = 0.2  # no component of a synthetic class covers a fifth of the image
    assert ui.explorer.lab.area_thresh == 0.2 and not ui.explorer.draw().cutmix.from_component
    assert "random half-area fallback" in ui.text.value
    h, w = explorer_pool[1].shape[1:]
    top, left, bottom, right = ui.explorer.draw().cutmix.box
    assert abs((bottom - top) * (right - left) - h * w / 2) <= h + w  # half the image, up to rounding
    renders = ui.renders
    ui.redraw.click()
    assert ui.seed.value == 1 and ui.explorer.seed == 1 and ui.renders == renders + 1


def test_bank_of_a_run_at_a_step(explorer_pool, runs_dir):
    names = explorer_pool[2]
    write_run(runs_dir, "withbank", class_names=names, banks={0: np.full(8, 0.5), 10: np.linspace(0.9, 0.2, 8)})
    write_run(runs_dir, "five", class_names=NAMES5, banks={0: np.full(5, 0.5)})
    ui = ExplorerUI(make_explorer(explorer_pool), runs_dir=runs_dir)
    assert set(ui.run.options) == {"(by hand)", "withbank", "five"}
    ui.run.value = "withbank"
    assert ui.step.value == 10 and not ui.step.disabled
    assert [s.value for s in ui.sliders] == pytest.approx(np.linspace(0.9, 0.2, 8), abs=1e-6)
    assert ui.explorer.bank_source == "run withbank at step 10" and "run withbank at step 10" in ui.text.value
    ui.step.value = 7  # the latest row at or before step 7 is step 0's
    assert ui.explorer.bank == pytest.approx(np.full(8, 0.5)) and ui.sliders[0].value == 0.5
    ui.sliders[0].value = 0.1  # editing after loading: the hand-set value wins
    assert ui.explorer.bank[0] == pytest.approx(0.1) and ui.explorer.bank_source == "by hand"
    ui.run.value = "five"
    assert "has 5 classes; these images have 8" in ui.text.value


def test_explorer_bad_inputs_name_what_is_wrong(explorer_pool, tmp_path):
    explorer = make_explorer(explorer_pool)
    with pytest.raises(ValueError, match=r"bank needs 8 values \(one per class\), got shape \(3,\)"):
        explorer.set_bank([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"bank value of class 2 \(.+\) must be in \[0, 1\], got 1.5"):
        explorer.set_bank([0.5, 0.5, 1.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"k \(num_categories\) must be in \[1, 8\], got 0"):
        explorer.set_params(num_categories=0)
    with pytest.raises(ValueError, match=r"area_thresh2 must be in \[0, 1\], got -0.1"):
        explorer.set_params(area_thresh2=-0.1)
    with pytest.raises(ValueError, match="class index must be in"):
        explorer.set_class_confidence(8, 0.5)
    with pytest.raises(ValueError, match="dataset must be 'synthetic', 'camvid' or 'auto'"):
        explorer_dataset("voc")
    with pytest.raises(DatasetError, match="camvid dataset folder not found"):
        explorer_dataset("camvid", root=tmp_path / "missing")
    dataset, note = explorer_dataset("auto", root=tmp_path / "missing", num_classes=4, image_size=32)
    assert dataset.info.num_classes == 4 and note.endswith(f"(no CamVid at {tmp_path / 'missing'})")


# ------------------------------------------------------------------------------------------ analysis


def test_analysis_tables_figures_and_export(runs_dir, tmp_path):
    freq = np.array([0.55, 0.30, 0.10, 0.03, 0.02])  # tail: share < 0.25 / 5 = 0.05 -> pole, rider
    assert list(tail_mask(freq)) == [False, False, False, True, True]
    ael_cfg = load_yaml(ABLATIONS_DIR / "ael.yaml")
    sup_cfg = load_yaml(ABLATIONS_DIR / "supervised.yaml")
    write_run(runs_dir, "a-ael", class_names=NAMES5, config=ael_cfg, frequencies=freq,
              banks={0: np.full(5, 0.5), 4: np.linspace(0.9, 0.3, 5)},
              evals={2: np.array([0.5, 0.4, 0.3, 0.1, 0.1]), 4: np.array([0.9, 0.8, 0.6, 0.4, 0.2])})
    write_run(runs_dir, "b-sup", class_names=NAMES5, config=sup_cfg, frequencies=freq,
              evals={4: np.array([0.9, 0.7, 0.5, 0.1, np.nan])})
    write_run(runs_dir, "c-live", class_names=NAMES5, config=ael_cfg, frequencies=freq, finish=False)
    analysis = RunAnalysis(runs_dir)
    assert list(analysis.runs) == ["a-ael", "b-sup"]  # finished runs only, oldest first
    summary = analysis.summary_table()
    assert summary.loc["a-ael", "method"] == "AEL" and summary.loc["b-sup", "method"] == "supervised"
    assert summary.loc["a-ael", "mIoU"] == pytest.approx(58.0) and summary.loc["a-ael", "best mIoU"] == pytest.approx(58.0)
    assert summary.loc["a-ael", "head mIoU"] == pytest.approx(100 * 2.3 / 3)
    assert summary.loc["a-ael", "tail mIoU"] == pytest.approx(30.0)
    assert summary.loc["b-sup", "tail mIoU"] == pytest.approx(10.0)  # NaN (absent class) left out
    per_class = analysis.per_class_table()
    assert list(per_class.columns) == ["share (%)", "tail", "AEL (a-ael)", "supervised (b-sup)"]
    assert per_class.loc["pole", "AEL (a-ael)"] == pytest.approx(40.0) and bool(per_class.loc["rider", "tail"])
    assert analysis.runs_with_bank() == ["a-ael"]
    fig = analysis.iou_vs_frequency_figure()
    assert [t.name for t in fig.data] == ["same class", "AEL (a-ael)", "supervised (b-sup)", "tail boundary"]
    assert list(fig.data[3].x) == [0.05, 0.05]
    with pytest.raises(KeyError):
        analysis.bank_figure("b-sup")
    heat = analysis.bank_figure("a-ael", heatmap=True)
    assert np.asarray(heat.data[0].z).shape == (5, 2)
    written = analysis.export(tmp_path / "out")
    assert sorted(p.name for p in written) == ["bank_a-ael.html", "class_iou.html", "iou_vs_frequency.html",
                                               "miou.html", "per_class_iou.csv", "summary.csv"]
    assert (tmp_path / "out" / "plotly.min.js").is_file()
    lines = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert lines[0].startswith("run,method,status,step,mIoU") and lines[1].startswith("a-ael,AEL,finished,4,58.0000")
    assert json.loads(json.dumps(analysis.labels)) == {"a-ael": "AEL (a-ael)", "b-sup": "supervised (b-sup)"}


def test_analysis_without_runs_says_so(runs_dir):
    with pytest.raises(ValueError, match="no finished runs to analyse in"):
        RunAnalysis(runs_dir)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RunAnalysis(runs_dir / "missing")
