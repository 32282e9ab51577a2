"""Which training images are labeled: seeded draws, split files, and what a run records.

A split is two disjoint id lists and where they came from (``Split.source``). It comes from one
of three places (``data.split`` names exactly one):

- a shipped standard list (``data.split.protocol``: U2PL's and UniMatch's, :mod:`ael.data.shipped`);
- a draw made at run time from a seed (``data.split.labeled`` and ``seed``; a permutation of the
  sorted pool), as the AEL release does;
- list files (``data.split.labeled_list``): ours, one id per line, or the common
  ``img_path mask_path`` format of other repositories.

:func:`write_split` writes ``labeled.txt`` / ``unlabeled.txt`` (one id per line) and
``split_source.txt`` (the source in words), which a run records next to its outputs.

Seeded protocols by name (``labeled_pool`` is the dataset split labeled ids come from; unlabeled ids are
the rest of ``unlabeled_pool``):

- voc: classic ``92``, ``183``, ``366``, ``732``, ``1464`` labeled from the 1 464 fine images,
  unlabeled the rest of the 10 582 ``train_aug`` set (``train`` when SBD is absent); blended
  ``1/32`` .. ``1/2`` (also spelt ``blended-1/16``) of ``train_aug``.
- cityscapes: ``1/32`` = 93, ``1/16`` = 186, ``1/8`` = 372, ``1/4`` = 744, ``1/2`` = 1488 of 2 975.
- ade20k: ``1/32``, ``1/16``, ``1/8`` of 20 210.
- camvid, folder: any fraction (``"1/8"``, ``0.125``) or count (``46``) of the labeled pool.
- synthetic: its own ``labeled`` / ``unlabeled`` streams (sizes in the synthetic config).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ael.data.base import DatasetError, SegmentationDataset
from ael.fs import write_atomic

__all__ = [
    "DEFAULT_LABELED",
    "DEFAULT_SEED",
    "PROTOCOLS",
    "SOURCE_FILE",
    "STANDARD_POOL_SIZES",
    "Protocol",
    "Split",
    "check_split",
    "draw_split",
    "list_pool",
    "read_id_list",
    "read_split",
    "resolve_protocol",
    "write_split",
]

logger = logging.getLogger(__name__)

#: The seeded draw of a config that names no split (``data.split`` all null).
DEFAULT_LABELED = "1/8"
DEFAULT_SEED = 0
#: The file :func:`write_split` writes the split's source into.
SOURCE_FILE = "split_source.txt"
#: Image counts of the standard pools (for listing the seeded protocols without the data).
STANDARD_POOL_SIZES = {("voc", "train"): 1464, ("voc", "train_aug"): 10582, ("cityscapes", "train"): 2975,
                       ("ade20k", "train"): 20210}


@dataclass(frozen=True)
class Protocol:
    """How many labeled images, drawn from which pool.

    Attributes:
        name: protocol name as given ("1/16", "1464", "0.25", ...).
        labeled_pool: dataset split the labeled ids are drawn from.
        unlabeled_pool: dataset split whose other ids are the unlabeled ones (and whose images
            the trainer reads, labeled ones included).
        count: exact number of labeled images, or None to use ``fraction``.
        fraction: share of the labeled pool when ``count`` is None.
        fallback_pool: unlabeled pool to use when ``unlabeled_pool`` is not on disk (VOC without SBD).
    """

    name: str
    labeled_pool: str = "train"
    unlabeled_pool: str = "train"
    count: int | None = None
    fraction: float | None = None
    fallback_pool: str | None = None

    def labeled_count(self, pool_size: int) -> int:
        """Number of labeled images for a labeled pool of ``pool_size`` (at least 1)."""
        if self.count is not None:
            n = self.count
        else:
            assert self.fraction is not None
            n = max(1, int(pool_size * self.fraction + 0.5))
        if n > pool_size:
            raise DatasetError(f"protocol {self.name!r} needs {n} labeled images but the pool has {pool_size}")
        return n


def _voc_protocols() -> dict[str, Protocol]:
    table = {}
    for n in (92, 183, 366, 732, 1464):
        table[str(n)] = Protocol(str(n), labeled_pool="train", unlabeled_pool="train_aug", count=n,
                                 fallback_pool="train")
    for denom in (32, 16, 8, 4, 2):
        proto = Protocol(f"1/{denom}", labeled_pool="train_aug", unlabeled_pool="train_aug",
                         fraction=1.0 / denom)
        table[f"1/{denom}"] = proto
        table[f"blended-1/{denom}"] = proto
    return table


def list_pool(dataset: str) -> Protocol:
    """Where the images of list files are looked up: VOC's ``train_aug`` (``train`` without SBD), else ``train``."""
    if dataset == "voc":
        return Protocol("lists", labeled_pool="train_aug", unlabeled_pool="train_aug", fallback_pool="train")
    return Protocol("lists")


