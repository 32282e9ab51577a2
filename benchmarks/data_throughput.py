"""Images per second of the training data pipeline (decode + joint transforms + collate) on CamVid.

Measures the labeled stream (with and without the Copy-Paste source view, which decodes a
second image per sample) and the unlabeled stream, with 0 and 2 DataLoader workers, after a
warm-up. Usage::

    .venv/bin/python benchmarks/data_throughput.py [--root ../shared/data/camvid] [--crop 360]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch

from ael.config import DataConfig
from ael.data import build_split_datasets, build_train_loaders


def measure(stream, *, batches: int, warmup: int, batch_size: int) -> float:
    for _ in range(warmup):
        next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * batch_size / (time.perf_counter() - start)


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
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread, "
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
                rate = measure(stream, batches=args.batches, warmup=args.warmup, batch_size=args.batch_size)
                loaders.close()
                print(f"workers={workers}  {name:22s} {rate:7.1f} images/s")


if __name__ == "__main__":
    main()
