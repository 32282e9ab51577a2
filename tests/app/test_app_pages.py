"""Every dashboard page under Streamlit's AppTest, against runs written by the real run writer."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from canvas_support import bar_rows, canvas_elements, canvas_views
from runs_factory import append_step, damage_run, make_unknown_schema, write_run, write_trainer_run

from ael.runs import list_runs, open_run

PAGES = ("views/training.py", "views/confidence.py", "views/pseudo_labels.py", "views/lab.py")


def _problems(at) -> list[str]:
    return [e.value for e in at.exception] + [e.value for e in at.error]


def _charts(at) -> int:
    """Plotly charts and canvas charts (the confidence page's)."""
    return len(at.get("plotly_chart")) + len(canvas_views(at))


def _images(at) -> int:
    return len(at.get("image"))


def _array(value) -> np.ndarray:
    """A plotly spec array: a list, or plotly's ``{"dtype", "bdata"}`` base64 encoding."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
    return np.asarray(value)


def _traces(at, first_name: str) -> list[dict]:
    """The traces (name, x, y) of the page's plotly chart whose first trace's name starts with ``first_name``."""
    for element in at.get("plotly_chart"):
        data = json.loads(element.proto.spec)["data"]
        if data and str(data[0].get("name", "")).startswith(first_name):
            return [{"name": t.get("name"), "x": _array(t.get("x", [])), "y": _array(t.get("y", []))} for t in data]
    raise AssertionError(f"no chart whose first trace starts with {first_name!r}")


def _named(traces: list[dict], name: str) -> dict:
    return next(t for t in traces if t["name"] == name)


def _row(series, step: int) -> np.ndarray:
    """The reader's row logged exactly at ``step``."""
    return series.values[series.steps.tolist().index(step)]


@pytest.fixture
def two_runs(runs_dir):
    write_run(runs_dir, "ael-run", steps=300, seed=0)
    write_run(runs_dir, "mt-run", steps=300, seed=1)
    return runs_dir


def test_every_page_draws(two_runs, app_factory):
    at = app_factory(two_runs)
    assert not _problems(at)
    assert at.title[0].value == "Runs"
    assert len(at.dataframe) == 1
    table = at.dataframe[0].value
    assert sorted(table["run"]) == ["ael-run", "mt-run"]
    assert set(table["status"]) == {"finished"}
    assert table["progress"].tolist() == [1.0, 1.0]
    expected_charts = {"views/training.py": 3, "views/confidence.py": 5, "views/pseudo_labels.py": 0,
                       "views/lab.py": 1}
    for page in PAGES:
        at.switch_page(page).run()
        assert not _problems(at), page
        assert _charts(at) >= expected_charts[page], page
        # Every page draws the canvas chart's empty preload in the sidebar (its code loads early).
        assert canvas_elements(at)["ael_canvas_preload"] is None, page
        assert [e.proto.id.rsplit("-", 1)[-1] for e in at.sidebar.get("bidi_component")] == ["ael_canvas_preload"]
    at.switch_page("views/pseudo_labels.py").run()
    assert _images(at) == 5  # image, gt, pseudo, confidence, error
    at.switch_page("views/lab.py").run()
    assert _images(at) == 8  # 4 Copy-Paste + 4 CutMix


def test_class_choice_persists_across_refresh(two_runs, app_factory):
    at = app_factory(two_runs)
    at.switch_page("views/confidence.py").run()
    run_id = at.sidebar.selectbox(key="run").value
    at.segmented_control(key="conf_show").set_value("chosen").run()
    at.multiselect(key=f"conf_chosen_{run_id}").set_value([2, 5]).run()
    at.run()
    assert not _problems(at)
    assert at.multiselect(key=f"conf_chosen_{run_id}").value == [2, 5]
    assert at.segmented_control(key="conf_show").value == "chosen"
    lines = canvas_views(at)["conf_lines"]
    assert sorted(e["name"] for e in lines["entries"] if not e["hidden"]) == ["blob-1", "line"]


@pytest.mark.parametrize(("chosen", "row"), [(155, 150), (150, 150), (0, 0)])
def test_confidence_bars_at_a_chosen_step_are_the_readers_rows(two_runs, app_factory, chosen, row):
    run = open_run(two_runs, "ael-run")
    at = app_factory(two_runs)
    at.sidebar.selectbox(key="run").set_value("ael-run")
    at.switch_page("views/confidence.py").run()
    latest = bar_rows(at)
    assert latest[0]["title"] == "confidence bank Conf (step 290)"  # following the latest row
    np.testing.assert_array_equal(latest[0]["values"], _row(run.class_vectors("bank"), 290))
    at.toggle(key="conf_step_ael-run_follow").set_value(False).run()
    at.slider(key="conf_step_ael-run_slider").set_value(chosen).run()
    assert not _problems(at)
    shown = bar_rows(at)
    # A row every 10 steps: the bars show the latest row at or before the chosen step, as logged.
    assert [r["title"] for r in shown] == [f"{title} (step {row})" for title in (
        "confidence bank Conf", "Copy-Paste distribution", "CutMix distribution", "sampling ratio r_c")]
    assert canvas_views(at)["conf_bars"]["names"] == list(run.class_names)
    for shown_row, name in zip(shown, ("bank", "copy_paste_prob", "cutmix_prob", "sampling_ratio")):
        np.testing.assert_array_equal(shown_row["values"], _row(run.class_vectors(name), row))
    assert not np.array_equal(shown[0]["values"], latest[0]["values"])


def test_compare_two_runs(two_runs, app_factory):
    at = app_factory(two_runs)
    at.switch_page("views/compare.py").run()
    assert "at least one more" in at.info[0].value
    other = next(iter(at.sidebar.multiselect(key="compare").options)).split(" ")[0]
    at.sidebar.multiselect(key="compare").set_value([other]).run()
    assert not _problems(at)
    assert _charts(at) == 3  # mIoU, the per-class panels (every run on shared axes), final IoU bars


def test_empty_and_missing_folder(runs_dir, app_factory, tmp_path):
    at = app_factory(runs_dir)
    assert not at.exception
    assert "No runs" in at.info[0].value
    at.switch_page("views/confidence.py").run()
    assert not at.exception and "No runs" in at.info[0].value
    at = app_factory(tmp_path / "nowhere")
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)


