"""The one interface every dataset reader implements, and id-based subsets of it.

A dataset is a sequence of :class:`Sample` (raw uint8 image, label map in train ids or None,
its position and its id), plus a :class:`~ael.data.info.DatasetInfo` and the class pixel
frequencies. Transforms and loaders (``transforms.py``, ``loaders.py``) only see this
interface, so the synthetic default and every on-disk format look the same to the trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch.utils.data

from ael.data.info import DatasetInfo

__all__ = ["DatasetError", "Sample", "SegmentationDataset", "SubsetDataset"]


class DatasetError(ValueError):
    """A problem with a dataset on disk; the message names the file, list or value at fault."""


@dataclass(frozen=True)
class Sample:
    """One raw example, before any transform.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        label: (H, W) uint8 train ids in [0, C) or the ignore index; None for unlabeled images.
        index: position of the example in the dataset it was loaded from.
        id: stable identifier (what split files list).
    """

    image: np.ndarray
    label: np.ndarray | None
    index: int
    id: str


class SegmentationDataset(torch.utils.data.Dataset):
    """Base class: a fixed list of ids, each loadable as a :class:`Sample`.

    Subclasses set ``info`` and ``ids`` and implement :meth:`load` and
    :meth:`pixel_frequencies`.
    """

    info: DatasetInfo
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        return self.load(index)

    def load(self, index: int) -> Sample:
        """The raw sample at ``index`` (0 <= index < len(self))."""
        raise NotImplementedError

    def pixel_frequencies(self) -> np.ndarray:
        """(C,) float64 share of labeled (non-ignored) pixels per class; sums to 1."""
        raise NotImplementedError

    def index_of(self, ids: Sequence[str]) -> list[int]:
        """Positions of ``ids``.

        Raises:
            DatasetError: naming the first ids that this dataset does not hold.
        """
        lookup = getattr(self, "_id_lookup", None)
        if lookup is None:
            lookup = {sample_id: i for i, sample_id in enumerate(self.ids)}
            self._id_lookup = lookup
        missing = [i for i in ids if i not in lookup]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise DatasetError(
                f"{len(missing)} id(s) are not in dataset {self.info.name!r} "
                f"({len(self.ids)} images): {shown}{more}"
            )
        return [lookup[i] for i in ids]

    def subset(self, ids: Sequence[str], *, with_labels: bool = True) -> SubsetDataset:
        """A view on the examples named by ``ids``, re-indexed 0..len(ids)-1 in that order."""
        return SubsetDataset(self, self.index_of(ids), with_labels=with_labels)


class SubsetDataset(SegmentationDataset):
    """A re-indexed view on a parent dataset (e.g. the labeled or unlabeled part of a split).

    Args:
        parent: the dataset viewed.
        indices: parent positions, in the order of the view.
        with_labels: False drops labels (unlabeled stream), so no code can peek at them.
    """

    def __init__(self, parent: SegmentationDataset, indices: Sequence[int], *, with_labels: bool = True):
        self.parent = parent
        self.indices = tuple(int(i) for i in indices)
        self.with_labels = with_labels
        self.info = parent.info
        self.ids = tuple(parent.ids[i] for i in self.indices)

    def load(self, index: int) -> Sample:
        sample = self.parent.load(self.indices[index])
        label = sample.label if self.with_labels else None
        return Sample(image=sample.image, label=label, index=index, id=sample.id)

    def pixel_frequencies(self) -> np.ndarray:
        return self.parent.pixel_frequencies()
