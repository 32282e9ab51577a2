"""Datasets, splits, joint transforms and loaders.

Every dataset (the synthetic default and each on-disk format) implements
:class:`~ael.data.base.SegmentationDataset` and carries a :class:`~ael.data.info.DatasetInfo`.
"""

from ael.data.base import DatasetError, Sample, SegmentationDataset, SubsetDataset
from ael.data.info import IGNORE_INDEX, DatasetInfo, default_palette
from ael.data.synthetic import SyntheticSegmentation, render_synthetic, synthetic_layout

__all__ = [
    "IGNORE_INDEX",
    "DatasetError",
    "DatasetInfo",
    "Sample",
    "SegmentationDataset",
    "SubsetDataset",
    "SyntheticSegmentation",
    "default_palette",
    "render_synthetic",
    "synthetic_layout",
]
