"""The one tail-class rule: which classes count as "tail" given their pixel frequencies.

A class is tail when its share of the labeled pixels is below a quarter (:data:`TAIL_SHARE`) of
the uniform share ``1 / C``. The trainer's results, the notebooks' analysis and monitor and the
dashboard all ask this module, so a "tail class" means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["TAIL_SHARE", "tail_boundary", "tail_classes", "tail_indices"]

#: A class is "tail" when its pixel share is below this fraction of the uniform share ``1 / C``.
TAIL_SHARE = 0.25


def tail_boundary(num_classes: int) -> float:
    """The pixel share below which a class is tail: ``TAIL_SHARE / C`` (0 without classes)."""
    return TAIL_SHARE / num_classes if num_classes > 0 else 0.0


def tail_classes(frequencies: Sequence[float]) -> list[bool]:
    """Which classes are tail: pixel share below a quarter of the uniform share ``1 / C``.

    Args:
        frequencies: ``(C,)`` pixel shares (summing to 1); a NaN share is never tail.

    Returns:
        One flag per class.
    """
    boundary = tail_boundary(len(frequencies))
    return [float(f) < boundary for f in frequencies]


def tail_indices(frequencies: Sequence[float] | None) -> list[int]:
    """The indices of the tail classes (:func:`tail_classes`); none when the frequencies are unknown."""
    if frequencies is None:
        return []
    return [c for c, tail in enumerate(tail_classes(frequencies)) if tail]
