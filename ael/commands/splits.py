"""``ael splits``: draw a protocol's labeled/unlabeled split of a dataset on disk and write its lists.

Examples::

    ael splits cityscapes --root data/cityscapes --protocol 1/8 --seed 0 --out splits/cs_1_8
    ael splits camvid --root data/camvid --protocol 46 --out splits/camvid_46

The protocols, the seeded draw and the list format are :mod:`ael.data.splits`'s.
"""

from __future__ import annotations

import argparse
import sys

from ael.data.base import DatasetError
from ael.data.registry import DATASETS, protocol_split
from ael.data.splits import PROTOCOLS, resolve_protocol, write_split

__all__ = ["cli_main"]


def cli_main(argv: list[str]) -> int:
    """``ael splits``: draw a protocol's split for a dataset on disk and write its two lists."""
    named = "; ".join(f"{d}: {', '.join(t)}" for d, t in PROTOCOLS.items() if t)
    parser = argparse.ArgumentParser(
        prog="ael splits",
        description="Draw a labeled/unlabeled split of a dataset on disk and write labeled.txt and "
                    "unlabeled.txt (one id per line).",
        epilog=f"Named protocols: {named}. Any dataset also takes a fraction (1/8, 0.125) or a count.")
    parser.add_argument("dataset", choices=[d for d in DATASETS if d != "synthetic"])
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--protocol", default="1/8", help="protocol name, fraction (1/8, 0.125) or count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="folder for labeled.txt and unlabeled.txt")
    parser.add_argument("--cache-dir", default=None, help="statistics cache when the dataset is read-only")
    args = parser.parse_args(argv)
    try:
        protocol = resolve_protocol(args.dataset, args.protocol)
        split, train = protocol_split(args.dataset, root=args.root, protocol=protocol, seed=args.seed,
                                      cache_dir=args.cache_dir, validate=False)
        labeled_path, unlabeled_path = write_split(split, args.out)
    except DatasetError as err:
        print(f"ael splits: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.dataset} protocol {protocol.name} seed {args.seed}: "
          f"{len(split.labeled)} labeled ids from {protocol.labeled_pool} -> {labeled_path}")
    print(f"{len(split.unlabeled)} unlabeled ids from {train.split} -> {unlabeled_path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