def test_damaged_and_unknown_schema_runs(runs_dir, app_factory):
    write_run(runs_dir, "torn", steps=50)
    damage_run(runs_dir / "torn")
    write_run(runs_dir, "future", steps=20)
    make_unknown_schema(runs_dir / "future")
    (runs_dir / "no-manifest").mkdir()
    at = app_factory(runs_dir)
    table = at.dataframe[0].value.set_index("run")
    assert table.loc["future", "status"] == "unsupported"
    assert table.loc["no-manifest", "status"] == "damaged"
    assert "schema version 999" in table.loc["future", "problem"]

    at.sidebar.selectbox(key="run").set_value("torn")
    at.switch_page("views/training.py").run()
    assert not _problems(at)
    assert _charts(at) >= 1
    assert any("damaged records" in e.label for e in at.expander)

    at.sidebar.selectbox(key="run").set_value("future").run()
    assert not at.exception
    assert any("another run-store schema" in e.value for e in at.error)

    at.sidebar.selectbox(key="run").set_value("no-manifest").run()
    assert not at.exception
    assert at.error or at.warning


def test_query_param_cannot_escape_runs_folder(two_runs, app_factory):
    from streamlit.testing.v1 import AppTest

    at = app_factory(two_runs, run=False)
    assert isinstance(at, AppTest)
    at.query_params["run"] = "../../etc"
    at.run()
    assert at.sidebar.selectbox(key="run").value in ("ael-run", "mt-run")
    at = app_factory(two_runs, run=False)
    at.query_params["run"] = "mt-run"
    at.query_params["compare"] = ["ael-run", "/etc", "mt-run"]
    at.run()
    assert at.sidebar.selectbox(key="run").value == "mt-run"
    assert at.sidebar.multiselect(key="compare").value == ["ael-run"]


