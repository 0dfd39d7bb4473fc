"""A tile's identity (`TileIndex`, what task specs carry) and a grid level's constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class TileIndex(NamedTuple):
    """The picklable identity of a tile; what task specs carry."""

    zoom: int
    row: int
    col: int

    def __str__(self) -> str:
        return f"(zoom {self.zoom}, row {self.row}, col {self.col})"


@dataclass(frozen=True)
class Level:
    """Per-zoom constants, in grid CRS units and (meta)tile counts."""

    origin_x: float
    origin_y: float
    top_left: bool          # rows grow downwards from the origin (cornerOfOrigin topLeft)
    span_x: float           # width of one base tile in CRS units
    span_y: float
    matrix_width: int       # base tiles
    matrix_height: int
    width: int              # metatiles
    height: int
    px_x: int               # pixels across one base tile
    px_y: int

    @property
    def xres(self) -> float:
        return self.span_x / self.px_x

    @property
    def yres(self) -> float:
        return self.span_y / self.px_y


__all__ = ["Level", "TileIndex"]
