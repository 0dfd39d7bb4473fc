"""What the preview server shows: an output's own tiles rendered to PNG, pixel values, the grid
as OpenLayers needs it, and the ledger's view of a tile. Nothing here writes."""

from __future__ import annotations

import json
import math
import sqlite3
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from ziggurat.core.formats import PNG_DRIVER
from ziggurat.core.grid import Grid, TileIndex
from ziggurat.io.common import local_env
from ziggurat.io.outputs.stored import open_stored
from ziggurat.records.catalog.quicklook import stretch, to_rgba
from ziggurat.records.ledger import ledger_path


@dataclass(frozen=True)
class Style:
    """How one-band data is drawn: a rio-tiler colormap over [low, high], of band `band` (1-based)."""

    colormap: str = "viridis"
    low: float | None = None
    high: float | None = None
    band: int = 1


def encode_png(rgba: np.ndarray) -> bytes:
    with warnings.catch_warnings(), local_env(GDAL_PAM_ENABLED="NO"), MemoryFile() as mem:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with mem.open(driver=PNG_DRIVER, width=rgba.shape[2], height=rgba.shape[1], count=4, dtype="uint8") as dst:
            dst.write(rgba)
        return bytes(mem.read())


class OutputView:
    """A tile directory opened for reading: its tiles, ledger and grid."""

    def __init__(self, path: Path) -> None:
        self.tiles = open_stored(path)
        self.path = self.tiles.path
        self.grid: Grid = self.tiles.grid
        self._default: tuple[float, float] | None = None

    # -- tiles --------------------------------------------------------------------------------
    def read(self, index: TileIndex) -> np.ma.MaskedArray | None:
        path = self.tiles.tile_path(index)
        if not path.is_file():
            return None
        with warnings.catch_warnings(), rasterio.open(path) as src:
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            data = src.read(masked=True)
        if self.tiles.info.alpha_nodata and data.shape[0] > self.tiles.bands:
            alpha = np.ma.getdata(data[-1])   # PNG tiles: the last band is the mask
            data = np.ma.masked_array(np.ma.getdata(data[:self.tiles.bands]),
                                      mask=np.broadcast_to(alpha == 0, data[:self.tiles.bands].shape))
        return data

    def default_stretch(self) -> tuple[float, float]:
        """2nd-98th percentile of the coarsest zoom's tiles (a few reads), for the first view."""
        if self._default is None:
            limits = self.tiles.limits()
            values = []
            if limits:
                zoom = limits.zooms[0]
                for count, index in enumerate(self.tiles.scan([zoom])):
                    data = self.read(index)
                    if data is not None:
                        values.append(data[0].compressed()[:: max(1, data[0].size // 65536)])
                    if count >= 16:
                        break
            joined = np.ma.masked_invalid(np.concatenate(values).astype("float64")) if values else np.ma.array([])
            self._default = stretch(joined[np.newaxis]) if values else (0.0, 1.0)
        return self._default

    def render(self, index: TileIndex, style: Style) -> bytes | None:
        data = self.read(index)
        if data is None:
            return None
        if not (data.shape[0] in (3, 4) and data.dtype == np.uint8):
            band = min(max(style.band, 1), data.shape[0])
            data = data[band - 1:band]
        low, high = self.default_stretch()
        limits = (style.low if style.low is not None else low, style.high if style.high is not None else high)
        if limits[1] <= limits[0]:
            limits = (limits[0], limits[0] + 1.0)
        return encode_png(to_rgba(data, style.colormap, limits))

    def value(self, zoom: int, x: float, y: float) -> dict[str, Any]:
        """The pixel under a point (grid CRS) at a zoom: the output tile, pixel and band values."""
        grid = self.grid
        b = grid.bounds(zoom)
        if not (b.left <= x < b.right and b.bottom < y <= b.top):
            return {"zoom": zoom, "inside": False}
        tile = grid.tile_at(x, y, zoom)
        out: dict[str, Any] = {"zoom": zoom, "row": tile.row, "col": tile.col, "inside": True}
        data = self.read(tile.index)
        if data is None:
            return {**out, "values": None}
        xres, yres = grid.resolution(zoom)
        col = min(int((x - tile.bounds.left) / xres), data.shape[2] - 1)
        row = min(int((tile.bounds.top - y) / yres), data.shape[1] - 1)
        mask = np.ma.getmaskarray(data)
        values = [None if mask[b, row, col] else _json_number(data.data[b, row, col]) for b in range(data.shape[0])]
        return {**out, "pixel": [row, col], "values": values}

    # -- records ------------------------------------------------------------------------------
    def tile_status(self, index: TileIndex, process_grid: Grid | None = None) -> dict[str, Any]:
        """What the ledger records of the tile (and of the process tile that makes it)."""
        out: dict[str, Any] = {"zoom": index.zoom, "row": index.row, "col": index.col,
                               "on_disk": self.tiles.tile_path(index).is_file(),
                               "path": self.tiles.relative_path(index)}
        grid = process_grid or self.grid
        b = self.grid.tile(*index).bounds
        proc = grid.tile_at((b.left + b.right) / 2, (b.bottom + b.top) / 2, index.zoom)
        out["process_tile"] = list(proc.index)
        db = ledger_path(self.path)
        if not db.is_file():
            return {**out, "status": "not processed"}
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            row = con.execute("SELECT status, run, time FROM process_tiles WHERE zoom=? AND row=? AND col=?",
                              tuple(proc.index)).fetchone()
            sha = con.execute("SELECT sha256, run FROM output_tiles WHERE path=?",
                              (self.tiles.relative_path(index),)).fetchone()
        out["status"] = row[0] if row else "not processed"
        if row:
            out["run"], out["time"] = row[1], row[2]
        if sha:
            out["sha256"] = sha[0]
        return out

    def counts(self) -> dict[str, int]:
        """Process tiles by ledger status (what a running `execute` has done so far)."""
        db = ledger_path(self.path)
        if not db.is_file():
            return {}
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            rows = con.execute("SELECT status, count(*) FROM process_tiles GROUP BY status")
            return {status: n for status, n in rows}

    # -- the grid for OpenLayers --------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The tile grid (origin, resolutions, tile size per zoom), CRS, zooms on disk, bands."""
        grid = self.grid
        limits = self.tiles.limits()
        zooms = list(range(grid.minzoom, (max(limits.zooms) if limits else grid.minzoom) + 1))
        levels = []
        for zoom in zooms:
            b = grid.bounds(zoom)
            h, w = grid.tile_shape(zoom, 0, 0)
            levels.append({"zoom": zoom, "resolution": grid.resolution(zoom)[0], "origin": [b.left, b.top],
                           "tile_size": [w, h]})
        auth = grid.crs.to_authority()
        code = "EPSG:4326" if auth in (("OGC", "CRS84"), ("EPSG", "4326")) else \
            f"{auth[0]}:{auth[1]}" if auth else "ZIGGURAT:GRID"
        data_box = None
        if limits:
            top = max(limits.zooms)
            data_box = list(limits.bounds(grid, top))
        low, high = self.default_stretch()
        return {"crs": code, "proj4": grid.crs.to_proj4() if code not in ("EPSG:4326", "EPSG:3857") else None,
                "extent": list(grid.bounds(grid.minzoom)), "levels": levels, "zooms": limits.zooms if limits else [],
                "data_extent": data_box, "dtype": self.tiles.dtype, "bands": self.tiles.bands,
                "band_names": [(s or {}).get("name") for s in self.tiles.band_specs] or None,
                "nodata": _json_number(self.tiles.nodata), "stretch": [low, high], "format": self.tiles.format,
                "rgb": self.tiles.bands in (3, 4) and self.tiles.dtype == "uint8"}


def _json_number(value: Any) -> Any:
    if value is None:
        return None
    value = float(value) if isinstance(value, (float, np.floating)) else int(value)
    return None if isinstance(value, float) and not math.isfinite(value) else value


def tms_json(grid: Grid) -> dict[str, Any]:
    return json.loads(grid.tms.model_dump_json(exclude_none=True))


__all__ = ["OutputView", "Style", "encode_png", "tms_json"]
