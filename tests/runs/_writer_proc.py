"""A writer process for the run-store tests: streams every record type until done or killed.

Usage: python _writer_proc.py RUNS_DIR RUN_ID STEPS SLEEP_S [--resume STEP] [--crash] [--report FILE]
Prints "ready" once the first step is on disk, then "done" at the end. With ``--report FILE`` it
appends ``<stream> <step>`` to FILE (one ``write`` each) right after each ``log_*`` call returns, so a
test that kills it knows which records the writer had completed: those must all survive.

Or: python _writer_proc.py --fork-server. Reads "RUNS_DIR RUN_ID STEPS SLEEP_S" lines from stdin
and forks a writer process for each (already imported, so starting one is cheap); each child
prints "ready <pid>" so the test can kill -9 it.
"""

import os
import signal
import sys

import numpy as np

from ael.runs import RunWriter

NUM_CLASSES = 6
CLASS_NAMES = [f"class{i}" for i in range(NUM_CLASSES)]
PALETTE = [[40 * i, 255 - 40 * i, (97 * i) % 256] for i in range(NUM_CLASSES)]


def value(step: int) -> float:
    """The scalar the process logs at ``step`` (tests recompute it)."""
    return 1.0 / (step + 1)


def vector(step: int) -> np.ndarray:
    """The class vector logged at ``step``."""
    return (np.arange(NUM_CLASSES) + step) / (NUM_CLASSES + step)


def main(argv: list[str]) -> None:
    runs_dir, run_id, steps, sleep_s = argv[0], argv[1], int(argv[2]), float(argv[3])
    resume = "--resume" in argv
    start = int(argv[argv.index("--resume") + 1]) + 1 if resume else 0
    crash = "--crash" in argv
    report_fd = (os.open(argv[argv.index("--report") + 1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                 if "--report" in argv else None)

    def report(stream: str, step: int) -> None:
        if report_fd is not None:
            os.write(report_fd, f"{stream} {step}\n".encode())

    rng = np.random.default_rng(start)
    import time

    with RunWriter(runs_dir, run_id, class_names=CLASS_NAMES, palette=PALETTE, dataset="synthetic",
                   split="test", total_steps=steps, heartbeat_s=0.05, media_queue=64, resume=resume,
                   resume_step=start - 1 if resume else None) as writer:
        for step in range(start, steps):
            # Big enough lines that a kill often lands inside a write.
            writer.log_scalars(step, {"loss": value(step), **{f"pad{i}": float(i) for i in range(40)}})
            report("scalars", step)
            if step % 3 == 0:
                writer.log_classes(step, {"bank": vector(step), "freq": vector(step) / 2})
                report("classes", step)
            if step % 5 == 0:
                queued = writer.log_sample(
                    step, "pseudo",
                    images={"image": rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)},
                    labels={"gt": rng.integers(0, NUM_CLASSES, (24, 24))},
                    maps={"confidence": rng.random((24, 24))},
                    meta={"step": step},
                )
                report("sample" if queued else "dropped", step)
            if step % 20 == 19:
                iou = vector(step)
                writer.log_eval(step, miou=float(iou.mean()), iou=iou,
                                confusion=np.full((NUM_CLASSES, NUM_CLASSES), step))
                report("eval", step)
            if step == start:
                print(f"ready {os.getpid()}", flush=True)
            if crash and step == steps - 1:
                raise RuntimeError("boom at the last step")
            if sleep_s:
                time.sleep(sleep_s)
    print("done", flush=True)


def fork_server() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    for line in sys.stdin:
        if os.fork() == 0:
            try:
                main(line.split())
            finally:
                os._exit(0)


if __name__ == "__main__":
    if sys.argv[1:] == ["--fork-server"]:
        fork_server()
    else:
        main(sys.argv[1:])
