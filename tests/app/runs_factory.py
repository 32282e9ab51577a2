"""Run folders written by the real :class:`ael.runs.RunWriter`, for the dashboard tests and benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ael.config import Config, config_to_dict
from ael.data import SyntheticSegmentation
from ael.runs import RunWriter
from ael.runs.schema import MANIFEST_FILE

SCALARS = ("loss/total", "loss/sup", "loss/unsup_labeled", "loss/unsup_mixed", "lr", "throughput_img_s")


def class_rows(step: int, num_classes: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Plausible per-class vectors at ``step``: a bank that rises, more slowly for the tail."""
    c = np.arange(num_classes)
    bank = 1.0 - 0.9 * np.exp(-step / (200.0 * (1 + c)))
    bank = np.clip(bank + 0.01 * rng.standard_normal(num_classes), 0.0, 1.0)
    deficit = 1.0 - bank
    cp = np.exp(np.sqrt(deficit)) / np.exp(np.sqrt(deficit)).sum()
    cm = np.exp(deficit) / np.exp(deficit).sum()
    ratio = deficit / deficit.max()
    freq = 1.0 / (1 + c) ** 2
    freq /= freq.sum()
    pseudo = freq * (0.8 + 0.4 * rng.random(num_classes))
    return {"bank": bank, "copy_paste_prob": cp, "cutmix_prob": cm, "sampling_ratio": ratio,
            "freq_labeled": freq, "freq_pseudo": pseudo / pseudo.sum()}


def write_run(runs_dir: Path, run_id: str, *, steps: int = 200, num_classes: int = 8, classes_every: int = 10,
              eval_every: int = 100, media_every: int = 100, finish: bool = True, seed: int = 0,
              total_steps: int | None = None, method: str | None = None, group: str | None = None) -> RunWriter:
    """Write a synthetic-dataset run: scalars every step, class vectors, evaluations and pseudo-label samples
    (of ``method`` in comparison group ``group`` when given, as ``ael compare`` writes them).

    Returns the writer (closed when ``finish``; still open, for appending, otherwise).
    """
    rng = np.random.default_rng(seed)
    dataset = SyntheticSegmentation("labeled", num_classes=num_classes) if num_classes <= 64 else None
    names = list(dataset.info.class_names) if dataset else [f"class{i:03d}" for i in range(num_classes)]
    palette = (np.asarray(dataset.info.palette) if dataset
               else rng.integers(0, 256, size=(num_classes, 3)))
    cfg = config_to_dict(Config())
    cfg["data"]["synthetic"]["num_classes"] = max(2, min(num_classes, 64))
    writer = RunWriter(runs_dir, run_id, class_names=names, palette=palette, config=cfg, dataset="synthetic",
                       split="64 labeled", total_steps=total_steps or steps, heartbeat_s=0.2, media_queue=64,
                       method=method, group=group)
    for step in range(steps):
        append_step(writer, step, rng, dataset=dataset, classes_every=classes_every, eval_every=eval_every,
                    media_every=media_every)
    if finish:
        writer.finish()
    else:
        writer.flush_media(timeout=30)
        writer.heartbeat()
    return writer


def write_trainer_run(runs_dir: Path, run_id: str, *, iterations: int = 480, eval_every: int = 160,
                      num_classes: int = 8, seed: int = 0) -> RunWriter:
    """A finished run logged as :class:`ael.engine.Trainer` logs: an iteration's scalars at its
    0-based index (0 ... iterations - 1), evaluations and the checkpoint heartbeat at the count of
    iterations done (eval_every, ..., iterations)."""
    rng = np.random.default_rng(seed)
    names = [f"class{i}" for i in range(num_classes)]
    writer = RunWriter(runs_dir, run_id, class_names=names, dataset="synthetic", split="64 labeled",
                       total_steps=iterations, heartbeat_s=0.2)
    for it in range(iterations):
        append_step(writer, it, rng, classes_every=10, eval_every=0, media_every=0)
        done = it + 1
        if done % eval_every == 0 or done == iterations:
            iou = rng.random(num_classes)
            writer.log_eval(done, miou=float(iou.mean()), iou=iou, confusion=rng.integers(0, 50, (num_classes,) * 2),
                            model="teacher")
            writer.heartbeat(done)
    writer.finish()
    return writer


def append_step(writer: RunWriter, step: int, rng: np.random.Generator, *, dataset=None, classes_every: int = 10,
                eval_every: int = 100, media_every: int = 100) -> None:
    """Append what a trainer logs at ``step``."""
    c = writer.num_classes
    base = 2.0 * np.exp(-step / 500.0)
    writer.log_scalars(step, {"loss/total": base + 0.1 * rng.random(), "loss/sup": 0.6 * base,
                              "loss/unsup_labeled": 0.2 * base, "loss/unsup_mixed": 0.2 * base,
                              "lr": 0.01 * (1 - step / 100000) ** 0.9, "throughput_img_s": 40 + rng.random()})
    if step % classes_every == 0:
        writer.log_classes(step, class_rows(step, c, rng))
    if eval_every and step % eval_every == 0 and step > 0:
        iou = np.clip(0.3 + 0.5 * (1 - np.exp(-step / 300)) - 0.02 * np.arange(c) + 0.02 * rng.random(c), 0, 1)
        confusion = rng.integers(0, 50, size=(c, c))
        writer.log_eval(step, miou=float(iou.mean()), iou=iou, confusion=confusion, model="teacher")
    if dataset is not None and media_every and step % media_every == 0:
        sample = dataset.load(step // media_every % len(dataset))
        gt = sample.label
        pseudo = gt.copy()
        pseudo[::7, :] = 0
        conf = np.linspace(0.2, 1.0, gt.size, dtype=np.float32).reshape(gt.shape)
        writer.log_sample(step, "pseudo", images={"image": sample.image}, labels={"gt": gt, "pseudo": pseudo},
                          maps={"confidence": conf})


def damage_run(run_dir: Path) -> None:
    """Tear the scalars file with a garbage line and remove the manifest's class names."""
    with open(run_dir / "scalars.jsonl", "ab") as f:
        f.write(b'{"step": 5, "loss/total": \n{not json}\n')


def make_unknown_schema(run_dir: Path) -> None:
    """Rewrite the manifest with a schema version this code does not read."""
    manifest = json.loads((run_dir / MANIFEST_FILE).read_text())
    manifest["schema_version"] = 999
    (run_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
