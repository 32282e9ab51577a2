"""The field's standard split lists, shipped inside the package: U2PL's and UniMatch's, unchanged.

Papers compare on fixed labeled / unlabeled lists, not on draws made at run time. ``ael`` ships
the lists of the two repositories the field reuses (``split_lists/README.md``: sources, commits,
licences) in ``split_lists/lists.tar.xz``, byte for byte, and names each one
``<source>/<dataset>/<name>`` as its repository's folders do:

- ``u2pl/pascal/92`` ... ``u2pl/pascal/1464``: VOC classic (labeled from the 1 464 fine images);
  ``u2pl/pascal/662`` ... ``u2pl/pascal/5291``: VOC blended 1/16 ... 1/2 of the 10 582 ``train_aug``
  images; ``u2pl/cityscapes/186`` ... ``u2pl/cityscapes/1488``: Cityscapes 1/16 ... 1/2 of 2 975.
- ``unimatch/pascal/1_16``, ``1_8``, ``1_4`` and ``unimatch/cityscapes/1_30`` ... ``1_2``: UniMatch's
  own draws. Its classic and ``u2pl_*`` Pascal lists hold U2PL's images: those names are aliases.

In every list the unlabeled images are the rest of the pool (VOC ``train_aug``, Cityscapes
``train``). A line's first field names the image (``2007_000032``, ``JPEGImages/2007_000032.jpg``
or ``leftImg8bit/train/<city>/<stem>_leftImg8bit.png``); it is mapped to the dataset's id here.
:func:`shipped_split` checks a list against a dataset on disk and names what is missing.
"""

from __future__ import annotations

import difflib
import functools
import io
import tarfile
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath

from ael.config import ConfigError
from ael.data.base import DatasetError, SegmentationDataset
from ael.data.splits import Split

__all__ = [
    "ALIASES",
    "SHIPPED",
    "SOURCES",
    "ListEntry",
    "ListSource",
    "ShippedProtocol",
    "is_shipped_name",
    "read_shipped",
    "shipped_protocol",
    "shipped_split",
]

_ARCHIVE = ("split_lists", "lists.tar.xz")


@dataclass(frozen=True)
class ListSource:
    """Where a family of lists comes from."""

    name: str
    url: str
    commit: str
    folder: str
    licence: str
    licence_file: str


SOURCES = {
    "u2pl": ListSource("U2PL", "https://github.com/Haochen-Wang409/U2PL", "ab3d2be", "data/splits",
                       "Apache-2.0", "LICENSE.u2pl"),
    "unimatch": ListSource("UniMatch", "https://github.com/LiheYoung/UniMatch", "0324f3d", "splits",
                           "MIT", "LICENSE.unimatch"),
}
# The repositories' dataset folders -> ael's dataset names, and the pool each list covers.
_DATASET_OF = {"pascal": "voc", "cityscapes": "cityscapes"}
_POOL_OF = {"voc": "train_aug", "cityscapes": "train"}
_TITLE_OF = {"voc": "Pascal VOC", "cityscapes": "Cityscapes"}


@dataclass(frozen=True)
class ShippedProtocol:
    """One shipped list pair.

    Attributes:
        name: ``<source>/<dataset folder>/<name>``, e.g. ``u2pl/cityscapes/372``.
        what: the protocol in words (``classic``, ``blended 1/16``, ``1/8``, ...).
    """

    name: str
    what: str

    @property
    def source(self) -> ListSource:
        return SOURCES[self.name.split("/")[0]]

    @property
    def dataset(self) -> str:
        """ael's dataset name (``voc`` or ``cityscapes``)."""
        return _DATASET_OF[self.name.split("/")[1]]

    @property
    def pool(self) -> str:
        """The dataset split holding both the labeled and the unlabeled images."""
        return _POOL_OF[self.dataset]

    def describe(self) -> str:
        """The list and its origin, as a run records it."""
        s = self.source
        folder = self.name.split("/", 1)[1]
        return (f"{self.name} ({_TITLE_OF[self.dataset]} {self.what}; shipped list from {s.name} {s.url} "
                f"@{s.commit} {s.folder}/{folder}, {s.licence})")


def _catalogue() -> dict[str, ShippedProtocol]:
    rows = [(f"u2pl/pascal/{n}", f"classic: {n} of the 1 464 fine images labeled")
            for n in (92, 183, 366, 732, 1464)]
    rows += [(f"u2pl/pascal/{n}", f"blended {f}: {n} of the 10 582 train_aug images labeled")
             for n, f in ((662, "1/16"), (1323, "1/8"), (2646, "1/4"), (5291, "1/2"))]
    rows += [(f"u2pl/cityscapes/{n}", f"{f}: {n} of the 2 975 train images labeled")
             for n, f in ((186, "1/16"), (372, "1/8"), (744, "1/4"), (1488, "1/2"))]
    rows += [(f"unimatch/pascal/{f}", f"blended {f.replace('_', '/')}: UniMatch's own draw")
             for f in ("1_16", "1_8", "1_4")]
    rows += [(f"unimatch/cityscapes/{f}", f"{f.replace('_', '/')}: UniMatch's own draw")
             for f in ("1_30", "1_16", "1_8", "1_4", "1_2")]
    return {name: ShippedProtocol(name, what) for name, what in rows}


