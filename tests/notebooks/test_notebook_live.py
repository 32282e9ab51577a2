"""Notebook 01 executed on a real kernel, then stopped and resumed with its own panel: the live view
follows the resumed process to the end by itself (no manual poll), and says when it was updated."""

from __future__ import annotations

import json

from nb_helpers import NOTEBOOKS, TINY, execute_notebook

from ael.runs import open_run

# Cells typed below the notebook: they use its `launcher`, `panel` and `monitor` and print what
# they saw as one JSON line each. Only the monitor's own background thread polls the run.
_STOP = '''
import json, time

def _settle(deadline_s):
    """Wait for the monitor's thread to end by itself (it polls once more after the process ended)."""
    deadline = time.monotonic() + deadline_s
    while monitor.watching and time.monotonic() < deadline:
        time.sleep(0.1)

deadline = time.monotonic() + 150
while not (launcher.run_dir / "checkpoints" / "ckpt_00000004.pt").exists():
    assert launcher.running and time.monotonic() < deadline, launcher.log_tail(40)
    time.sleep(0.1)
panel.stop()
_settle(30)
print("STOPPED " + json.dumps({
    "state": launcher.state(), "watching": monitor.watching, "status": monitor.run.status(),
    "error": monitor.run.error["type"], "view": monitor.view_text(), "panel": panel.widget().children[1].value,
}))
'''

_RESUME = '''
polls_before = monitor.polls
panel.resume()
deadline = time.monotonic() + 150
while launcher.running and time.monotonic() < deadline:
    time.sleep(0.2)
_settle(30)
losses = next(t for t in monitor.losses.data if t.name == "loss/total")
print("RESUMED " + json.dumps({
    "state": launcher.state(), "watching": monitor.watching, "status": monitor.run.status(),
    "last_step": monitor.last_step, "total": monitor.run.total_steps, "polls": monitor.polls - polls_before,
    "miou_x": {t.name: [int(x) for x in t.x] for t in monitor.miou.data}, "loss_x": [int(x) for x in losses.x],
    "text": monitor.status_text(), "view": monitor.view_text(), "panel": panel.widget().children[1].value,
}))
'''


def _printed(nb, marker: str) -> dict:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines():
                if line.startswith(marker + " "):
                    return json.loads(line[len(marker) + 1:])
    raise AssertionError(f"no {marker} line in the notebook's outputs")


def test_01_stop_then_resume_reaches_finished_at_the_last_step_live(tmp_path):
    runs, iterations = tmp_path / "runs", 24
    nb = execute_notebook("01_train_and_watch.ipynb", {
        "RUNS_DIR": str(runs), "RUN_ID": "live01", "ITERATIONS": iterations, "IMAGE_SIZE": 32, "NUM_CLASSES": 5,
        "OVERRIDES": [*TINY, "train.eval.every=0", "train.media_every=0"], "REFRESH_S": 0.3,
        "CHECKPOINT_EVERY": 2, "WAIT_FOR_END": False,
    }, cwd=NOTEBOOKS, timeout=300, append=[_STOP, _RESUME])

    stopped = _printed(nb, "STOPPED")
    assert stopped["state"] == "stopped" and stopped["error"] == "TrainingStopped"
    assert stopped["status"] == "crashed" and "stopped (resumable)" in stopped["view"]
    # The monitor's thread ended by itself once the stopped process was gone, and says so.
    assert not stopped["watching"] and stopped["view"].endswith("not live (monitor.start() to follow)")
    assert stopped["panel"].startswith("<b>live01</b>: stopped — stopped (exit 75) · last updated ")

    resumed = _printed(nb, "RESUMED")
    run = open_run(runs, "live01")
    assert run.status() == "finished" and run.total_steps == iterations
    # The resumed process's whole run reached the live view, through the thread's own polls.
    assert resumed["state"] == "finished" and resumed["status"] == "finished" and resumed["polls"] >= 2
    assert resumed["last_step"] == resumed["total"] == iterations
    assert resumed["text"].startswith(f"live01: finished, step {iterations} / {iterations}, loss ")
    models = sorted({e.model for e in run.evals()})
    assert resumed["miou_x"] == {f"{m} mIoU (%)": [e.step for e in run.evals(m)] for m in models}
    assert all(x[-1] == iterations for x in resumed["miou_x"].values())
    assert resumed["loss_x"] == list(run.scalar("loss/total")[0]) == list(range(iterations))
    assert " · last updated " in resumed["view"] and not resumed["watching"]
    # The panel no longer says "resumed": the process it named has finished.
    assert resumed["panel"].startswith("<b>live01</b>: finished · last updated ")

    # INFO lines are plain output; the red stderr stream carries no INFO line.
    streams = [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "stream"]
    assert any("INFO ael.notebook.launcher: run live01: training process" in o["text"]
               for o in streams if o["name"] == "stdout")
    assert not [o["text"] for o in streams if o["name"] == "stderr" and "INFO" in o["text"]]
    assert "waiting for the run folder" not in "".join(o["text"] for o in streams)
