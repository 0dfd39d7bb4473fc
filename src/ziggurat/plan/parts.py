"""Parts for batch systems: a run cut into N deterministic pieces that run at once on different machines.

A part is a stretch of the space-filling curve over the tiles of a coarse *part zoom*: the
coarsest zoom with at least `GRAIN` x N tiles in the run's area (a zoom below the recipe's is
fine: it only groups tiles). Part I owns every tile of the run whose ancestor at the part zoom
(the tile holding its centre) lies in its stretch, at the part zoom and above, so each part
owns whole overview subtrees and builds them itself. Zooms below the part zoom, and zooms above
the baselevels (built from their parents' neighbourhoods, which cross part borders), are left
to the ending run: a plain run of the recipe afterwards, which skips what the parts wrote.
Every machine computes the same cut from the recipe alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from ziggurat.core.errors import RecipeError
from ziggurat.core.grid import Bounds, Grid, Tile, TileIndex
from ziggurat.plan.order import curve
from ziggurat.recipe.area import clip_to_bounds, count_tiles_in_geometry

#: tiles of the part zoom per part, at least: stretches of 8 or more coarse tiles balance the
#: parts to within about an eighth (edge tiles hold fewer tiles of the finer zooms)
GRAIN = 8


@dataclass(frozen=True)
class Part:
    """Part `index` (1-based) of `count`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise RecipeError(f"a part is I/N with 1 <= I <= N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str | Part | tuple[int, int]) -> Part:
        """`3/8`; also `(3, 8)` and a Part."""
        if isinstance(text, Part):
            return text
        if isinstance(text, tuple):
            return cls(int(text[0]), int(text[1]))
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if match is None:
            raise RecipeError(f"--part: expected I/N (part I of N, 1 <= I <= N), got {text!r}; e.g. on a "
                              "Kubernetes Indexed Job: --part $((JOB_COMPLETION_INDEX + 1))/N")
        return cls(int(match[1]), int(match[2]))

    @property
    def name(self) -> str:
        """The part's folder name in the output's records: `3-of-8`."""
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class PartCut:
    """The tiles of the part zoom one part owns (in curve order) and a membership test."""

    part: Part
    zoom: int
    roots: tuple[TileIndex, ...]

    def owner(self, grid: Grid, tile: Tile) -> TileIndex:
        """The part-zoom tile holding `tile`'s centre."""
        if tile.zoom == self.zoom:
            return tile.index
        b = tile.bounds
        return grid.tile_at((b.left + b.right) / 2, (b.bottom + b.top) / 2, self.zoom).index

    def owns(self, grid: Grid, tile: Tile) -> bool:
        return tile.zoom >= self.zoom and self.owner(grid, tile) in self._set

    @property
    def _set(self) -> frozenset[TileIndex]:
        found = self.__dict__.get("_roots_set")
        if found is None:
            found = frozenset(self.roots)
            object.__setattr__(self, "_roots_set", found)
        return found

    def tiles(self, grid: Grid, bounds: Bounds, zoom: int, along_curve: bool) -> Iterator[Tile]:
        """The part's tiles at `zoom` inside `bounds`, root by root (each root's patch along the
        curve when asked): index arithmetic over the part's own tiles only."""
        for index in self.roots:
            root = grid.tile(*index)
            box = root.bounds.intersection(bounds)
            if box is None:
                continue
            if zoom == self.zoom:
                yield root
                continue
            rows, cols = grid.tile_range(box, zoom)
            cells = curve(rows, cols) if along_curve else ((r, c) for r in rows for c in cols)
            for row, col in cells:
                tile = grid.tile(zoom, row, col)
                if self.owner(grid, tile) == index:
                    yield tile


def _weight(grid: Grid, box: Bounds, top: int, geometry: Any) -> int:
    """Tiles of the top zoom in `box` (meeting `geometry`, when the run has an area polygon)."""
    if geometry is None:
        return grid.count_tiles(box, top)
    inside = clip_to_bounds(geometry, (box.left, box.bottom, box.right, box.top))
    return 0 if inside is None else count_tiles_in_geometry(grid, inside, top)


def part_zoom(grid: Grid, bounds: Bounds, top: int, count: int) -> int:
    """The coarsest zoom (at most `top`) with at least GRAIN x `count` tiles in `bounds`."""
    for zoom in range(grid.minzoom, top + 1):
        if grid.count_tiles(bounds, zoom) >= GRAIN * count:
            return zoom
    return top


def cut(grid: Grid, bounds: Bounds, top: int, part: Part, geometry: Any = None) -> PartCut:
    """Part `part`'s stretch of the curve over the part zoom's tiles in `bounds`, cut where the
    tiles of the top zoom beneath them (the bulk of the work; within the run's area polygon, if
    it has one) are shared out evenly."""
    zoom = part_zoom(grid, bounds, top, part.count)
    rows, cols = grid.tile_range(bounds, zoom)
    cells = [TileIndex(zoom, r, c) for r, c in curve(rows, cols)]
    weights = []
    for index in cells:
        box = grid.tile(*index).bounds.intersection(bounds)
        weights.append(0 if box is None else _weight(grid, box, top, geometry))
    total = sum(weights) or 1
    lo, hi = (part.index - 1) * total / part.count, part.index * total / part.count
    roots, before = [], 0
    for index, weight in zip(cells, weights):
        middle = before + weight / 2   # a root goes to the part its middle falls in
        if lo <= middle < hi or (part.index == part.count and middle >= hi):
            roots.append(index)
        before += weight
    return PartCut(part, zoom, tuple(roots))


__all__ = ["GRAIN", "Part", "PartCut", "cut", "part_zoom"]
