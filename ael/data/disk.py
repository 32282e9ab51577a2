"""Image/mask pairs on disk: loading, the open-time validation pass, cached class statistics.

Every on-disk format (``voc.py``, ``cityscapes.py``, ``ade20k.py``, ``camvid.py``,
``folder.py``) only lists its pairs and says how raw mask values map to train ids (a 256-entry
lookup table); this module does the rest the same way for all of them:

- opening checks that every listed file exists and is inside the dataset folder;
- the validation pass reads image and mask headers (size, mode), checks that JPEG/PNG files end
  with their end marker (a truncated copy is caught without decoding), that mask and image sizes
  agree, and decodes each mask once to count its values: values outside the classes are an
  error that names the file, and the counts give the class pixel frequencies;
- per-file results are cached (keyed by size and modification time) in ``<root>/.ael_cache``,
  or in a cache folder given by the caller when the dataset folder is read-only, so a second
  opening costs one ``stat`` per file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ael.data.base import DatasetError, Sample, SegmentationDataset
from ael.data.info import IGNORE_INDEX, DatasetInfo
from ael.fs import write_atomic

__all__ = [
    "INVALID",
    "FilePair",
    "FileSegmentationDataset",
    "identity_lut",
    "read_image",
    "read_mask",
    "resolve_inside",
]

logger = logging.getLogger(__name__)

INVALID = -1  # lookup-table value of a raw mask value that is neither a class nor ignore
_CACHE_VERSION = 1
_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"


def identity_lut(num_classes: int, ignore_values: Sequence[int] = (IGNORE_INDEX,)) -> np.ndarray:
    """(256,) int16 table: 0..C-1 map to themselves, ``ignore_values`` to 255, the rest invalid."""
    lut = np.full(256, INVALID, dtype=np.int16)
    lut[:num_classes] = np.arange(num_classes)
    for v in ignore_values:
        lut[v] = IGNORE_INDEX
    return lut


def resolve_inside(root: Path, text: str) -> Path:
    """Resolve a path as list files write it, relative to ``root`` and never outside it.

    List files written elsewhere often carry absolute paths or a leading folder of another
    machine (``/SegNet/CamVid/train/x.png``): the longest suffix of the path that exists under
    ``root`` wins. Relative paths are taken from ``root``.

    Raises:
        DatasetError: when the path would leave ``root`` (``..``) or names nothing under it.
    """
    parts = [p for p in Path(text.replace("\\", "/")).parts if p not in ("/", "")]
    if ".." in parts:
        raise DatasetError(f"{text!r}: list paths may not contain '..' (they must stay inside {root})")
    if not Path(text).is_absolute():
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    for start in range(len(parts)):
        candidate = root.joinpath(*parts[start:])
        if candidate.exists():
            return candidate
    return root.joinpath(*parts)  # does not exist: reported by the existence check


@dataclass(frozen=True)
class FilePair:
    """One example on disk.

    Attributes:
        id: stable identifier (what split files list).
        image: path to the RGB image.
        mask: path to the label map, or None for an unlabeled image.
        lut: (256,) int16 raw mask value -> train id (255 ignore, -1 invalid); None: identity.
    """

    id: str
    image: Path
    mask: Path | None = None
    lut: np.ndarray | None = None


def read_image(path: Path) -> np.ndarray:
    """Decode an RGB image to (H, W, 3) uint8; errors name the file."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))  # writable: torch.from_numpy needs it
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DatasetError(f"{path}: cannot read image ({err})") from err


