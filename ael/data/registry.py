"""Open any dataset by name, and the thin adapters that read ``DataConfig``.

``open_dataset`` takes explicit arguments; ``build_dataset`` and ``build_split_datasets`` are
the only functions here that read a config section.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ael.config import ConfigError, DataConfig, SplitConfig
from ael.data.ade20k import open_ade20k
from ael.data.base import DatasetError, SegmentationDataset
from ael.data.camvid import open_camvid
from ael.data.cityscapes import open_cityscapes
from ael.data.folder import open_folder
from ael.data.info import DatasetInfo
from ael.data.shipped import shipped_protocol, shipped_split
from ael.data.splits import (
    DEFAULT_LABELED,
    DEFAULT_SEED,
    Protocol,
    Split,
    check_split,
    draw_split,
    list_pool,
    read_split,
    resolve_protocol,
)
from ael.data.synthetic import SyntheticSegmentation
from ael.data.voc import open_voc

__all__ = [
    "DATASETS",
    "SplitDatasets",
    "build_dataset",
    "build_split_datasets",
    "labelable_ids",
    "open_dataset",
    "protocol_split",
    "shipped_list_split",
]

logger = logging.getLogger(__name__)

_OPENERS: dict[str, Callable[..., SegmentationDataset]] = {
    "voc": open_voc,
    "cityscapes": open_cityscapes,
    "ade20k": open_ade20k,
    "camvid": open_camvid,
    "folder": open_folder,
}
DATASETS = ("synthetic", *_OPENERS)


def open_dataset(name: str, *, split: str, root: str | Path | None = None, cache_dir: str | Path | None = None,
                 validate: bool = True, **synthetic: int | float) -> SegmentationDataset:
    """Open split ``split`` of dataset ``name``.

    Args:
        name: one of :data:`DATASETS`.
        split: "train" / "val" (every format), "train_aug" (voc), "test" where a format has one,
            "labeled" / "unlabeled" (synthetic).
        root: the dataset folder (not used by the synthetic set).
        cache_dir: statistics cache when ``root`` is read-only.
        validate: run the validation pass at open (see :mod:`ael.data.disk`).
        **synthetic: keyword arguments of :class:`~ael.data.synthetic.SyntheticSegmentation`.
    """
    if name == "synthetic":
        return SyntheticSegmentation(split, **synthetic)
    if name not in _OPENERS:
        raise DatasetError(f"unknown dataset {name!r} (expected one of {DATASETS})")
    if root is None:
        raise DatasetError(f"dataset {name!r} needs its folder (data.root)")
    if not Path(root).is_dir():
        raise DatasetError(f"{root}: {name} dataset folder not found")
    return _OPENERS[name](root, split, cache_dir=cache_dir, validate=validate)


def labelable_ids(dataset: SegmentationDataset) -> list[str]:
    """Ids that have a mask (a folder dataset's train split may hold unlabeled images)."""
    mask = getattr(dataset, "labeled_mask", None)
    if mask is None:
        return list(dataset.ids)
    return [i for i, has in zip(dataset.ids, mask) if has]


def _open_training_pool(name: str, *, root: str | Path, protocol: Protocol, cache_dir: str | Path | None,
                        validate: bool) -> SegmentationDataset:
    try:
        return open_dataset(name, root=root, split=protocol.unlabeled_pool, cache_dir=cache_dir,
                            validate=validate)
    except DatasetError as err:
        if protocol.fallback_pool is None:
            raise
        logger.warning("%s; unlabeled images come from %s instead", err, protocol.fallback_pool)
        return open_dataset(name, root=root, split=protocol.fallback_pool, cache_dir=cache_dir,
                            validate=validate)


def protocol_split(name: str, *, root: str | Path, protocol: Protocol, seed: int,
                   cache_dir: str | Path | None = None, validate: bool = True
                   ) -> tuple[Split, SegmentationDataset]:
    """Draw ``protocol``'s split for an on-disk dataset.

    Returns:
        The split, and the training dataset that holds both its labeled and unlabeled ids.
    """
    train = _open_training_pool(name, root=root, protocol=protocol, cache_dir=cache_dir, validate=validate)
    if protocol.labeled_pool == getattr(train, "split", None):
        labeled_pool = train
    else:
        labeled_pool = open_dataset(name, root=root, split=protocol.labeled_pool, cache_dir=cache_dir,
                                    validate=False)
    pool_ids = labelable_ids(labeled_pool)
    if not pool_ids:
        raise DatasetError(f"{name} {protocol.labeled_pool}: no image has a mask, nothing can be labeled")
    split = draw_split(pool_ids, protocol.labeled_count(len(pool_ids)), seed=seed, unlabeled_pool=train.ids)
    check_split(split.labeled, split.unlabeled, train)
    source = f"seeded draw {protocol.name} seed {seed} ({name} {protocol.labeled_pool} -> {train.split})"
    return dataclasses.replace(split, source=source), train


def shipped_list_split(name: str, *, root: str | Path, protocol: str, cache_dir: str | Path | None = None,
                       validate: bool = True) -> tuple[Split, SegmentationDataset]:
    """A shipped standard list (:mod:`ael.data.shipped`) for an on-disk dataset, checked against it.

    Returns:
        The split, and the training dataset (the list's pool) that holds its ids.

    Raises:
        ConfigError: an unknown list, or a list of another dataset.
        DatasetError: images or masks the list names that are not on disk (named).
    """
    shipped = shipped_protocol(protocol)
    if shipped.dataset != name:
        raise ConfigError(f"data.split.protocol={protocol!r} is a list of {shipped.dataset}, but data.dataset is "
                          f"{name!r}")
    train = open_dataset(name, root=root, split=shipped.pool, cache_dir=cache_dir, validate=validate)
    split = shipped_split(shipped, train)
    if protocol.strip() != shipped.name:  # an alias: record the name asked for too
        split = dataclasses.replace(split, source=f"{protocol.strip()} = {split.source}")
    return split, train


@dataclass(frozen=True)
class SplitDatasets:
    """Everything the trainer reads.

    Attributes:
        info: the label space.
        labeled: labeled training images (index i = position in ``split.labeled``).
        unlabeled: unlabeled training images, without labels unless asked for (index i =
            position in ``split.unlabeled``: the CutMix bank's column).
        val: validation images with labels.
        split: the ids (record them with the run: :func:`ael.data.splits.write_split`).

    ``labeled.pixel_frequencies()`` gives the (C,) class pixel shares of the training pool.
    """

    info: DatasetInfo
    labeled: SegmentationDataset
    unlabeled: SegmentationDataset
    val: SegmentationDataset
    split: Split


def _synthetic_kwargs(cfg: DataConfig) -> dict[str, int | float]:
    s = cfg.synthetic
    return {"num_labeled": s.num_labeled, "num_unlabeled": s.num_unlabeled, "num_val": s.num_val,
            "num_classes": s.num_classes, "image_size": s.image_size, "tail_power": s.tail_power,
            "seed": s.seed}


def build_dataset(data_cfg: DataConfig, split: str, *, cache_dir: str | Path | None = None,
                  validate: bool | None = None) -> SegmentationDataset:
    """Open split ``split`` of the dataset ``data_cfg`` names (thin adapter over :func:`open_dataset`).

    ``cache_dir`` and ``validate`` default to ``data_cfg.cache_dir`` and ``data_cfg.validate``.
    """
    return open_dataset(data_cfg.dataset, split=split, root=data_cfg.root,
                        cache_dir=cache_dir if cache_dir is not None else data_cfg.cache_dir,
                        validate=data_cfg.validate if validate is None else validate,
                        **(_synthetic_kwargs(data_cfg) if data_cfg.dataset == "synthetic" else {}))


def _synthetic_split(split_cfg: SplitConfig, train: SegmentationDataset) -> Split:
    for key in ("protocol", "labeled", "seed"):
        if getattr(split_cfg, key) is not None:
            raise ConfigError(f"data.split.{key}={getattr(split_cfg, key)!r} does not apply to the synthetic dataset: "
                              "its labeled and unlabeled images are data.synthetic.num_labeled / num_unlabeled "
                              "(data.split.labeled_list picks others)")
    if split_cfg.labeled_list is not None:
        return read_split(train, split_cfg.labeled_list, split_cfg.unlabeled_list)
    return Split(labeled=tuple(i for i in train.ids if i.startswith("labeled/")),
                 unlabeled=tuple(i for i in train.ids if i.startswith("unlabeled/")), source="synthetic streams")


def _disk_split(name: str, root: str, split_cfg: SplitConfig, *, cache_dir: str | Path | None,
                validate: bool) -> tuple[Split, SegmentationDataset]:
    """The split ``data.split`` names (a shipped list, list files or a seeded draw) and its training pool."""
    if split_cfg.protocol is not None:
        return shipped_list_split(name, root=root, protocol=split_cfg.protocol, cache_dir=cache_dir,
                                  validate=validate)
    if split_cfg.labeled_list is not None:
        train = _open_training_pool(name, root=root, protocol=list_pool(name), cache_dir=cache_dir, validate=validate)
        split = read_split(train, split_cfg.labeled_list, split_cfg.unlabeled_list)
        unlabeled_only = set(train.ids) - set(labelable_ids(train))
        missing_mask = [i for i in split.labeled if i in unlabeled_only]
        if missing_mask:
            raise DatasetError(f"{split_cfg.labeled_list}: labeled ids without a mask: {missing_mask[:5]}")
        return split, train
    labeled = DEFAULT_LABELED if split_cfg.labeled is None else split_cfg.labeled
    seed = DEFAULT_SEED if split_cfg.seed is None else split_cfg.seed
    return protocol_split(name, root=root, protocol=resolve_protocol(name, labeled), seed=seed, cache_dir=cache_dir,
                          validate=validate)


def build_split_datasets(data_cfg: DataConfig, *, cache_dir: str | Path | None = None,
                         validate: bool | None = None, unlabeled_labels: bool = False) -> SplitDatasets:
    """The labeled, unlabeled and validation datasets of a run, with its split.

    The split comes from ``data_cfg.split``: a shipped standard list (``protocol``, checked
    against the data), list files (ours or ``img_path mask_path`` lists), or a seeded draw
    (``labeled`` with ``seed``; ``1/8`` seed 0 when nothing is named). The synthetic set uses its
    own labeled/unlabeled streams unless list files are given.

    Args:
        data_cfg: the data section of the config.
        cache_dir: statistics cache when the dataset folder is read-only (default ``data_cfg.cache_dir``).
        validate: run the validation pass at open (default ``data_cfg.validate``).
        unlabeled_labels: keep labels on unlabeled images when every one has a mask (only for
            diagnostics such as pseudo-label accuracy; training never needs them).
    """
    name = data_cfg.dataset
    split_cfg = data_cfg.split
    cache_dir = cache_dir if cache_dir is not None else data_cfg.cache_dir
    validate = data_cfg.validate if validate is None else validate
    if name == "synthetic":
        train = build_dataset(data_cfg, "train")
        split = _synthetic_split(split_cfg, train)
    else:
        assert data_cfg.root is not None
        split, train = _disk_split(name, data_cfg.root, split_cfg, cache_dir=cache_dir, validate=validate)
    val = build_dataset(data_cfg, "val", cache_dir=cache_dir, validate=validate)
    logger.info("%s: %d labeled, %d unlabeled, %d val images", name, len(split.labeled), len(split.unlabeled),
                len(val))
    return SplitDatasets(
        info=train.info,
        labeled=train.subset(split.labeled),
        # Labels only where every unlabeled image has one (diagnostics need all or none).
        unlabeled=train.subset(split.unlabeled, with_labels=unlabeled_labels
                               and set(split.unlabeled) <= set(labelable_ids(train))),
        val=val,
        split=split,
    )

