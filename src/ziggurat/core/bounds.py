"""Axis-aligned boxes: the one implementation of intersection and union every stage uses."""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Sequence


class Bounds(NamedTuple):
    """An axis-aligned box (left, bottom, right, top) in one CRS; empty results are None."""

    left: float
    bottom: float
    right: float
    top: float

    @property
    def is_valid(self) -> bool:
        """Finite, with a positive width and height."""
        return all(math.isfinite(v) for v in self) and self.left < self.right and self.bottom < self.top

    def intersection(self, other: Sequence[float]) -> "Bounds | None":
        """The common part, or None when the interiors do not meet (touching edges do not)."""
        o = Bounds(*other)
        out = Bounds(max(self.left, o.left), max(self.bottom, o.bottom), min(self.right, o.right),
                     min(self.top, o.top))
        return out if out.is_valid else None

    def intersects(self, other: Sequence[float]) -> bool:
        return self.intersection(other) is not None

    def union(self, other: Sequence[float]) -> "Bounds":
        o = Bounds(*other)
        return Bounds(min(self.left, o.left), min(self.bottom, o.bottom), max(self.right, o.right),
                      max(self.top, o.top))

    @staticmethod
    def union_all(boxes: Iterable[Sequence[float]]) -> "Bounds | None":
        """The box around all `boxes`, or None for none."""
        out: Bounds | None = None
        for box in boxes:
            out = Bounds(*box) if out is None else out.union(box)
        return out
