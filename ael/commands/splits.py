"""``ael splits``: list the split protocols, or write one protocol's lists for a dataset on disk.

Examples::

    ael splits --list
    ael splits cityscapes --root data/cityscapes --protocol u2pl/cityscapes/372 --out splits/cs_372
    ael splits cityscapes --root data/cityscapes --protocol 1/8 --seed 0 --out splits/cs_1_8
    ael splits camvid --root data/camvid --protocol 46 --out splits/camvid_46

``--protocol`` takes a shipped standard list (:mod:`ael.data.shipped`, checked against the data)
or a seeded protocol, fraction or count (:mod:`ael.data.splits`, drawn with ``--seed``). The
lists are written in ael's format (one id per line) with ``split_source.txt``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from ael.config import ConfigError
from ael.data.base import DatasetError
from ael.data.registry import DATASETS, protocol_split, shipped_list_split
from ael.data.shipped import ALIASES, SHIPPED, is_shipped_name, read_shipped
from ael.data.splits import DEFAULT_SEED, PROTOCOLS, STANDARD_POOL_SIZES, resolve_protocol, write_split

__all__ = ["ProtocolRow", "cli_main", "protocol_rows"]


@dataclass(frozen=True)
class ProtocolRow:
    """One line of ``ael splits --list``."""

    kind: str  # "shipped" | "alias" | "seeded"
    name: str
    dataset: str
    labeled: int
    unlabeled: int
    what: str


def protocol_rows() -> list[ProtocolRow]:
    """Every shipped list, alias and named seeded protocol, with its labeled / unlabeled counts."""
    rows, counts = [], {}
    for name, protocol in SHIPPED.items():
        labeled, unlabeled = read_shipped(protocol)
        counts[name] = (len(labeled), len(unlabeled))
        s = protocol.source
        rows.append(ProtocolRow("shipped", name, protocol.dataset, *counts[name],
                                f"{protocol.what} ({s.name} @{s.commit}, {s.licence})"))
    for alias, target in ALIASES.items():
        rows.append(ProtocolRow("alias", alias, SHIPPED[target].dataset, *counts[target],
                                f"= {target} (UniMatch's list holds the same images)"))
    for dataset, table in PROTOCOLS.items():
        for name, protocol in table.items():
            if name.startswith("blended-"):  # another spelling of the blended 1/x
                continue
            pool = STANDARD_POOL_SIZES[(dataset, protocol.labeled_pool)]
            labeled = protocol.labeled_count(pool)
            unlabeled = STANDARD_POOL_SIZES[(dataset, protocol.unlabeled_pool)] - labeled
            what = (f"{labeled} of the {pool} {protocol.labeled_pool} images labeled, "
                    f"the rest of {protocol.unlabeled_pool} unlabeled")
            rows.append(ProtocolRow("seeded", name, dataset, labeled, unlabeled, what))
    return rows


def _print_list() -> None:
    rows = protocol_rows()
    width = max(len(r.name) for r in rows) + 2
    sections = (
        ("shipped", "Shipped standard lists (data.split.protocol=NAME; fixed images, as papers report):"),
        ("alias", "Aliases (UniMatch's names for lists that hold U2PL's images):"),
        ("seeded", "Seeded draws made at run time, as the AEL release does "
                   "(data.split.labeled=NAME data.split.seed=S):"),
    )
    for kind, title in sections:
        print(title)
        print(f"  {'NAME'.ljust(width)}{'DATASET'.ljust(12)}{'LABELED':>8} {'UNLABELED':>9}  WHAT")
        for r in rows:
            if r.kind == kind:
                print(f"  {r.name.ljust(width)}{r.dataset.ljust(12)}{r.labeled:>8} {r.unlabeled:>9}  {r.what}")
        print()
    print("  camvid, folder, and every dataset above: any fraction (data.split.labeled=1/8 or 0.125) or count "
          "(data.split.labeled=46) of the train images, drawn with data.split.seed")


def cli_main(argv: list[str]) -> int:
    """``ael splits``: list the protocols, or write one protocol's two lists for a dataset on disk."""
    parser = argparse.ArgumentParser(
        prog="ael splits",
        description="List the split protocols (--list), or write labeled.txt and unlabeled.txt (one id per "
                    "line) and split_source.txt for a protocol of a dataset on disk.",
        epilog="Protocols: a shipped list (u2pl/cityscapes/372, u2pl/pascal/92, unimatch/cityscapes/1_8, ...) "
               "or a seeded protocol name, fraction (1/8, 0.125) or count; `ael splits --list` prints them all.")
    parser.add_argument("dataset", nargs="?", choices=[d for d in DATASETS if d != "synthetic"])
    parser.add_argument("--list", action="store_true", help="print every shipped and seeded protocol and exit")
    parser.add_argument("--root", help="dataset folder")
    parser.add_argument("--protocol", default="1/8",
                        help="shipped list name, or seeded protocol name, fraction or count (default 1/8)")
    parser.add_argument("--seed", type=int, default=None, help=f"seed of a seeded draw (default {DEFAULT_SEED})")
    parser.add_argument("--out", help="folder for labeled.txt, unlabeled.txt and split_source.txt")
    parser.add_argument("--cache-dir", default=None, help="statistics cache when the dataset is read-only")
    args = parser.parse_args(argv)
    if args.list:
        _print_list()
        return 0
    if args.dataset is None or args.root is None or args.out is None:
        parser.error("give DATASET, --root and --out (or --list)")
    try:
        if is_shipped_name(args.protocol):
            if args.seed is not None:
                raise ConfigError(f"--seed applies to seeded draws, not to the shipped list {args.protocol}")
            split, train = shipped_list_split(args.dataset, root=args.root, protocol=args.protocol,
                                              cache_dir=args.cache_dir, validate=False)
        else:
            protocol = resolve_protocol(args.dataset, args.protocol)
            seed = DEFAULT_SEED if args.seed is None else args.seed
            split, train = protocol_split(args.dataset, root=args.root, protocol=protocol, seed=seed,
                                          cache_dir=args.cache_dir, validate=False)
        labeled_path, unlabeled_path = write_split(split, args.out)
    except (DatasetError, ConfigError) as err:
        print(f"ael splits: error: {err}", file=sys.stderr)
        return 2
    print(split.source)
    print(f"{len(split.labeled)} labeled ids -> {labeled_path}")
    print(f"{len(split.unlabeled)} unlabeled ids from {train.split} -> {unlabeled_path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