SHIPPED: dict[str, ShippedProtocol] = _catalogue()
#: UniMatch's names for lists that hold exactly U2PL's images.
ALIASES: dict[str, str] = {
    **{f"unimatch/pascal/{n}": f"u2pl/pascal/{n}" for n in (92, 183, 366, 732, 1464)},
    **{f"unimatch/pascal/u2pl_{f}": f"u2pl/pascal/{n}" for f, n in (("1_16", 662), ("1_8", 1323), ("1_4", 2646))},
}


def is_shipped_name(name: object) -> bool:
    """Whether ``name`` is written like a shipped list's name (``<source>/...``)."""
    return isinstance(name, str) and name.split("/", 1)[0] in SOURCES


def shipped_protocol(name: str) -> ShippedProtocol:
    """The shipped list named ``name`` (an alias gives the list it stands for).

    Raises:
        ConfigError: naming ``data.split.protocol``'s value and the closest known names.
    """
    name = name.strip()
    found = SHIPPED.get(ALIASES.get(name, name))
    if found is None:
        known = [*SHIPPED, *ALIASES]
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"data.split.protocol={name!r} is no shipped list; {hint}"
                          f"`ael splits --list` prints them all (e.g. u2pl/cityscapes/372, u2pl/pascal/92)")
    return found


@functools.lru_cache(maxsize=1)
def _archive() -> dict[str, bytes]:
    """Every member of the shipped archive, path -> bytes (read once, about 30 ms)."""
    path = resources.files("ael.data").joinpath(_ARCHIVE[0]).joinpath(_ARCHIVE[1])
    try:
        raw = path.read_bytes()
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:xz") as tar:
            return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    except (OSError, tarfile.TarError, EOFError) as err:
        raise DatasetError(f"{path}: the shipped split lists cannot be read ({err}); reinstall ael") from None


@dataclass(frozen=True)
class ListEntry:
    """One line of a list: the dataset id it names, and the line's first field as written."""

    id: str
    text: str
    line: int


def _entry_id(dataset: str, text: str) -> str:
    name = PurePosixPath(text).name
    if dataset == "cityscapes":
        return name[: -len("_leftImg8bit.png")] if name.endswith("_leftImg8bit.png") else name
    return PurePosixPath(name).stem if "." in name else name


def _parse(protocol: ShippedProtocol, which: str) -> list[ListEntry]:
    member = f"{protocol.name}/{which}.txt"
    data = _archive().get(member)
    if data is None:
        raise DatasetError(f"the shipped archive has no {member}; reinstall ael")
    entries = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
        fields = line.split()
        if fields:
            entries.append(ListEntry(_entry_id(protocol.dataset, fields[0]), fields[0], number))
    return entries


def read_shipped(protocol: ShippedProtocol) -> tuple[list[ListEntry], list[ListEntry]]:
    """The labeled and unlabeled entries of a shipped list, in the list's order."""
    return _parse(protocol, "labeled"), _parse(protocol, "unlabeled")


def _expected_files(dataset: str, entry: ListEntry) -> tuple[str, tuple[str, ...]]:
    """The image and the mask candidates an entry stands for, relative to the dataset folder."""
    if dataset == "cityscapes":
        image = entry.text if entry.text.startswith("leftImg8bit/") else f"leftImg8bit/train/{entry.text}"
        stem = PurePosixPath(image)
        base = f"gtFine/{'/'.join(stem.parts[1:-1])}/{entry.id}_gtFine_"
        return image, (f"{base}labelTrainIds.png", f"{base}labelIds.png")
    return f"JPEGImages/{entry.id}.jpg", (f"SegmentationClass/{entry.id}.png", f"SegmentationClassAug/{entry.id}.png")


def _why_missing(dataset: SegmentationDataset, protocol: ShippedProtocol, entry: ListEntry) -> str:
    root = getattr(dataset, "root", None)
    image, masks = _expected_files(protocol.dataset, entry)
    if root is not None:
        if not (root / image).is_file():
            return f"{image} (image)"
        if not any((root / m).is_file() for m in masks):
            return f"{masks[0]} (mask)"
    return f"{entry.text} (not in {protocol.dataset} {protocol.pool})"


def shipped_split(protocol: ShippedProtocol, dataset: SegmentationDataset, *, shown: int = 5) -> Split:
    """A shipped list as a :class:`Split` of ``dataset`` (its pool), checked against it.

    Raises:
        ConfigError: ``dataset`` is another dataset than the list's.
        DatasetError: listed images the dataset lacks, each named by its missing image or mask
            (the first ``shown`` and a count).
    """
    if dataset.info.name != protocol.dataset:
        raise ConfigError(f"data.split.protocol={protocol.name!r} is a {_TITLE_OF[protocol.dataset]} list "
                          f"but data.dataset is {dataset.info.name!r}")
    labeled, unlabeled = read_shipped(protocol)
    known = set(dataset.ids)
    missing = [e for e in (*labeled, *unlabeled) if e.id not in known]
    if missing:
        where = getattr(dataset, "root", None) or "the dataset folder"
        names = "; ".join(_why_missing(dataset, protocol, e) for e in missing[:shown])
        raise DatasetError(
            f"data.split.protocol={protocol.name}: {len(missing)} of the {len(labeled) + len(unlabeled)} images it "
            f"lists are missing from {protocol.dataset} {protocol.pool} under {where}: {names}"
            + (f" (first {shown} of {len(missing)})" if len(missing) > shown else ""))
    return Split(tuple(e.id for e in labeled), tuple(e.id for e in unlabeled), source=protocol.describe())
