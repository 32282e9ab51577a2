"""What every dataset says about itself: class names, display palette, ignore index.

A :class:`DatasetInfo` is the one description of a label space shared by the readers, the
trainer (number of classes, ignore index, class names for excluded-class lists), the run store
(written into the manifest) and the viewers (palette).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["IGNORE_INDEX", "DatasetInfo", "default_palette"]

IGNORE_INDEX = 255


def default_palette(num_colors: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct colours, the Pascal VOC bit-interleaved colour map (index 0 is black).

    Args:
        num_colors: how many colours (at most 256).

    Returns:
        ``num_colors`` RGB triples of ints in [0, 255].
    """
    if not 0 <= num_colors <= 256:
        raise ValueError(f"default_palette: num_colors must be in [0, 256], got {num_colors}")
    colors = []
    for index in range(num_colors):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append((r, g, b))
    return tuple(colors)


@dataclass(frozen=True)
class DatasetInfo:
    """The label space of a dataset.

    Attributes:
        name: short dataset name ("synthetic", "voc", "camvid", ...).
        class_names: one name per class, in label order.
        palette: one RGB triple (ints in [0, 255]) per class, for display.
        ignore_index: label value that marks pixels without a class (never a class index).
    """

    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if not self.class_names:
            raise ValueError(f"dataset {self.name!r}: needs at least one class")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"dataset {self.name!r}: duplicate class names in {self.class_names}")
        if len(self.palette) != len(self.class_names):
            raise ValueError(
                f"dataset {self.name!r}: {len(self.palette)} palette colours for "
                f"{len(self.class_names)} classes"
            )
        for color in self.palette:
            if len(color) != 3 or any(not 0 <= int(v) <= 255 for v in color):
                raise ValueError(f"dataset {self.name!r}: palette colour {color} is not an RGB triple")
        if 0 <= self.ignore_index < len(self.class_names):
            raise ValueError(
                f"dataset {self.name!r}: ignore_index {self.ignore_index} collides with a class index"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes (the ignore index is not one)."""
        return len(self.class_names)

    def palette_array(self) -> np.ndarray:
        """A (256, 3) uint8 lookup table: class colours, white for the ignore index, black elsewhere.

        ``palette_array()[label]`` colours an (H, W) label map into (H, W, 3).
        """
        table = np.zeros((256, 3), dtype=np.uint8)
        table[: self.num_classes] = np.asarray(self.palette, dtype=np.uint8)
        if 0 <= self.ignore_index < 256:
            table[self.ignore_index] = 255
        return table

    def class_indices(self, classes: Iterable[int | str]) -> tuple[int, ...]:
        """Resolve class indices or names (as config lists allow) to indices.

        Raises:
            ValueError: naming the first entry that is neither a valid index nor a class name.
        """
        from ael.core import resolve_class_indices

        return tuple(resolve_class_indices(list(classes), self.class_names))

    def to_dict(self) -> dict:
        """Plain JSON-ready form (for run manifests)."""
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "palette": [list(c) for c in self.palette],
            "ignore_index": self.ignore_index,
        }

    @classmethod
    def from_dict(cls, data: dict) -> DatasetInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            class_names=tuple(str(n) for n in data["class_names"]),
            palette=tuple(_rgb(c) for c in data["palette"]),
            ignore_index=int(data.get("ignore_index", IGNORE_INDEX)),
        )


def _rgb(color: Sequence[int]) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in color)
    return (r, g, b)
