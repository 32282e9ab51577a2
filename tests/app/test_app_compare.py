"""The Compare page on runs written by the real RunWriter: the runs table, the config diff, the
per-class panels, the final IoU at a matched step and a group's curves hold what the run store
holds."""

from __future__ import annotations

import time

import numpy as np
import pytest
from canvas_support import canvas_views
from runs_factory import class_rows

from ael.runs import DamagedRunWarning, RunWriter, open_run
from ael.runs.compare import tail_mean
from ael.runs.groups import group_curves

CLASSES = ["background", "blob", "ring", "disc"]
PALETTE = [[0, 0, 0], [200, 30, 30], [30, 200, 30], [30, 30, 200]]
FREQUENCIES = [0.7, 0.26, 0.03, 0.01]  # ring and disc are tail (under 0.25 / 4)


def _config(method: str, seed: int, iterations: int) -> dict:
    return {"method": {"name": method}, "model": {"backbone": "resnet18"},
            "data": {"dataset": "synthetic", "synthetic": {"num_labeled": 16}},
            "train": {"iterations": iterations, "seed": seed, "eval": {"every": 100}}, "run": {"name": "x"}}


def _write(runs, run_id: str, *, method: str, seed: int, steps: int, group: str | None = None,
           classes: list[str] = CLASSES, frequencies: list[float] | None = FREQUENCIES, vectors: bool = True,
           eval_offset: int = 0) -> None:
    rng = np.random.default_rng(seed)
    writer = RunWriter(runs, run_id, class_names=classes, palette=PALETTE + [[9, 9, 9]] * (len(classes) - 4),
                       config=_config(method, seed, steps), dataset="synthetic", split="16 labeled",
                       total_steps=steps, method=method, group=group,
                       extra={"class_frequencies": frequencies} if frequencies else None)
    for step in range(steps):
        writer.log_scalars(step, {"loss/total": 1.0 / (1 + step)})
        if vectors and step % 10 == 0:
            writer.log_classes(step, {"bank": class_rows(step + 100 * seed, len(classes), rng)["bank"]})
        if step > eval_offset and (step - eval_offset) % 100 == 0:
            iou = np.clip(0.2 + step / 1000 + 0.05 * seed + np.linspace(0.3, 0.0, len(classes))
                          + 0.01 * rng.random(len(classes)), 0, 1)
            writer.log_eval(step, miou=float(iou.mean()), iou=iou, model="teacher")
    writer.finish()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two AEL seeds and two supervised seeds of one group, of different lengths."""
    path = tmp_path_factory.mktemp("compare") / "runs"
    path.mkdir()
    _write(path, "g-ael-s0", method="ael", seed=0, steps=310, group="g")
    _write(path, "g-ael-s1", method="ael", seed=1, steps=310, group="g")
    _write(path, "g-supervised-s0", method="supervised", seed=0, steps=210, group="g")
    _write(path, "g-supervised-s1", method="supervised", seed=1, steps=210, group="g")
    return path


def _lines(at, key: str) -> list[dict]:
    """The curves of canvas chart ``key``: legend name, panel title, steps and values of each."""
    view = canvas_views(at)[key]
    assert view["kind"] == "curves"
    return [{"name": view["entries"][s["entry"]]["name"], "panel": view["panels"][s["panel"]]["title"],
             "x": s["x"], "y": s["y"], **({"spread": s["spread"], "count": s["count"]} if "spread" in s else {})}
            for s in view["series"]]


def _bars(at, key: str) -> dict[str, np.ndarray]:
    """Legend name -> the bars of canvas chart ``key``."""
    view = canvas_views(at)[key]
    assert view["kind"] == "groups"
    return {entry["name"]: group["values"] for entry, group in zip(view["entries"], view["groups"])}


def _problems(at) -> list[str]:
    return [e.value for e in at.exception] + [e.value for e in at.error]


def _open(app_factory, runs, compare=("g-supervised-s0",), run="g-ael-s0"):
    at = app_factory(runs)
    at.switch_page("views/compare.py").run()
    at.sidebar.selectbox(key="run").set_value(run).run()
    at.sidebar.multiselect(key="compare").set_value(list(compare)).run()
    assert not _problems(at)
    return at


def _stored(runs, run_id):
    run = open_run(runs, run_id)
    return run, run.evals("teacher")


def test_the_runs_table_holds_each_runs_store_values_and_filters(runs, app_factory):
    at = app_factory(runs)
    at.switch_page("views/compare.py").run()
    assert not _problems(at)
    table = at.dataframe[0].value
    assert sorted(table["run"]) == ["g-ael-s0", "g-ael-s1", "g-supervised-s0", "g-supervised-s1"]
    for row in table.to_dict("records"):
        run, evals = _stored(runs, row["run"])
        assert (row["method"], row["group"], row["status"], row["dataset"]) == (run.method, "g", "finished",
                                                                                  "synthetic")
        assert (row["seed"], row["iterations"], row["backbone"], row["labeled"]) == (
            int(row["run"][-1]), run.total_steps, "resnet18", "16")
        assert row["last step"] == run.total_steps - 1 and row["of"] == run.total_steps
        assert row["eval step"] == evals[-1].step
        assert row["final mIoU"] == pytest.approx(100 * evals[-1].miou)
        assert row["best mIoU"] == pytest.approx(100 * max(e.miou for e in evals))
        assert row["tail mean"] == pytest.approx(100 * tail_mean(evals[-1].iou, np.array(FREQUENCIES)))
        assert row["tail mean"] == pytest.approx(100 * np.mean(evals[-1].iou[2:]))
    at.text_input(key="cmp_filter").set_value("supervised s1").run()
    assert list(at.dataframe[0].value["run"]) == ["g-supervised-s1"]
    at.text_input(key="cmp_filter").set_value("").run()
    at.multiselect(key="cmp_methods").set_value(["ael"]).run()
    assert sorted(at.dataframe[0].value["run"]) == ["g-ael-s0", "g-ael-s1"]


def test_chosen_runs_share_one_panel_per_class_and_a_config_diff(runs, app_factory):
    at = _open(app_factory, runs)
    assert at.session_state["cmp_selected"] == ["g-ael-s0", "g-supervised-s0"]
    diff = at.dataframe[1].value
    assert list(diff.index) == ["method.name", "train.iterations"]
    assert diff.loc["method.name"].tolist() == ['"ael"', '"supervised"']
    assert diff.loc["train.iterations"].tolist() == ["310", "210"]
    view = canvas_views(at)["cmp_panels"]
    # Default panels: the tail classes first (ring, disc), then the others; one grid of shared axes.
    assert [p["title"] for p in view["panels"]] == ["background", "blob", "ring (tail)", "disc (tail)"]
    assert view["columns"] == 2 and view["y_title"] == "bank" and view["zoomable"]
    assert [e["name"] for e in view["entries"]] == ["g-ael-s0", "g-supervised-s0"]
    compared = 0
    for line in _lines(at, "cmp_panels"):
        run, _ = _stored(runs, line["name"])
        bank = run.class_vectors("bank")
        assert np.array_equal(line["x"], bank.steps)
        assert np.allclose(line["y"], bank.values[:, CLASSES.index(line["panel"].removesuffix(" (tail)"))])
        compared += 1
    assert compared == 2 * 4
    at.multiselect(key="cmp_classes_bank").set_value(["disc"]).run()
    lines = _lines(at, "cmp_panels")
    assert [p["title"] for p in canvas_views(at)["cmp_panels"]["panels"]] == ["disc (tail)"]
    assert [line["name"] for line in lines] == ["g-ael-s0", "g-supervised-s0"]
    run, _ = _stored(runs, "g-supervised-s0")
    assert np.allclose(lines[1]["y"], run.class_vectors("bank").values[:, 3])


def test_final_iou_is_compared_at_the_step_all_runs_reached(runs, app_factory):
    at = _open(app_factory, runs)
    bars = _bars(at, "cmp_final_iou")
    assert canvas_views(at)["cmp_final_iou"]["names"] == ["background", "blob", "ring (tail)", "disc (tail)"]
    for run_id in ("g-ael-s0", "g-supervised-s0"):
        _, evals = _stored(runs, run_id)
        at_200 = next(e for e in evals if e.step == 200)
        assert np.allclose(bars[f"{run_id} (step 200, mIoU {100 * at_200.miou:.2f})"], 100 * at_200.iou)
    assert any("Every run at step 200" in c.value for c in at.caption)
    at.radio(key="cmp_final_how").set_value("each run's own final evaluation").run()
    _, evals = _stored(runs, "g-ael-s0")
    names = list(_bars(at, "cmp_final_iou"))
    assert names[0] == f"g-ael-s0 (step 300, mIoU {100 * evals[-1].miou:.2f})"
    assert any("g-ael-s0 at step 300, g-supervised-s0 at step 200 (different steps" in c.value for c in at.caption)


def test_a_group_draws_each_methods_mean_curve_with_its_seed_band(runs, app_factory):
    at = app_factory(runs)
    at.switch_page("views/compare.py").run()
    assert not _problems(at)
    assert at.selectbox(key="cmp_group").value == "g"
    table = "\n".join(m.value for m in at.markdown)
    assert "| ael | 2 |" in table and "| supervised | 2 |" in table
    expected = group_curves([open_run(runs, r) for r in ("g-ael-s0", "g-ael-s1", "g-supervised-s0",
                                                         "g-supervised-s1")], "g", "teacher")
    lines = _lines(at, "cmp_group_curves")
    assert len(lines) == len(expected)
    for line, (label, (steps, mean, std, count)) in zip(lines, expected.items()):
        assert line["name"] == f"{label} (mean of 2 seeds)"
        assert np.array_equal(line["x"], steps)
        assert np.allclose(line["y"], 100 * mean, rtol=0, atol=1e-12)
        assert np.allclose(line["spread"], 100 * std, rtol=0, atol=1e-12) and np.all(line["spread"] > 0)
        assert line["count"].tolist() == count.tolist() == [2] * len(steps)
    assert [len(expected["ael"][0]), len(expected["supervised"][0])] == [3, 2]


def test_filter_and_diff_frames():
    import sys
    from pathlib import Path

    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))
    from ael_app.compare_table import diff_frame, filter_frame

    frame = pd.DataFrame({"run": ["g-ael-s0", "g-sup-s0", "x-ael-s1"], "method": ["ael", "supervised", "ael"],
                          "group": ["g", "g", None], "status": ["finished", "running", "crashed"],
                          "dataset": ["synthetic"] * 3, "backbone": ["resnet18", None, "resnet50"]})
    assert list(filter_frame(frame, "AEL")["run"]) == ["g-ael-s0", "x-ael-s1"]
    assert list(filter_frame(frame, "ael resnet50")["run"]) == ["x-ael-s1"]
    assert list(filter_frame(frame, "running")["run"]) == ["g-sup-s0"]
    assert list(filter_frame(frame, "", ["supervised"])["run"]) == ["g-sup-s0"]
    assert list(filter_frame(frame, "g-", ["ael"])["run"]) == ["g-ael-s0"]
    assert filter_frame(frame, "nothing").empty
    diff = diff_frame({"a": {"train": {"seed": 0, "lr": 0.01}, "run": {"name": "a"}, "data": {"scale": [0.5, 2.0]}},
                       "b": {"train": {"seed": 1, "lr": 0.01}, "run": {"name": "b"}, "data": {"scale": None}}})
    assert list(diff.index) == ["data.scale", "train.seed"]
    assert diff.to_dict("index") == {"data.scale": {"a": "[0.5, 2.0]", "b": "null"},
                                     "train.seed": {"a": "0", "b": "1"}}


def test_rows_of_runs_not_opened_come_from_manifest_and_evaluations(tmp_path, app_factory):
    runs = tmp_path / "runs"
    runs.mkdir()
    for seed, run_id in enumerate(("solo-a", "solo-b", "solo-c")):
        _write(runs, run_id, method="ael", seed=seed, steps=210 + 100 * seed)
    at = app_factory(runs)
    at.switch_page("views/compare.py").run()
    assert not _problems(at)
    opened = set(at.session_state["cmp_selected"])
    assert len(opened) == 1
    table = at.dataframe[0].value.set_index("run")
    for run_id in ("solo-a", "solo-b", "solo-c"):
        run, evals = _stored(runs, run_id)
        row = table.loc[run_id]
        assert (row["seed"], row["iterations"], row["backbone"], row["labeled"]) == (
            run.config["train"]["seed"], run.total_steps, "resnet18", "16")
        assert row["eval step"] == evals[-1].step
        assert row["final mIoU"] == pytest.approx(100 * evals[-1].miou)
        assert row["best mIoU"] == pytest.approx(100 * max(e.miou for e in evals))
        assert row["tail mean"] == pytest.approx(100 * np.mean(evals[-1].iou[2:]))


def test_a_live_run_is_followed_and_a_finished_one_kept(tmp_path, app_factory):
    from runs_factory import append_step, write_run

    runs = tmp_path / "runs"
    runs.mkdir()
    write_run(runs, "done", steps=120)
    writer = write_run(runs, "live", steps=50, finish=False, total_steps=500)
    try:
        at = app_factory(runs)
        at.switch_page("views/compare.py").run()
        at.sidebar.selectbox(key="run").set_value("live").run()
        at.sidebar.multiselect(key="compare").set_value(["done"]).run()
        assert not _problems(at)
        assert any("**live**: running, step 49 of 500" in c.value and "**done**: finished, step 119 of 120" in c.value
                   for c in at.caption)
        rng = np.random.default_rng(5)
        for step in range(50, 80):
            append_step(writer, step, rng)
        writer.flush_media(timeout=30)
        # The tailer polls at most every 0.5 s; a changed chart is rebuilt at most once a refresh (2 s).
        time.sleep(2.1)
        at.run()
        assert any("**live**: running, step 79 of 500" in c.value for c in at.caption)
        bank = open_run(runs, "live").class_vectors("bank")
        live = [line for line in _lines(at, "cmp_panels") if line["name"] == "live"]
        assert np.array_equal(live[0]["x"], bank.steps) and bank.steps[-1] == 70
    finally:
        writer.close()


def test_damaged_and_foreign_runs_leave_the_page_working(tmp_path, app_factory):
    from runs_factory import damage_run, make_unknown_schema, write_run

    runs = tmp_path / "runs"
    runs.mkdir()
    write_run(runs, "good", steps=120)
    write_run(runs, "torn", steps=120)
    write_run(runs, "foreign", steps=20)
    damage_run(runs / "torn")
    make_unknown_schema(runs / "foreign")
    (runs / "not-a-run").mkdir()
    at = app_factory(runs)
    at.switch_page("views/compare.py").run()
    at.sidebar.selectbox(key="run").set_value("good").run()
    at.sidebar.multiselect(key="compare").set_value(["torn"]).run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("run")
    assert "foreign" not in table.index  # another schema: listed on the Runs page with its reason
    assert table.loc["not-a-run", "status"] == "damaged"
    with pytest.warns(DamagedRunWarning, match="damaged line"):  # the reader reports the torn lines it skips
        torn = open_run(runs, "torn")
    assert table.loc["torn", "final mIoU"] == pytest.approx(100 * torn.evals()[-1].miou)
    assert [line["name"] for line in _lines(at, "cmp_miou")] == ["good", "torn"]
    torn_line = _lines(at, "cmp_miou")[1]
    assert np.allclose(torn_line["y"], [100 * e.miou for e in torn.evals()])
    assert not at.get("plotly_chart")  # the page draws without plotly.js


def test_runs_of_other_classes_and_without_vectors_are_compared_on_what_they_share(tmp_path, app_factory):
    runs = tmp_path / "runs"
    runs.mkdir()
    # Listed first, it has no pixel frequencies and no class vectors; the second has one class more.
    _write(runs, "novec", method="ael", seed=0, steps=210, frequencies=None, vectors=False)
    _write(runs, "five", method="ael", seed=1, steps=210, classes=["extra", *CLASSES], frequencies=[0, *FREQUENCIES])
    _write(runs, "four", method="supervised", seed=2, steps=210)
    at = _open(app_factory, runs, compare=("five", "novec"), run="four")
    assert any(c.value == "Only the vectors every chosen run logged can be compared; novec has no bank."
               for c in at.caption)
    at = _open(app_factory, runs, compare=("five",), run="novec")
    # The tail comes from the first run that has pixel frequencies (five's), not from novec's missing ones.
    view = canvas_views(at)["cmp_final_iou"]
    assert view["names"] == ["background", "blob", "ring (tail)", "disc (tail)"]
    assert any("The 4 classes every run has are compared" in c.value for c in at.caption)
    bars = {entry["id"]: group["values"] for entry, group in zip(view["entries"], view["groups"])}
    for run_id, columns in (("novec", [0, 1, 2, 3]), ("five", [1, 2, 3, 4])):
        evals = open_run(runs, run_id).evals("teacher")
        at_200 = next(e for e in evals if e.step == 200)
        np.testing.assert_array_equal(bars[run_id], 100 * at_200.iou[columns])
    assert not _problems(at)


def test_panels_follow_the_class_order_and_runs_keep_their_colours(runs, app_factory):
    at = _open(app_factory, runs, compare=("g-supervised-s0", "g-ael-s1"))
    colours = {e["id"]: e["colour"] for e in canvas_views(at)["cmp_panels"]["entries"]}
    at.multiselect(key="cmp_classes_bank").set_value(["disc", "background"]).run()
    assert [p["title"] for p in canvas_views(at)["cmp_panels"]["panels"]] == ["background", "disc (tail)"]
    # Another run dropped: the others keep their colours, in every chart of the page.
    at.sidebar.multiselect(key="compare").set_value(["g-ael-s1"]).run()
    views = canvas_views(at)
    for key in ("cmp_panels", "cmp_miou", "cmp_final_iou"):
        assert {e["id"]: e["colour"] for e in views[key]["entries"]} == {r: colours[r] for r in ("g-ael-s0", "g-ael-s1")}


def test_a_group_of_single_seeds_draws_no_spread_and_staggered_seeds_are_named(tmp_path, app_factory):
    runs = tmp_path / "runs"
    runs.mkdir()
    _write(runs, "one-ael-s0", method="ael", seed=0, steps=210, group="one")
    _write(runs, "one-supervised-s0", method="supervised", seed=0, steps=210, group="one")
    at = app_factory(runs)
    at.switch_page("views/compare.py").run()
    assert not _problems(at)
    view = canvas_views(at)["cmp_group_bars"]
    assert [e["name"] for e in view["entries"]] == ["ael (1 seed)", "supervised (1 seed)"]
    assert all(np.isnan(group["errors"]).all() for group in view["groups"])  # no whisker of zero
    assert [line["name"] for line in _lines(at, "cmp_group_curves")] == ["ael (1 seed)", "supervised (1 seed)"]

    # Two seeds that never evaluate at the same step: named as two, and the page says why no band.
    _write(runs, "st-ael-s0", method="ael", seed=0, steps=210, group="st")
    _write(runs, "st-ael-s1", method="ael", seed=1, steps=260, group="st", eval_offset=50)
    at = app_factory(runs)
    at.switch_page("views/compare.py").run()
    at.selectbox(key="cmp_group").set_value("st").run()
    assert not _problems(at)
    line, = _lines(at, "cmp_group_curves")
    assert line["name"] == "ael (mean of 2 seeds)" and line["count"].tolist() == [1, 1, 1, 1]
    assert np.array_equal(line["x"], [100, 150, 200, 250])
    assert any(c.value.startswith("ael: no evaluation step is shared by all seeds") for c in at.caption)

