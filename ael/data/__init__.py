"""Datasets, splits, joint transforms and loaders.

Every dataset (the synthetic default and each on-disk format) implements
:class:`~ael.data.base.SegmentationDataset` and carries a :class:`~ael.data.info.DatasetInfo`.
The trainer needs three calls::

    datasets = build_split_datasets(cfg.data, cache_dir=...)          # info, labeled, unlabeled, val, split
    streams = build_train_loaders(cfg.data, datasets.labeled, datasets.unlabeled, rank=..., world_size=...,
                                  seed=..., paste_source_scale=needs.paste_source_scale)  # the method's LoaderNeeds
    val_loader = build_val_loader(cfg.data, datasets.val, batch_size=..., rank=..., world_size=...)
"""

from ael.data.base import DatasetError, Sample, SegmentationDataset, SubsetDataset
from ael.data.info import IGNORE_INDEX, DatasetInfo, default_palette
from ael.data.loaders import InfiniteLoader, TrainLoaders, build_train_loaders, build_val_loader
from ael.data.registry import DATASETS, SplitDatasets, build_dataset, build_split_datasets, open_dataset
from ael.data.sampling import InfiniteShardedSampler
from ael.data.splits import Split, read_split, resolve_protocol, write_split
from ael.data.synthetic import SyntheticSegmentation, render_synthetic, synthetic_layout

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "DatasetError",
    "DatasetInfo",
    "InfiniteLoader",
    "InfiniteShardedSampler",
    "Sample",
    "SegmentationDataset",
    "Split",
    "SplitDatasets",
    "SubsetDataset",
    "SyntheticSegmentation",
    "TrainLoaders",
    "build_dataset",
    "build_split_datasets",
    "build_train_loaders",
    "build_val_loader",
    "default_palette",
    "open_dataset",
    "read_split",
    "render_synthetic",
    "resolve_protocol",
    "synthetic_layout",
    "write_split",
]
