"""What a written tile directory holds: its grid and band layout, and which tiles exist.

Shared by the STAC item (`ziggurat.records.catalog.stac`) and the indexes/VRTs (`ziggurat.records.catalog.index`). Extents are
kept as min/max row/col per zoom (`ZoomLimits`), so tracking a run costs O(zooms) memory no
matter how many tiles it writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Bounds, Grid, TileIndex
from ziggurat.core.tilelayout import TileLayout
from ziggurat.io.common import int_names, nodata_from_json
from ziggurat.io.outputs.folder import METADATA_FILE, TILE_SUFFIXES, read_metadata
from ziggurat.recipe.output import RASTER_TILE_FORMATS

#: File extension of a tile per output format (the tile directory writer's naming).
#: Raster tile formats and their file extensions (no dot), from io.folder's table.
TILE_EXTENSIONS = {fmt: TILE_SUFFIXES[fmt][1:] for fmt in RASTER_TILE_FORMATS}
RASTER_FORMATS = RASTER_TILE_FORMATS


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


@dataclass(frozen=True)
class TileSet:
    """A tile directory as written: `grid` is the *output* grid (output metatiling, no buffer)."""

    path: Path
    grid: Grid
    format: str = "GTiff"
    dtype: str = "float32"
    bands: int = 1
    nodata: float | int | None = None
    #: where each tile's file is (mapchete's `tile_path_schema`)
    layout: TileLayout = TileLayout()
    #: `output.bands` specs as metadata.json keeps them (name, unit, scale, classes, ...)
    band_specs: tuple[dict[str, Any], ...] = ()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "TileSet":
        """Read `metadata.json`; the folder must have been written by ziggurat."""
        root = Path(path).resolve()
        meta_path = root / METADATA_FILE
        try:
            meta = read_metadata(root)
        except FileNotFoundError as exc:
            raise OutputError(f"{root} is not a ziggurat tile directory (no {METADATA_FILE})") from exc
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot read {meta_path}: {exc}") from exc
        try:
            out = meta["output"]
            fmt = str(out.get("format", "GTiff"))
            layout = TileLayout.parse(out.get("tile_path_schema"))
            if fmt not in TILE_EXTENSIONS:  # e.g. a vector tile directory: no bands to describe
                return cls(root, Grid.from_dict(meta["grid"]), fmt, layout=layout)
            return cls(root, Grid.from_dict(meta["grid"]), fmt, str(out["dtype"]), int(out["bands"]),
                       nodata_from_json(out.get("nodata")), layout, tuple(out.get("band_specs") or ()))
        except Exception as exc:
            raise OutputError(f"invalid {meta_path}: {exc}") from exc

    @property
    def is_raster(self) -> bool:
        return self.format in TILE_EXTENSIONS

    @property
    def ext(self) -> str:
        try:
            return TILE_EXTENSIONS[self.format]
        except KeyError as exc:
            raise OutputError(f"output {self.path}: format {self.format!r} does not write raster "
                              f"tiles ({', '.join(RASTER_FORMATS)} do)") from exc

    def relative_path(self, index: TileIndex) -> str:
        """`zoom/row/col.ext`, POSIX style: what hrefs, indexes and VRTs store."""
        return self.layout.rel(index[0], index[1], index[2], f".{self.ext}")

    def tile_path(self, index: TileIndex) -> Path:
        return self.path / self.relative_path(index)

    def zooms_on_disk(self) -> list[int]:
        return [z for z in int_names(self.path) if self.grid.minzoom <= z <= self.grid.maxzoom]

    def scan(self, zooms: Iterable[int] | None = None) -> Iterator[TileIndex]:
        """Tiles on disk, zoom by zoom, row by row (sorted); one listdir per row folder."""
        wanted = self.zooms_on_disk() if zooms is None else sorted(set(zooms))
        suffix = f".{self.ext}"
        for zoom in wanted:
            zdir = self.path / str(zoom)
            for first in int_names(zdir):   # rows (cols with a col-first layout)
                for second in int_names(zdir / str(first), suffix):
                    yield self.layout.index(zoom, first, second)

    def limits(self, zooms: Iterable[int] | None = None) -> ZoomLimits:
        out = ZoomLimits()
        out.update(self.scan(zooms))
        return out


__all__ = ["RASTER_FORMATS", "TILE_EXTENSIONS", "TileSet", "ZoomLimits"]
