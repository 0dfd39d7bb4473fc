"""Tile grids: OGC TileMatrixSets (via morecantile) plus metatiling, pixel buffer and tile size.

Pure math, no I/O. Tiles covering an area are found with index arithmetic on the matrix
parameters, so the cost is proportional to the area asked for, never to the whole grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import morecantile
import numpy as np
from affine import Affine
from rasterio.crs import CRS

from ziggurat.core.bounds import Bounds
from ziggurat.core.errors import GridError
from ziggurat.core.levels import Level as _Level
from ziggurat.core.levels import TileIndex

#: mapchete-compatible grid names.
GRID_ALIASES = {"geodetic": "WorldCRS84Quad", "mercator": "WebMercatorQuad"}
METATILING_VALUES = (1, 2, 4, 8, 16)
#: Matrix sets whose last levels double (geodetic, mercator, ...) continue past their defined
#: levels by halving the cell size, like mapchete's grids; WorldCRS84Quad defines only 0..23.
EXTRAPOLATED_MAXZOOM = 30
#: Fraction of a tile that bounds must overlap before the tile counts as intersecting;
#: absorbs float noise so bounds on a tile edge do not pull in the neighbour.
_EDGE_EPS = 1e-6


@dataclass(frozen=True, eq=False)
class Grid:
    """A tile matrix set with metatiling, pixel buffer and tile size.

    `name` is what a recipe said (``geodetic``, a registry id, or a custom TMS path) and is
    kept for metadata; `tms` is the parsed matrix set.
    """

    tms: morecantile.TileMatrixSet = field(repr=False)
    name: str
    metatiling: int = 1
    pixelbuffer: int = 0
    tile_size: int | None = None
    _levels: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.metatiling not in METATILING_VALUES:
            raise GridError(f"metatiling must be one of {METATILING_VALUES}, got {self.metatiling!r}")
        if not isinstance(self.pixelbuffer, int) or self.pixelbuffer < 0:
            raise GridError(f"pixelbuffer must be an integer >= 0, got {self.pixelbuffer!r}")
        if self.tile_size is not None and (not isinstance(self.tile_size, int) or self.tile_size < 1):
            raise GridError(f"tile_size must be a positive integer, got {self.tile_size!r}")
        if self.tms.is_variable:
            raise GridError(f"grid {self.name!r}: tile matrices with variable widths are not supported")

    # -- identity -----------------------------------------------------------------------
    @classmethod
    def from_name(cls, name: str, *, metatiling: int = 1, pixelbuffer: int = 0,
                  tile_size: int | None = None) -> "Grid":
        """A grid from a mapchete alias or a morecantile registry id."""
        tms_id = GRID_ALIASES.get(name, name)
        try:
            tms = morecantile.tms.get(tms_id)
        except Exception as exc:  # morecantile raises its own InvalidIdentifier
            known = ", ".join(sorted([*GRID_ALIASES, *morecantile.tms.list()]))
            raise GridError(f"unknown grid {name!r}; known grids: {known}") from exc
        return cls(tms, name, metatiling, pixelbuffer, tile_size)

    def _key(self) -> tuple:
        key = self._levels.get("key")  # cached: dumping the TMS costs ~30 us
        if key is None:
            key = (self.tms.model_dump_json(exclude_none=True), self.metatiling, self.pixelbuffer,
                   self.effective_tile_size)
            self._levels["key"] = key
        return key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grid) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def with_options(self, *, metatiling: int | None = None, pixelbuffer: int | None = None) -> "Grid":
        """The same matrix set with other metatiling/pixel buffer (e.g. the output grid)."""
        return Grid(self.tms, self.name,
                    self.metatiling if metatiling is None else metatiling,
                    self.pixelbuffer if pixelbuffer is None else pixelbuffer, self.tile_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; registry grids by name, custom ones with the full TMS."""
        out: dict[str, Any] = {"grid": self.name, "metatiling": self.metatiling,
                               "pixelbuffer": self.pixelbuffer, "tile_size": self.effective_tile_size}
        if GRID_ALIASES.get(self.name, self.name) not in morecantile.tms.list():
            out["tms"] = self.tms.model_dump(mode="json", exclude_none=True)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Grid":
        metatiling, pixelbuffer = int(data.get("metatiling", 1)), int(data.get("pixelbuffer", 0))
        tile_size = data.get("tile_size")
        if "tms" in data:
            return cls(morecantile.TileMatrixSet.model_validate(data["tms"]), data["grid"], metatiling=metatiling,
                       pixelbuffer=pixelbuffer, tile_size=tile_size)
        return cls.from_name(data["grid"], metatiling=metatiling, pixelbuffer=pixelbuffer, tile_size=tile_size)

    # -- properties ---------------------------------------------------------------------
    @property
    def crs(self) -> CRS:
        return self.tms.rasterio_crs

    @property
    def effective_tile_size(self) -> int:
        return self.tile_size or self.tms.matrix(self.tms.minzoom).tileWidth

    @property
    def minzoom(self) -> int:
        return self.tms.minzoom

    @property
    def maxzoom(self) -> int:
        """Registry quadtree grids extend to EXTRAPOLATED_MAXZOOM; a custom TMS keeps its own."""
        registry = GRID_ALIASES.get(self.name, self.name) in morecantile.tms.list()
        return EXTRAPOLATED_MAXZOOM if registry and self._doubles() else self.tms.maxzoom

    def _doubles(self) -> bool:
        """The last two defined levels double in size and halve the cell: a quadtree tail."""
        key = self._levels.get("doubles")
        if key is None:
            mats = self.tms.tileMatrices
            a, b = (mats[-2], mats[-1]) if len(mats) > 1 else (None, None)
            key = bool(a and b and b.matrixWidth == 2 * a.matrixWidth and b.matrixHeight == 2 * a.matrixHeight
                       and math.isclose(a.cellSize, 2 * b.cellSize, rel_tol=1e-9))
            self._levels["doubles"] = key
        return key

    def matrix(self, zoom: int) -> Any:
        """The morecantile TileMatrix of a zoom; past the defined levels, the last one halved
        exactly (powers of two), not re-derived from scale denominators as morecantile does."""
        if zoom <= self.tms.maxzoom:
            return self.tms.matrix(zoom)
        last = self.tms.matrix(self.tms.maxzoom)
        k = 2 ** (zoom - self.tms.maxzoom)
        return last.model_copy(update=dict(id=str(zoom), cellSize=last.cellSize / k,
                                           scaleDenominator=last.scaleDenominator / k,
                                           matrixWidth=last.matrixWidth * k, matrixHeight=last.matrixHeight * k))

    @property
    def is_geographic(self) -> bool:
        return self.crs.is_geographic

    def _level(self, zoom: int) -> _Level:
        lvl = self._levels.get(zoom)
        if lvl is not None and type(zoom) is int:
            return lvl
        if isinstance(zoom, bool) or not isinstance(zoom, (int, np.integer)):
            raise GridError(f"zoom must be an integer, got {zoom!r}")
        zoom = int(zoom)
        if zoom < self.minzoom or zoom > self.maxzoom:
            raise GridError(f"zoom {zoom!r} is outside grid {self.name!r} ({self.minzoom}..{self.maxzoom})")
        m = self.matrix(zoom)
        ox, oy = self.tms._matrix_origin(m)
        scale = (self.tile_size / m.tileWidth) if self.tile_size else 1.0
        px_x = round(m.tileWidth * scale)
        px_y = round(m.tileHeight * scale)
        mt = self.metatiling
        lvl = _Level(
            origin_x=float(ox), origin_y=float(oy), top_left=m.cornerOfOrigin != "bottomLeft",
            span_x=m.cellSize * m.tileWidth, span_y=m.cellSize * m.tileHeight,
            matrix_width=m.matrixWidth, matrix_height=m.matrixHeight,
            width=-(-m.matrixWidth // mt), height=-(-m.matrixHeight // mt), px_x=px_x, px_y=px_y,
        )
        self._levels[zoom] = lvl
        return lvl

    def resolution(self, zoom: int) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units at a zoom."""
        lvl = self._level(zoom)
        return lvl.xres, lvl.yres

    def matrix_shape(self, zoom: int) -> tuple[int, int]:
        """(rows, cols) of (meta)tiles at a zoom."""
        lvl = self._level(zoom)
        return lvl.height, lvl.width

    def bounds(self, zoom: int | None = None) -> Bounds:
        """Extent of the tile matrix at a zoom (the minimum zoom by default)."""
        lvl = self._level(self.minzoom if zoom is None else zoom)
        right = lvl.origin_x + lvl.matrix_width * lvl.span_x
        if lvl.top_left:
            return Bounds(lvl.origin_x, lvl.origin_y - lvl.matrix_height * lvl.span_y, right, lvl.origin_y)
        return Bounds(lvl.origin_x, lvl.origin_y, right, lvl.origin_y + lvl.matrix_height * lvl.span_y)

    # -- tiles --------------------------------------------------------------------------
    def tile(self, zoom: int, row: int, col: int) -> "Tile":
        lvl = self._level(zoom)
        zoom, row, col = int(zoom), int(row), int(col)
        if not (0 <= row < lvl.height and 0 <= col < lvl.width):
            raise GridError(f"tile (zoom {zoom}, row {row}, col {col}) is outside grid {self.name!r} "
                            f"with metatiling {self.metatiling}: rows 0..{lvl.height - 1}, "
                            f"cols 0..{lvl.width - 1}")
        return Tile(self, zoom, row, col)

    def tile_bounds(self, zoom: int, row: int, col: int) -> Bounds:
        lvl = self._level(zoom)
        mt = self.metatiling
        c0, c1 = col * mt, min((col + 1) * mt, lvl.matrix_width)
        r0, r1 = row * mt, min((row + 1) * mt, lvl.matrix_height)
        left = lvl.origin_x + c0 * lvl.span_x
        right = lvl.origin_x + c1 * lvl.span_x
        if lvl.top_left:
            return Bounds(left, lvl.origin_y - r1 * lvl.span_y, right, lvl.origin_y - r0 * lvl.span_y)
        return Bounds(left, lvl.origin_y + r0 * lvl.span_y, right, lvl.origin_y + r1 * lvl.span_y)

    def tile_shape(self, zoom: int, row: int, col: int) -> tuple[int, int]:
        """(height, width) in pixels, without buffer; metatiles are clipped at the matrix edge."""
        lvl = self._level(zoom)
        mt = self.metatiling
        ncols = min((col + 1) * mt, lvl.matrix_width) - col * mt
        nrows = min((row + 1) * mt, lvl.matrix_height) - row * mt
        return nrows * lvl.px_y, ncols * lvl.px_x

    def max_tile_shape(self, zoom: int) -> tuple[int, int]:
        """(height, width) of an unclipped metatile: the largest tile result at a zoom."""
        lvl = self._level(zoom)
        return self.metatiling * lvl.px_y, self.metatiling * lvl.px_x

    def tile_range(self, bounds: Bounds | tuple[float, float, float, float], zoom: int
                   ) -> tuple[range, range]:
        """(rows, cols) ranges of the tiles whose interior intersects `bounds` (grid CRS).

        Works in base-tile indices clamped to the real matrix, then groups them into
        metatiles, so a box past a clipped edge metatile does not select it.
        """
        left, bottom, right, top = bounds
        if left > right or bottom > top:
            raise GridError(f"bounds {tuple(bounds)} are inverted (left > right or bottom > top); "
                            "split boxes that cross the antimeridian")
        lvl = self._level(zoom)
        c0 = math.floor((left - lvl.origin_x) / lvl.span_x + _EDGE_EPS)
        c1 = math.ceil((right - lvl.origin_x) / lvl.span_x - _EDGE_EPS)
        if lvl.top_left:
            r0 = math.floor((lvl.origin_y - top) / lvl.span_y + _EDGE_EPS)
            r1 = math.ceil((lvl.origin_y - bottom) / lvl.span_y - _EDGE_EPS)
        else:
            r0 = math.floor((bottom - lvl.origin_y) / lvl.span_y + _EDGE_EPS)
            r1 = math.ceil((top - lvl.origin_y) / lvl.span_y - _EDGE_EPS)
        c0, c1 = max(c0, 0), min(max(c1, c0 + 1), lvl.matrix_width)
        r0, r1 = max(r0, 0), min(max(r1, r0 + 1), lvl.matrix_height)
        mt = self.metatiling
        if c0 >= c1 or r0 >= r1:
            return range(0), range(0)
        return range(r0 // mt, -(-r1 // mt)), range(c0 // mt, -(-c1 // mt))

    def count_tiles(self, bounds: Bounds | tuple[float, float, float, float], zoom: int) -> int:
        rows, cols = self.tile_range(bounds, zoom)
        return len(rows) * len(cols)

    def tiles_in_bounds(self, bounds: Bounds | tuple[float, float, float, float], zoom: int
                        ) -> Iterator["Tile"]:
        """Tiles intersecting `bounds`, row by row, created lazily."""
        rows, cols = self.tile_range(bounds, zoom)
        for row in rows:
            for col in cols:
                yield Tile(self, zoom, row, col)

    def tiles_in_geometry(self, geometry: Any, zoom: int) -> Iterator["Tile"]:
        """Tiles whose interior intersects a shapely geometry (grid CRS); cost ~ its bbox."""
        import shapely

        if geometry.is_empty:
            return
        shapely.prepare(geometry)
        rows, cols = self.tile_range(geometry.bounds, zoom)
        if not len(cols):
            return
        for row in rows:
            bounds = np.array([self.tile_bounds(zoom, row, c) for c in cols])
            boxes = shapely.box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3])
            hit = shapely.intersects(geometry, boxes) & ~shapely.touches(geometry, boxes)
            for col, ok in zip(cols, hit):
                if ok:
                    yield Tile(self, zoom, row, col)

    def tile_at(self, x: float, y: float, zoom: int) -> "Tile":
        """The tile containing a point (grid CRS); points on an edge go right/down."""
        lvl = self._level(zoom)
        col = math.floor((x - lvl.origin_x) / lvl.span_x)
        row = math.floor(((lvl.origin_y - y) if lvl.top_left else (y - lvl.origin_y)) / lvl.span_y)
        if not (0 <= row < lvl.matrix_height and 0 <= col < lvl.matrix_width):
            raise GridError(f"point ({x}, {y}) is outside grid {self.name!r} at zoom {zoom}")
        return Tile(self, zoom, row // self.metatiling, col // self.metatiling)


@dataclass(frozen=True, slots=True)
class Tile:
    """A (meta)tile of a grid. Cheap to create; geometry is computed on access."""

    grid: Grid
    zoom: int
    row: int
    col: int

    @property
    def index(self) -> TileIndex:
        return TileIndex(self.zoom, self.row, self.col)

    @property
    def crs(self) -> CRS:
        return self.grid.crs

    @property
    def pixelbuffer(self) -> int:
        return self.grid.pixelbuffer

    @property
    def resolution(self) -> tuple[float, float]:
        return self.grid.resolution(self.zoom)

    @property
    def bounds(self) -> Bounds:
        return self.grid.tile_bounds(self.zoom, self.row, self.col)

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.tile_shape(self.zoom, self.row, self.col)

    @property
    def affine(self) -> Affine:
        xres, yres = self.resolution
        b = self.bounds
        return Affine(xres, 0.0, b.left, 0.0, -yres, b.top)

    @property
    def buffered_bounds(self) -> Bounds:
        """Bounds grown by the pixel buffer; may reach past the grid edge (e.g. lon < -180)."""
        xres, yres = self.resolution
        pb = self.grid.pixelbuffer
        b = self.bounds
        return Bounds(b.left - pb * xres, b.bottom - pb * yres, b.right + pb * xres, b.top + pb * yres)

    @property
    def buffered_shape(self) -> tuple[int, int]:
        h, w = self.shape
        pb = self.grid.pixelbuffer
        return h + 2 * pb, w + 2 * pb

    @property
    def buffered_affine(self) -> Affine:
        xres, yres = self.resolution
        b = self.buffered_bounds
        return Affine(xres, 0.0, b.left, 0.0, -yres, b.top)

    def parent(self) -> "Tile | None":
        """The tile one zoom lower containing this tile's centre (None at the minimum zoom)."""
        if self.zoom <= self.grid.minzoom:
            return None
        b = self.bounds
        return self.grid.tile_at((b.left + b.right) / 2, (b.bottom + b.top) / 2, self.zoom - 1)

    def children(self) -> list["Tile"]:
        """Tiles one zoom higher whose interior lies inside this tile."""
        if self.zoom >= self.grid.maxzoom:
            return []
        return list(self.grid.tiles_in_bounds(self.bounds, self.zoom + 1))

    def __str__(self) -> str:
        return str(self.index)

    def __repr__(self) -> str:
        return f"Tile(zoom={self.zoom}, row={self.row}, col={self.col}, grid={self.grid.name!r})"