PROTOCOLS: dict[str, dict[str, Protocol]] = {
    "voc": _voc_protocols(),
    "cityscapes": {f"1/{d}": Protocol(f"1/{d}", count=n)
                   for d, n in ((32, 93), (16, 186), (8, 372), (4, 744), (2, 1488))},
    "ade20k": {f"1/{d}": Protocol(f"1/{d}", fraction=1.0 / d) for d in (32, 16, 8)},
    "camvid": {},
    "folder": {},
    "synthetic": {},
}


def resolve_protocol(dataset: str, labeled: str | float | int) -> Protocol:
    """Turn a protocol name, fraction or count into a :class:`Protocol` for ``dataset``.

    Raises:
        DatasetError: naming the value when it is neither a known protocol, a fraction in (0, 1]
            nor a positive count.
    """
    if dataset not in PROTOCOLS:
        raise DatasetError(f"unknown dataset {dataset!r} (expected one of {sorted(PROTOCOLS)})")
    table = PROTOCOLS[dataset]
    key = str(labeled).strip()
    if key in table:
        return table[key]
    pool = "train_aug" if dataset == "voc" else "train"
    if isinstance(labeled, bool):
        raise DatasetError(f"labeled split {labeled!r} is not a protocol, fraction or count")
    if isinstance(labeled, int) or key.isdigit():
        count = int(key)
        if count < 1:
            raise DatasetError(f"labeled count must be >= 1, got {labeled!r}")
        return Protocol(key, labeled_pool=pool, unlabeled_pool=pool, count=count)
    try:
        fraction = float(Fraction(key))
    except (ValueError, ZeroDivisionError):
        known = ", ".join(table) or "none"
        raise DatasetError(
            f"labeled split {labeled!r} for {dataset} is not a protocol name ({known}), "
            f"a fraction like 1/8 or 0.125, nor a count"
        ) from None
    if not 0 < fraction <= 1:
        raise DatasetError(f"labeled fraction {labeled!r} must be in (0, 1]")
    return Protocol(key, labeled_pool=pool, unlabeled_pool=pool, fraction=fraction)


@dataclass(frozen=True)
class Split:
    """Disjoint labeled and unlabeled ids of one training set.

    Attributes:
        labeled, unlabeled: the ids.
        source: where they come from, in words (a shipped list and its origin, a seeded draw,
            list files); not part of equality.
    """

    labeled: tuple[str, ...]
    unlabeled: tuple[str, ...]
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        check_split(self.labeled, self.unlabeled)

    def describe(self) -> str:
        """``<source>: N labeled, M unlabeled`` (the run manifest's ``split``)."""
        return f"{self.source or 'split'}: {len(self.labeled)} labeled, {len(self.unlabeled)} unlabeled"


