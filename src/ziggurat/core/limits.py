"""Min/max row and col of tiles per zoom: what tiled-assets `limits`, VRT extents and the stored
output's extents need, in O(zooms) memory however many tiles a run writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ziggurat.core.grid import Bounds, Grid, TileIndex


@dataclass
class ZoomLimits:
    """Min/max row and col of tiles per zoom; what tiled-assets `limits` and VRT extents need."""

    _limits: dict[int, list[int]] = field(default_factory=dict)  # zoom -> [r0, r1, c0, c1]

    def add(self, zoom: int, row: int, col: int) -> None:
        lim = self._limits.get(zoom)
        if lim is None:
            self._limits[zoom] = [row, row, col, col]
            return
        if row < lim[0]:
            lim[0] = row
        elif row > lim[1]:
            lim[1] = row
        if col < lim[2]:
            lim[2] = col
        elif col > lim[3]:
            lim[3] = col

    def update(self, indices: Iterable[TileIndex]) -> None:
        for zoom, row, col in indices:
            self.add(zoom, row, col)

    def merge(self, other: "ZoomLimits") -> None:
        for zoom, (r0, r1, c0, c1) in other.items():
            self.add(zoom, r0, c0)
            self.add(zoom, r1, c1)

    def items(self) -> Iterator[tuple[int, tuple[int, int, int, int]]]:
        """(zoom, (min_row, max_row, min_col, max_col)), zooms ascending."""
        for zoom in sorted(self._limits):
            yield zoom, tuple(self._limits[zoom])  # type: ignore[misc]

    def get(self, zoom: int) -> tuple[int, int, int, int] | None:
        lim = self._limits.get(zoom)
        return None if lim is None else tuple(lim)  # type: ignore[return-value]

    def discard(self, zoom: int) -> None:
        self._limits.pop(zoom, None)

    @property
    def zooms(self) -> list[int]:
        return sorted(self._limits)

    def __bool__(self) -> bool:
        return bool(self._limits)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ZoomLimits) and dict(self.items()) == dict(other.items())

    def bounds(self, grid: Grid, zoom: int) -> Bounds:
        """Extent of the limits' rectangle at a zoom, in grid CRS."""
        r0, r1, c0, c1 = self._limits[zoom]
        a, b = grid.tile_bounds(zoom, r0, c0), grid.tile_bounds(zoom, r1, c1)
        return a.union(b)


__all__ = ["ZoomLimits"]