def test_a_link_to_a_run_newer_than_the_cached_listing_opens_that_run(runs_dir, app_factory):
    from streamlit.testing.v1 import AppTest

    app = Path(__file__).resolve().parents[2] / "app" / "dashboard.py"
    write_run(runs_dir, "older", steps=30, seed=0)
    app_factory(runs_dir)  # lists the runs folder: the listing is cached for 2 s
    write_run(runs_dir, "newer", steps=30, seed=1)
    at = AppTest.from_file(str(app), default_timeout=60)  # a new tab, within the listing's 2 s
    at.query_params["run"] = "newer"
    at.run()
    assert not _problems(at)
    assert at.sidebar.selectbox(key="run").value == "newer"
    assert at.query_params["run"] == "newer"


def test_live_run_updates_and_keeps_choices(runs_dir, app_factory):
    writer = write_run(runs_dir, "live", steps=100, finish=False, total_steps=1000)
    try:
        at = app_factory(runs_dir)
        at.switch_page("views/training.py").run()
        assert at.metric[0].value == "running"
        assert at.metric[1].value == "99 / 1000"
        assert _named(_traces(at, "loss/"), "loss/total")["x"].tolist() == list(range(100))
        at.switch_page("views/confidence.py").run()
        toggle = at.toggle(key="conf_step_live_follow")
        toggle.set_value(False).run()
        at.slider(key="conf_step_live_slider").set_value(40).run()
        assert not _problems(at)
        bank_at_40 = bar_rows(at)[0]
        rng = np.random.default_rng(1)
        for step in range(100, 160):
            append_step(writer, step, rng)
        time.sleep(0.6)  # the shared tailer polls at most every 0.5 s
        at.run()
        assert at.slider(key="conf_step_live_slider").value == 40
        assert at.toggle(key="conf_step_live_follow").value is False
        # The chosen step's bars keep the reader's row at step 40 after the live refresh.
        run = open_run(runs_dir, "live")
        kept = bar_rows(at)[0]
        assert kept["title"] == bank_at_40["title"] == "confidence bank Conf (step 40)"
        np.testing.assert_array_equal(kept["values"], _row(run.class_vectors("bank"), 40))
        at.switch_page("views/training.py").run()
        assert at.metric[1].value == "159 / 1000"
        # New chart data: the loss lines grow from 100 to 160 points (a chart is redrawn with new data
        # at most once per refresh interval, 2 s here), holding the reader's values.
        steps, values = run.scalar("loss/total")
        deadline = time.monotonic() + 15
        grown = _named(_traces(at, "loss/"), "loss/total")
        while len(grown["x"]) == 100 and time.monotonic() < deadline:
            time.sleep(0.5)
            at.run()
            grown = _named(_traces(at, "loss/"), "loss/total")
        assert grown["x"].tolist() == steps.tolist() == list(range(160))
        np.testing.assert_array_equal(grown["y"], values)
    finally:
        writer.finish()
    time.sleep(0.6)
    at.run()
    assert at.metric[0].value == "finished"


def test_lab_redraw_and_edited_bank(two_runs, app_factory):
    at = app_factory(two_runs)
    at.switch_page("views/lab.py").run()
    before = [m.value for m in at.markdown if "Sampled class" in m.value]
    at.button(key="lab_redraw").click().run()
    assert at.number_input(key="lab_seed").value == 1
    after = [m.value for m in at.markdown if "Sampled class" in m.value]
    assert len(before) == 2 and len(after) == 2
    at.radio(key="lab_source").set_value("edited by hand").run()
    assert not _problems(at)
    run_id = at.sidebar.selectbox(key="run").value
    sliders = [s for s in at.slider if s.key and s.key.startswith(f"lab_conf_{run_id}_")]
    assert len(sliders) == 8
    sliders[0].set_value(0.0).run()
    assert not _problems(at)
    assert _images(at) == 8


def _stamps(at) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("Last updated")]