def read_mask(path: Path) -> np.ndarray:
    """Decode a label map to (H, W) uint8 raw values (palette PNGs give their indices)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise DatasetError(
                    f"{path}: mask has mode {im.mode!r}; expected a single-channel index image (L or P)"
                )
            raw = np.asarray(im)
            if raw.dtype == bool:  # 1-bit PNG: a binary mask, classes 0 and 1
                raw = raw.astype(np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DatasetError(f"{path}: cannot read mask ({err})") from err
    if raw.dtype != np.uint8:
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise DatasetError(f"{path}: mask values span {raw.min()}..{raw.max()}, beyond 0..255")
        raw = raw.astype(np.uint8)
    return raw


def _ends_cleanly(path: Path, fmt: str | None) -> bool:
    """False when a JPEG/PNG lacks its end marker (a truncated file)."""
    marker = {"JPEG": _JPEG_END, "PNG": _PNG_END}.get(fmt or "")
    if marker is None:
        return True
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64))
        tail = fh.read()
    # JPEG writers may pad after EOI; search the last bytes instead of requiring the very end.
    return marker in tail


def _header(path: Path, kind: str) -> tuple[int, int]:
    """(width, height) from the header, after the truncation check; errors name the file."""
    try:
        with Image.open(path) as im:
            size, fmt = im.size, im.format
    except (OSError, UnidentifiedImageError) as err:
        raise DatasetError(f"{path}: unreadable {kind} ({err})") from err
    if not _ends_cleanly(path, fmt):
        # Some writers append data after the end marker: only a failed decode proves truncation.
        try:
            with Image.open(path) as im:
                im.load()
        except (OSError, ValueError) as err:
            raise DatasetError(f"{path}: truncated {kind} ({fmt} end marker missing: {err})") from err
    return size


def _file_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _check_pair(pair: FilePair) -> dict:
    """Validate one pair; returns its cache record (sizes and raw mask value counts)."""
    width, height = _header(pair.image, "image")
    record: dict = {"image": _file_key(pair.image), "size": [width, height]}
    if pair.mask is not None:
        mw, mh = _header(pair.mask, "mask")
        if (mw, mh) != (width, height):
            raise DatasetError(
                f"{pair.mask}: mask is {mw}x{mh} but its image {pair.image.name} is {width}x{height}"
            )
        raw = read_mask(pair.mask)
        counts = np.bincount(raw.ravel(), minlength=256)
        record["mask"] = _file_key(pair.mask)
        record["counts"] = {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
    return record


class FileSegmentationDataset(SegmentationDataset):
    """Pairs of files behind the common dataset interface.

    Args:
        info: the label space.
        pairs: the examples, in a fixed order.
        root: the dataset folder (paths must stay inside it; cache lives in it when writable).
        split: split name, for messages and cache file names.
        cache_dir: where statistics are cached when ``root`` is read-only (default:
            ``~/.cache/ael/datasets``).
        validate: run the validation pass now (errors at open, not hours into training).
            False skips it; statistics are then computed on the first :meth:`pixel_frequencies`.
        workers: threads for the validation pass.
    """

    def __init__(self, *, info: DatasetInfo, pairs: Sequence[FilePair], root: str | Path, split: str,
                 cache_dir: str | Path | None = None, validate: bool = True, workers: int | None = None):
        self.info = info
        self.root = Path(root)
        self.split = split
        self.pairs = tuple(pairs)
        self.ids = tuple(p.id for p in self.pairs)
        if len(set(self.ids)) != len(self.ids):
            seen: set[str] = set()
            dup = next(i for i in self.ids if i in seen or seen.add(i))
            raise DatasetError(f"{info.name} {split}: id {dup!r} is listed twice")
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._workers = workers or min(8, (os.cpu_count() or 1) * 2)
        self._records: dict[str, dict] | None = None
        self._check_exists()
        if validate:
            self.validate()

    # -- loading ------------------------------------------------------------------------------

    @property
    def labeled_mask(self) -> np.ndarray:
        """(N,) bool: which examples have a mask."""
        return np.array([p.mask is not None for p in self.pairs], dtype=bool)

    def load(self, index: int) -> Sample:
        pair = self.pairs[index]
        image = read_image(pair.image)
        label = None
        if pair.mask is not None:
            label = self._to_train_ids(read_mask(pair.mask), pair)
            if label.shape != image.shape[:2]:
                raise DatasetError(
                    f"{pair.mask}: mask is {label.shape[1]}x{label.shape[0]} but its image "
                    f"{pair.image.name} is {image.shape[1]}x{image.shape[0]}"
                )
        return Sample(image=image, label=label, index=index, id=pair.id)

    def _to_train_ids(self, raw: np.ndarray, pair: FilePair) -> np.ndarray:
        lut = pair.lut if pair.lut is not None else identity_lut(self.info.num_classes)
        label = lut[raw]
        if (label < 0).any():
            bad = np.unique(raw[label < 0])[:8].tolist()
            raise DatasetError(f"{pair.mask}: mask values {bad} are neither classes nor ignore")
        return label.astype(np.uint8)

    def id_for_path(self, text: str) -> str | None:
        """The id of the example whose image (or mask) is ``text``, as list files write it."""
        lookup = getattr(self, "_path_lookup", None)
        if lookup is None:
            lookup = {}
            for p in self.pairs:
                for path in (p.image, p.mask):
                    if path is not None:
                        rel = path.relative_to(self.root).as_posix()
                        lookup[rel] = p.id
            self._path_lookup = lookup
        parts = [p for p in Path(text.replace("\\", "/")).parts if p not in ("/", "")]
        for start in range(len(parts)):
            hit = lookup.get("/".join(parts[start:]))
            if hit is not None:
                return hit
        return None

    # -- validation and statistics --------------------------------------------------------------

    def _check_exists(self) -> None:
        missing = []
        for p in self.pairs:
            for path in (p.image, p.mask):
                if path is None:
                    continue
                if not _is_inside(path, self.root):
                    raise DatasetError(f"{path}: outside the dataset folder {self.root}")
                if not path.is_file():
                    missing.append(path)
        if missing:
            shown = ", ".join(str(m) for m in missing[:3])
            raise DatasetError(
                f"{self.info.name} {self.split}: {len(missing)} listed file(s) missing, first: {shown}"
            )

    def _cache_path(self) -> Path:
        digest = hashlib.sha1(
            f"{self.root.resolve()}|{self.info.name}|{self.split}".encode()
        ).hexdigest()[:12]
        name = f"{self.info.name}-{self.split}-{digest}.json"
        if self._cache_dir is not None:
            return self._cache_dir / name
        own = self.root / ".ael_cache"
        if os.access(self.root, os.W_OK) and (not own.exists() or os.access(own, os.W_OK)):
            return own / name
        return Path.home() / ".cache" / "ael" / "datasets" / name

    def _load_cache(self, path: Path) -> dict[str, dict]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
            return {}
        files = data.get("files")
        return files if isinstance(files, dict) else {}

    def _save_cache(self, path: Path, records: dict[str, dict]) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps({"version": _CACHE_VERSION, "files": records}))
        except OSError as err:
            logger.warning("could not write the dataset cache %s (%s); statistics will be recomputed", path, err)

    def _is_fresh(self, record: dict | None, pair: FilePair) -> bool:
        if record is None or record.get("image") != _file_key(pair.image):
            return False
        if pair.mask is None:
            return "mask" not in record
        return record.get("mask") == _file_key(pair.mask)

    def validate(self) -> None:
        """Check every pair (headers, truncation, sizes, mask values), reusing cached results.

        Raises:
            DatasetError: naming the first bad file.
        """
        if self._records is not None:
            return
        cache_path = self._cache_path()
        cached = self._load_cache(cache_path)
        records: dict[str, dict] = {}
        todo = []
        for pair in self.pairs:
            key = pair.image.relative_to(self.root).as_posix()
            record = cached.get(key)
            if self._is_fresh(record, pair):
                records[key] = record
            else:
                todo.append((key, pair))
        if todo:
            logger.info("%s %s: checking %d of %d files (cache: %s)", self.info.name, self.split,
                        len(todo), len(self.pairs), cache_path)
            with ThreadPoolExecutor(self._workers) as pool:
                for (key, _), record in zip(todo, pool.map(lambda kp: _check_pair(kp[1]), todo)):
                    records[key] = record
            self._save_cache(cache_path, {**cached, **records})
        for pair in self.pairs:
            if pair.mask is None:
                continue
            counts = records[pair.image.relative_to(self.root).as_posix()]["counts"]
            lut = pair.lut if pair.lut is not None else identity_lut(self.info.num_classes)
            bad = sorted(int(v) for v in counts if lut[int(v)] == INVALID)
            if bad:
                raise DatasetError(
                    f"{pair.mask}: mask values {bad[:8]} are outside the {self.info.num_classes} classes "
                    f"of {self.info.name} (and not the ignore value)"
                )
        self._records = records

    def raw_counts(self) -> np.ndarray:
        """(C,) int64 labeled pixel count per class over every mask of the split."""
        self.validate()
        assert self._records is not None
        total = np.zeros(self.info.num_classes, dtype=np.int64)
        for pair in self.pairs:
            if pair.mask is None:
                continue
            counts = self._records[pair.image.relative_to(self.root).as_posix()]["counts"]
            lut = pair.lut if pair.lut is not None else identity_lut(self.info.num_classes)
            for value, n in counts.items():
                train_id = int(lut[int(value)])
                if 0 <= train_id < self.info.num_classes:
                    total[train_id] += n
        return total

    def pixel_frequencies(self) -> np.ndarray:
        """(C,) float64 share of labeled pixels per class over the split (cached on disk)."""
        counts = self.raw_counts().astype(np.float64)
        if counts.sum() == 0:
            return np.full(self.info.num_classes, 1.0 / self.info.num_classes)
        return counts / counts.sum()


def _is_inside(path: Path, root: Path) -> bool:
    try:
        Path(os.path.normpath(path)).relative_to(os.path.normpath(root))
    except ValueError:
        return False
    return True
