"""Run-store figures: what logging costs the training step, and how fast readers load and poll.

Write cost: a simulated training loop (the step itself is a sleep, like a thread waiting on
the GPU) logs scalars every step, per-class vectors every 10 steps and 4 image samples every
100 steps with 150 classes; only the time spent inside writer calls is counted, as a fraction
of a 100 ms step.

Read cost: a 40 000-step run (same cadences, evaluations with 150 x 150 confusion matrices
every 500 steps for teacher and student) is loaded with ``open_run``; then a live run is polled
while it grows by 20 steps between polls (2 s of training at 100 ms a step), and polled idle.

    .venv/bin/python benchmarks/runstore.py [--steps 1000] [--step-ms 20] [--read-steps 40000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas  # noqa: F401 - imported up front so the DataFrame timing does not include it

from ael.runs import RunWriter, open_run

NUM_CLASSES = 150
SCALARS = ("loss", "loss/sup", "loss/unsup_labeled", "loss/unsup_mixed", "loss/aux", "lr", "lr/head",
           "throughput/img_s", "time/step_s", "time/data_s", "memory/alloc_gb", "memory/peak_gb")
VECTORS = ("bank", "copy_paste_prob", "cutmix_prob", "sampling_ratio", "freq_labeled", "freq_pseudo")


def _vectors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {name: rng.random(NUM_CLASSES) for name in VECTORS}


def _samples(rng: np.random.Generator, size: int) -> list[tuple[str, dict]]:
    def image() -> np.ndarray:
        return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)

    def label() -> np.ndarray:
        # Blocky maps like real predictions (PNG compresses them as it would real ones).
        small = rng.integers(0, NUM_CLASSES, (size // 16, size // 16), dtype=np.uint8)
        return np.kron(small, np.ones((16, 16), dtype=np.uint8))

    return [
        ("pseudo", dict(images={"image": image()}, labels={"gt": label(), "pseudo": label()},
                        maps={"confidence": rng.random((size, size), dtype=np.float32)})),
        ("cutmix", dict(images={"image_a": image(), "image_b": image(), "mixed": image()},
                        labels={"pseudo_mixed": label()}, meta={"box": [10, 20, 200, 300], "class": 7})),
        ("copy_paste", dict(images={"image": image()}, labels={"label": label()},
                            meta={"pasted_classes": [3, 17, 99]})),
        ("pseudo", dict(images={"image": image()}, labels={"gt": label(), "pseudo": label()},
                        maps={"confidence": rng.random((size, size), dtype=np.float32)}, index=1)),
    ]


def bench_write(root: Path, steps: int, step_ms: float, size: int) -> None:
    rng = np.random.default_rng(0)
    names = [f"class{i}" for i in range(NUM_CLASSES)]
    palette = rng.integers(0, 256, (NUM_CLASSES, 3))
    per_step: list[float] = []
    with RunWriter(root, "write", class_names=names, palette=palette, total_steps=steps, heartbeat_s=10.0,
                   media_queue=32) as writer:
        for step in range(steps):
            # Host values prepared by the trainer before logging (not counted).
            scalars = {name: float(rng.random()) for name in SCALARS}
            vectors = _vectors(rng) if step % 10 == 0 else None
            samples = _samples(rng, size) if step % 100 == 0 else ()
            t0 = time.perf_counter()
            writer.log_scalars(step, scalars)
            if vectors is not None:
                writer.log_classes(step, vectors)
            for kind, parts in samples:
                writer.log_sample(step, kind, **parts)
            per_step.append(time.perf_counter() - t0)
            time.sleep(step_ms / 1000.0)
        t0 = time.perf_counter()
        writer.flush_media()
        drain = time.perf_counter() - t0
        written, dropped = writer.media_written, writer.media_dropped
    cost = np.array(per_step) * 1000.0
    media_steps = cost[::100]
    other = np.delete(cost, np.arange(0, steps, 100))
    print(f"write: {steps} steps, {NUM_CLASSES} classes, samples {size}x{size}, simulated step {step_ms} ms")
    print(f"  mean cost per step       {cost.mean():.3f} ms = {cost.mean() / 100.0:.3%} of a 100 ms step")
    print(f"  steps without samples    median {np.median(other):.3f} ms, p99 {np.percentile(other, 99):.3f} ms, "
          f"max {other.max():.3f} ms")
    print(f"  steps with 4 samples     median {np.median(media_steps):.3f} ms, max {media_steps.max():.3f} ms "
          "(checks + uint8 copies on the caller; encoding is off-thread)")
    print(f"  samples written {written}, dropped {dropped}; final drain {drain * 1000:.0f} ms")


def _write_long_run(root: Path, steps: int) -> Path:
    rng = np.random.default_rng(1)
    names = [f"class{i}" for i in range(NUM_CLASSES)]
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with RunWriter(root, "long", class_names=names, total_steps=steps, media_queue=256) as writer:
        for step in range(steps):
            writer.log_scalars(step, {name: float(rng.random()) for name in SCALARS})
            if step % 10 == 0:
                writer.log_classes(step, _vectors(rng))
            if step % 100 == 0:
                for index in range(4):
                    writer.log_sample(step, "pseudo", images={"image": image}, index=index)
            if step % 500 == 499:
                for model in ("teacher", "student"):
                    iou = rng.random(NUM_CLASSES)
                    # Like a real one: a heavy diagonal, a few confusions per class, mostly zeros.
                    confusion = np.diag(rng.integers(10**6, 10**8, NUM_CLASSES))
                    confusion[rng.integers(0, NUM_CLASSES, 600), rng.integers(0, NUM_CLASSES, 600)] += (
                        rng.integers(0, 10**5, 600))
                    writer.log_eval(step, miou=float(iou.mean()), iou=iou, model=model, confusion=confusion)
            if step % 1000 == 0:
                writer.flush_media()
    return writer.run_dir


def bench_read(root: Path, steps: int) -> None:
    t0 = time.perf_counter()
    run_dir = _write_long_run(root, steps)
    written = time.perf_counter() - t0
    sizes = {p.name: p.stat().st_size / 2**20 for p in run_dir.glob("*.jsonl")}
    print(f"read: a {steps}-step run with {NUM_CLASSES} classes (written in {written:.1f} s; "
          + ", ".join(f"{k} {v:.1f} MiB" for k, v in sorted(sizes.items())) + ")")
    loads = []
    for _ in range(3):
        t0 = time.perf_counter()
        run = open_run(root, "long")
        loads.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    frame = run.scalars()
    heat = run.class_vectors("bank")
    evals = run.evals()
    access = time.perf_counter() - t0
    print(f"  open_run (everything)    median {statistics.median(loads) * 1000:.0f} ms of 3")
    print(f"  scalars DataFrame {frame.shape} + bank {heat.values.shape} + {len(evals)} evals: "
          f"{access * 1000:.0f} ms")
    idle = []
    for _ in range(20):
        t0 = time.perf_counter()
        run.poll()
        idle.append(time.perf_counter() - t0)
    print(f"  idle poll                median {statistics.median(idle) * 1000:.2f} ms")

    # A live run: the writer adds 20 steps between polls; each poll reads only the new bytes.
    rng = np.random.default_rng(2)
    names = [f"class{i}" for i in range(NUM_CLASSES)]
    writer = RunWriter(root, "long", class_names=names, resume=True)
    polls, refresh = [], []
    step = steps
    for _ in range(50):
        for _ in range(20):
            writer.log_scalars(step, {name: float(rng.random()) for name in SCALARS})
            if step % 10 == 0:
                writer.log_classes(step, _vectors(rng))
            step += 1
        t0 = time.perf_counter()
        update = run.poll()
        polls.append(time.perf_counter() - t0)
        assert update.new["scalars"] == 20
        t0 = time.perf_counter()
        run.scalar("loss")
        run.class_vectors("bank")
        refresh.append(time.perf_counter() - t0)
    writer.finish()
    print(f"  live poll (+20 steps)    median {statistics.median(polls) * 1000:.2f} ms, "
          f"max {max(polls) * 1000:.2f} ms")
    print(f"  then loss + bank arrays  median {statistics.median(refresh) * 1000:.2f} ms "
          f"({len(run.scalar('loss')[0])} steps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps of the write benchmark")
    parser.add_argument("--step-ms", type=float, default=20.0, help="simulated step time (a sleep)")
    parser.add_argument("--size", type=int, default=512, help="sample image side")
    parser.add_argument("--read-steps", type=int, default=40000, help="steps of the run the reader loads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        bench_write(Path(tmp), args.steps, args.step_ms, args.size)
        bench_read(Path(tmp), args.read_steps)


if __name__ == "__main__":
    main()
