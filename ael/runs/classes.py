"""TEMPORARY in the methods branch: replaced by the run-store owner's module at merge."""

from __future__ import annotations

from collections.abc import Sequence

TAIL_SHARE = 0.25


def tail_classes(frequencies: Sequence[float]) -> list[bool]:
    """Which classes are "tail": pixel share below a quarter of the uniform share ``1 / C``."""
    c = len(frequencies)
    return [float(f) < TAIL_SHARE / c for f in frequencies]


def best_evaluation(records):
    import math

    finite = [r for r in records if not math.isnan(r["miou"])]
    return max(finite, key=lambda r: r["miou"]) if finite else records[-1]