def check_split(labeled: Sequence[str], unlabeled: Sequence[str],
                dataset: SegmentationDataset | None = None) -> None:
    """Refuse duplicated or overlapping ids, and ids that ``dataset`` does not hold.

    Raises:
        DatasetError: naming the first offending ids.
    """
    for name, ids in (("labeled", labeled), ("unlabeled", unlabeled)):
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dups = [i for i in ids if i in seen or seen.add(i)]
            raise DatasetError(f"{name} ids listed twice: {dups[:5]}")
    overlap = sorted(set(labeled) & set(unlabeled))
    if overlap:
        raise DatasetError(f"{len(overlap)} id(s) are both labeled and unlabeled, first: {overlap[:5]}")
    if not labeled:
        raise DatasetError("the split has no labeled ids")
    if dataset is not None:
        dataset.index_of(list(labeled) + list(unlabeled))  # raises naming the first missing ids


def draw_split(labeled_pool: Iterable[str], count: int, *, seed: int,
               unlabeled_pool: Iterable[str] | None = None) -> Split:
    """Draw ``count`` labeled ids from ``labeled_pool`` with a seeded permutation.

    The pool is sorted first, so the draw depends only on (pool contents, count, seed).
    Unlabeled ids are the rest of ``unlabeled_pool`` (default: the labeled pool), sorted.
    """
    pool = sorted(set(labeled_pool))
    if not 1 <= count <= len(pool):
        raise DatasetError(f"cannot draw {count} labeled ids from a pool of {len(pool)}")
    order = np.random.default_rng(seed).permutation(len(pool))
    labeled = sorted(pool[i] for i in order[:count])
    taken = set(labeled)
    rest = pool if unlabeled_pool is None else sorted(set(unlabeled_pool))
    return Split(labeled=tuple(labeled), unlabeled=tuple(i for i in rest if i not in taken))


def read_id_list(path: str | Path, dataset: SegmentationDataset) -> list[str]:
    """Ids listed in ``path``: one id per line, or ``img_path [mask_path]`` lines.

    Paths are matched to the dataset's files by their longest matching suffix (so lists
    written with another machine's absolute paths work), then by file stem.

    Raises:
        DatasetError: naming the list file and its first entries that match nothing on disk.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: split list not found")
    known = set(dataset.ids)
    id_for_path = getattr(dataset, "id_for_path", None)
    ids, missing = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        entry = fields[0]
        found = entry if entry in known else None
        if found is None and id_for_path is not None:
            found = id_for_path(entry)
        if found is None and Path(entry).stem in known:
            found = Path(entry).stem
        if found is None:
            missing.append(f"line {lineno}: {entry}")
        else:
            ids.append(found)
    if missing:
        hint = f" (none matches: a list of another dataset than {dataset.info.name}?)" if not ids else ""
        raise DatasetError(
            f"{path}: {len(missing)} entr{'y' if len(missing) == 1 else 'ies'} not found in "
            f"{dataset.info.name} ({len(dataset)} images): {'; '.join(missing[:3])}{hint}"
        )
    if not ids:
        raise DatasetError(f"{path}: the split list is empty")
    return ids


def read_split(dataset: SegmentationDataset, labeled_list: str | Path,
               unlabeled_list: str | Path | None = None) -> Split:
    """Read a split; without an unlabeled list, every other id of ``dataset`` is unlabeled."""
    labeled = read_id_list(labeled_list, dataset)
    if unlabeled_list is not None:
        unlabeled = read_id_list(unlabeled_list, dataset)
    else:
        taken = set(labeled)
        unlabeled = [i for i in dataset.ids if i not in taken]
    check_split(labeled, unlabeled, dataset)
    source = f"lists {labeled_list}" + (f" + {unlabeled_list}" if unlabeled_list is not None else "")
    return Split(tuple(labeled), tuple(unlabeled), source=source)


def write_split(split: Split, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``labeled.txt`` and ``unlabeled.txt`` (one id per line) into ``out_dir``, each atomically.

    A split with a ``source`` also gets ``split_source.txt`` (:data:`SOURCE_FILE`): its source
    and counts in one line. Returns the two list paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "labeled.txt", out / "unlabeled.txt")
    for path, ids in zip(paths, (split.labeled, split.unlabeled)):
        write_atomic(path, "".join(f"{i}\n" for i in ids))
    if split.source:
        write_atomic(out / SOURCE_FILE, split.describe() + "\n")
    return paths
