"""Images per second of the training data pipeline (decode + joint transforms + collate) on CamVid.

Measures the labeled stream (with and without the Copy-Paste source view, which decodes a
second image per sample) and the unlabeled stream, with 0 and 2 DataLoader workers, after a
warm-up. Besides images/s it prints the CPU time per image of the main process and its
workers together (worker start-up included), a figure that holds on a machine shared with
other jobs, and the load average. Usage::

    .venv/bin/python benchmarks/data_throughput.py [--root ../shared/data/camvid] [--crop 360]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import tempfile
import time

import torch

from ael.config import DataConfig
from ael.data import build_split_datasets, build_train_loaders


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (DataLoader workers, once closed)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(loaders, stream, *, batches: int, warmup: int, batch_size: int) -> tuple[float, float]:
    """(images per second after warm-up, CPU milliseconds per image over the whole run)."""
    cpu_start = cpu_seconds()
    for _ in range(warmup):
        next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    rate = batches * batch_size / (time.perf_counter() - start)
    loaders.close()
    gc.collect()  # joins the workers, so their CPU time is counted
    cpu_ms = (cpu_seconds() - cpu_start) / ((batches + warmup) * batch_size) * 1000
    return rate, cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/work/shared/data/camvid")
    parser.add_argument("--crop", type=int, default=360)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()

    torch.set_num_threads(1)  # as inside a DataLoader worker: one image per core
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, 1 torch thread per process, "
          f"torch {torch.__version__}; CamVid 480x360 JPEG, crop {args.crop}, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as cache:
        for workers in args.workers:
            cfg = DataConfig(dataset="camvid", root=args.root, crop_size=args.crop, num_workers=workers,
                             batch_size_labeled=args.batch_size, batch_size_unlabeled=args.batch_size,
                             pin_memory=False)
            data = build_split_datasets(cfg, cache_dir=cache)
            for name, paste in (("labeled", None), ("labeled+paste-source", (0.1, 2.0)), ("unlabeled", None)):
                loaders = build_train_loaders(cfg, data.labeled, data.unlabeled, seed=0, paste_source_scale=paste)
                stream = loaders.unlabeled if name == "unlabeled" else loaders.labeled
                rate, cpu_ms = measure(loaders, stream, batches=args.batches, warmup=args.warmup,
                                       batch_size=args.batch_size)
                print(f"workers={workers}  {name:22s} {rate:7.1f} images/s  {cpu_ms:6.1f} CPU ms/image  "
                      f"(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