def test_every_live_view_says_when_it_was_updated(runs_dir, app_factory):
    write_run(runs_dir, "done", steps=150)
    writer = write_run(runs_dir, "live", steps=50, finish=False, total_steps=1000)
    try:
        at = app_factory(runs_dir)
        assert at.sidebar.selectbox(key="run").value == "live"  # a running run is picked first
        assert [s.split(" · ")[1] for s in _stamps(at)] == ["refreshing every 2 s"]  # the Runs page
        for page in PAGES:
            at.switch_page(page).run()
            assert not _problems(at), page
            (stamp,) = _stamps(at)
            assert re.fullmatch(r"Last updated \d\d:\d\d:\d\d · refreshing every 2 s", stamp), page
        at.sidebar.selectbox(key="run").set_value("done").run()
        (stamp,) = _stamps(at)
        assert stamp.endswith("· not refreshing (done finished); checking every 5 s for a resume")
        at.sidebar.toggle(key="live").set_value(False).run()
        (stamp,) = _stamps(at)
        assert stamp.endswith("· Live is off: turn it on in the sidebar to follow the runs")
    finally:
        writer.finish()


def test_steps_agree_between_runs_and_training(runs_dir, app_factory):
    # Logged as the trainer logs: the last scalar at step 479, the final evaluation at 480.
    write_trainer_run(runs_dir, "trained", iterations=480, eval_every=160)
    run = open_run(runs_dir, "trained")
    assert run.scalar("loss/total")[0][-1] == 479
    assert [e.step for e in run.evals()] == [160, 320, 480]
    (summary,) = list_runs(runs_dir)
    assert summary.step == run.manifest["step"] == 480
    at = app_factory(runs_dir)
    table = at.dataframe[0].value.set_index("run")
    assert (table.loc["trained", "step"], table.loc["trained", "of"]) == (480, 480)
    at.switch_page("views/training.py").run()
    assert at.metric[1].value == "480 / 480"
    # The mIoU chart's x axis spans from step 0, as the scalar charts do, to the latest step.
    for element in at.get("plotly_chart"):
        layout = json.loads(element.proto.spec)["layout"]
        assert layout["xaxis"]["autorangeoptions"]["include"] == [0, 480]
    miou = _traces(at, "teacher mIoU")[0]
    assert miou["x"].tolist() == [160, 320, 480]
    np.testing.assert_allclose(miou["y"], [100 * e.miou for e in run.evals()], rtol=1e-12)


def test_runs_page_shows_each_problem_in_full(runs_dir, app_factory):
    writer = write_run(runs_dir, "stopped", steps=30, finish=False, total_steps=300)
    reason = ("stopped at iteration 30 of 300 on request; continue with: ael train --resume "
              + str(runs_dir / "stopped") + " " + "(a long reason that a table cell cuts) " * 3)
    writer.crash(RuntimeError(reason))
    (summary,) = list_runs(runs_dir)
    at = app_factory(runs_dir)
    assert at.dataframe[0].value.loc[0, "problem"] == summary.error
    assert reason in summary.error
    assert [c.value for c in at.code] == [summary.error]
    assert any(m.value == "**stopped** · crashed" for m in at.markdown)


def test_training_smoothing(two_runs, app_factory):
    run = open_run(two_runs, "ael-run")
    at = app_factory(two_runs)
    at.sidebar.selectbox(key="run").set_value("ael-run")
    at.switch_page("views/training.py").run()
    smoothed = _traces(at, "loss/")
    names = sorted(run.scalar_names())
    losses = [n for n in names if n.startswith("loss")]
    # Each loss twice, the faint raw line (the reader's values) and then the smoothed one.
    assert [t["name"] for t in smoothed] == [n for n in losses for _ in (0, 1)]
    for raw, ema in zip(smoothed[::2], smoothed[1::2]):
        steps, values = run.scalar(raw["name"])
        assert raw["x"].tolist() == ema["x"].tolist() == steps.tolist()
        np.testing.assert_array_equal(raw["y"], values)
        assert np.abs(np.diff(ema["y"])).sum() < np.abs(np.diff(values)).sum()
    assert at.slider(key="training_smoothing").value == 0.6
    at.slider(key="training_smoothing").set_value(0.0).run()
    assert [t["name"] for t in _traces(at, "loss/")] == losses
