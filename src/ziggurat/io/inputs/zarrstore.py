"""A Zarr store written by ziggurat read back as an input, in any grid: a tile directory whose
stored tiles are chunk objects (same pasting, zoom choice, warping and per-tile sources)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.windows import Window

from ziggurat.core.errors import InputError
from ziggurat.core.grid import Bounds, Grid, Tile
from ziggurat.core.location import is_url
from ziggurat.io.inputs.tiledir import TileDirectoryInput
from ziggurat.io.outputs.zarrcodec import VARIABLE, ZARR_CODECS, ChunkCodec, Level
from ziggurat.io.outputs.zarrstore import masked
from ziggurat.recipe import InputConfig


class ZarrInput(TileDirectoryInput):
    """Reads chunks with zarr-python's codecs, one object per stored tile (so a tile's key covers
    just the chunks it reads, as with tile directories)."""

    def __init__(self, config: InputConfig, grid: Grid) -> None:
        if is_url(str(config.path)):
            raise InputError(f"input {config.name!r}: Zarr stores are read from a local path for now, "
                             f"not {config.path}")
        self._levels: dict[int, ChunkCodec] = {}
        super().__init__(config, grid)
        #: a time series store: its steps read as bands, step after step (band b of step t is
        #: band t * bands + b + 1)
        self.steps = len(self.settings.get("time") or ())
        self.step_bands = self.count
        if self.steps:
            self.count = self.steps * self.step_bands
            self.band_names = ()

    def _codec(self, zoom: int) -> ChunkCodec:
        codec = self._levels.get(zoom)
        if codec is None:
            s = self.settings
            try:
                level = Level.of(self.dir_grid, zoom, self.step_bands, bool(s.get("shard")), Bounds(*s["extent"]),
                                 self.process_grid, self.steps)
                codec = ChunkCodec(level, np.dtype(self.dtype), self.nodata, ZARR_CODECS[str(s.get("compress"))],
                                   int(s.get("zarr_format", 3)))
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"input {self.name!r}: {self.path} has no usable Zarr description: {exc}") from exc
            self._levels[zoom] = codec
        return codec

    def _scan_bounds(self, max_rows: int = 64) -> Bounds | None:
        """The arrays' extent (the writing recipe's area)."""
        if not self.zooms:
            return None
        try:
            return Bounds(*self.settings["extent"])
        except (KeyError, TypeError) as exc:
            raise InputError(f"input {self.name!r}: {self.path} records no extent") from exc

    def tile_path(self, zoom: int, row: int, col: int) -> Path:
        tile = self.dir_grid.tile(zoom, row, col)
        try:
            key = self._codec(zoom).chunk_key(tile)
        except Exception:   # outside the arrays: never written
            return self.path / str(zoom) / VARIABLE / "outside"
        return self.path / str(zoom) / VARIABLE / key

    def _stored_part(self, dtile: Tile, idx: list[int], window: Window) -> np.ma.MaskedArray | None:
        path = self.tile_path(dtile.zoom, dtile.row, dtile.col)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        values = masked(self._codec(dtile.zoom).decode(dtile, raw), self.nodata)
        r0, c0 = int(window.row_off), int(window.col_off)
        part = values[[i - 1 for i in idx], r0:r0 + int(window.height), c0:c0 + int(window.width)]
        return part

    def __repr__(self) -> str:
        return f"ZarrInput(name={self.name!r}, path={self.where!r})"


__all__ = ["ZarrInput"]
