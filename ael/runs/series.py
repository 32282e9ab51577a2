"""Growing numpy columns for tailed records: amortised appends, resume cut-offs, latest value per step.

A :class:`Column` holds one named series in file order (steps, values, a validity mask). Asking
for it returns one value per step, the latest valid one, sorted by step, computed once per change.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Column"]


class Column:
    """One series: scalars (``width=None``, values ``(N,)``) or vectors (values ``(N, width)``)."""

    def __init__(self, width: int | None = None, capacity: int = 1024) -> None:
        self.width = width
        self.n = 0
        self._steps = np.empty(capacity, dtype=np.int64)
        shape = (capacity,) if width is None else (capacity, width)
        self._values = np.empty(shape, dtype=np.float64)
        self._valid = np.empty(capacity, dtype=bool)
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        cap = len(self._steps)
        if need <= cap:
            return
        cap = max(need, 2 * cap)
        for name in ("_steps", "_values", "_valid"):
            old = getattr(self, name)
            new = np.empty((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def extend(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Append records in file order: ``steps`` ``(K,)``, ``values`` ``(K,)`` or ``(K, width)``."""
        k = len(steps)
        if k == 0:
            return
        self._reserve(k)
        self._steps[self.n : self.n + k] = steps
        self._values[self.n : self.n + k] = values
        self._valid[self.n : self.n + k] = True
        self.n += k
        self._cache = None

    def cut_after(self, step: int) -> None:
        """A resume from ``step``: records so far with a later step are superseded."""
        if self.n:
            self._valid[: self.n] &= self._steps[: self.n] <= step
            self._cache = None

    def latest(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps (T,), values (T,) or (T, width))``: one value per step (the latest), by step."""
        if self._cache is None:
            steps = self._steps[: self.n]
            values = self._values[: self.n]
            valid = self._valid[: self.n]
            if not valid.all():
                steps, values = steps[valid], values[valid]
            if len(steps) > 1 and not bool(np.all(steps[1:] > steps[:-1])):
                # Last occurrence of each step: unique on the reversed order keeps it.
                _, first_in_reversed = np.unique(steps[::-1], return_index=True)
                keep = len(steps) - 1 - first_in_reversed
                steps, values = steps[keep], values[keep]
            # Otherwise views of the buffers, not copies: the rows below ``n`` never change (appends
            # go after them, a larger buffer is a new array), so a view stays valid after later
            # polls, and a live 150-class run is not copied whole at every poll.
            steps.flags.writeable = False
            values.flags.writeable = False
            self._cache = (steps, values)
        return self._cache
