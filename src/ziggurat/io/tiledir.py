"""GeoTIFF tile directories: `{root}/{zoom}/{row}/{col}.tif` plus `metadata.json`.

Tiles are written atomically (temporary file + `os.replace`) so an interrupted run never
leaves a truncated tile that continue mode would take for a finished one.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.windows import Window

from ziggurat.errors import InputError, OutputError
from ziggurat.grid import Bounds, Grid, Tile, TileIndex
from ziggurat.io._common import (
    InputConfigLike, OutputConfigLike, block_size, check_nodata, clip_geographic, crs_equal,
    empty_masked, int_names, intersect, nodata_from_json, nodata_to_json, normalize_indexes,
    overlaps, paste, pixel_offset, resampling_from_name, same_nodata, sweep_tmp, tmp_folder, tmp_in,
    to_dtype, transform_bounds_safe, warp_to_tile, write_json_atomic,
)
from ziggurat.io.raster import RasterTileInput

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
_PREDICTOR_CODECS = {"deflate", "lzw", "zstd"}


class TileDirectoryOutput:
    """Writes process tiles as output-grid GeoTIFF tiles; `grid` is the process grid."""

    def __init__(self, config: OutputConfigLike, grid: Grid) -> None:
        self.config = config
        self.grid = grid
        self.path = Path(config.path)
        self.format: str = config.format
        try:
            self.dtype = np.dtype(config.dtype)
        except TypeError as exc:
            raise OutputError(f"output {self.path}: unknown dtype {config.dtype!r}") from exc
        self.bands = int(config.bands)
        self.nodata = config.nodata
        problem = check_nodata(self.dtype, self.nodata)
        if problem:
            raise OutputError(f"output {self.path}: {problem}")
        if self.bands < 1:
            raise OutputError(f"output {self.path}: bands must be >= 1, got {self.bands}")
        if grid.metatiling % config.metatiling:
            raise OutputError(f"output {self.path}: output metatiling {config.metatiling} does not "
                              f"divide the process metatiling {grid.metatiling}")
        self.compress = str(config.compress or "none").lower()
        self.output_grid = grid.with_options(metatiling=config.metatiling, pixelbuffer=0)
        self.creation_options: dict[str, Any] = dict(
            (config.options or {}).get("creation_options") or {})

    # -- metadata -----------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        from ziggurat import __version__

        return {
            "ziggurat": {"version": __version__},
            "grid": self.output_grid.to_dict(),
            "process_grid": self.grid.to_dict(),
            "output": {"format": self.format, "dtype": self.dtype.name, "bands": self.bands,
                       "nodata": nodata_to_json(self.nodata), "compress": self.compress},
        }

    def _differences(self, existing: Any) -> list[str]:
        if not isinstance(existing, dict) or not isinstance(existing.get("output"), dict):
            return ["metadata.json is not a ziggurat tile directory description"]
        diffs: list[str] = []
        try:
            same_grid = Grid.from_dict(existing["grid"]) == self.output_grid
        except Exception:
            same_grid = False
        if not same_grid:
            diffs.append(f"grid: {existing.get('grid')!r} on disk, {self.output_grid.to_dict()!r} now")
        out = existing["output"]
        for key, now in (("format", self.format), ("dtype", self.dtype.name), ("bands", self.bands)):
            if out.get(key) != now:
                diffs.append(f"{key}: {out.get(key)!r} on disk, {now!r} now")
        old_nodata = nodata_from_json(out.get("nodata"))
        if not same_nodata(old_nodata, self.nodata):
            logger.warning("output %s: nodata was %r, is now %r; existing tiles keep the old value",
                           self.path, old_nodata, self.nodata)
        return diffs

    def prepare(self, overwrite: bool) -> None:
        """Create the folder and write or validate metadata.json."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {self.path}: {exc}") from exc
        meta_path = self.path / METADATA_FILE
        if meta_path.exists():
            try:
                existing = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                existing = None
                logger.debug("cannot read %s: %s", meta_path, exc)
            diffs = self._differences(existing)
            if not diffs:
                return
            if not overwrite:
                raise OutputError(f"output {self.path} was written with other settings "
                                  f"({'; '.join(diffs)}); use overwrite to replace it")
            logger.warning("output %s: replacing metadata.json (%s)", self.path, "; ".join(diffs))
        try:
            write_json_atomic(meta_path, self.metadata())
        except OSError as exc:
            raise OutputError(f"cannot write {meta_path}: {exc}") from exc

    # -- tiles --------------------------------------------------------------------------
    def output_tiles(self, process_tile: Tile) -> list[Tile]:
        rows, cols = self.output_grid.tile_range(process_tile.bounds, process_tile.zoom)
        return [Tile(self.output_grid, process_tile.zoom, r, c) for r in rows for c in cols]

    def tile_path(self, tile: Tile | TileIndex) -> Path:
        return self.path / str(tile.zoom) / str(tile.row) / f"{tile.col}.tif"

    def exists(self, process_tile: Tile) -> bool:
        return all(self.tile_path(t).exists() for t in self.output_tiles(process_tile))

    def _as_metatile(self, process_tile: Tile, data: np.ndarray | np.ma.MaskedArray
                     ) -> np.ma.MaskedArray:
        """(bands, h, w) without the pixel buffer, or OutputError naming what is wrong."""
        arr = data if isinstance(data, np.ma.MaskedArray) else np.ma.masked_array(np.asarray(data))
        if arr.ndim == 2:
            arr = arr[np.newaxis]
        if arr.ndim != 3:
            raise OutputError(f"tile {process_tile}: expected a 2D or 3D array, got {arr.ndim}D "
                              f"with shape {arr.shape}")
        if arr.shape[0] != self.bands:
            raise OutputError(f"tile {process_tile}: output has {self.bands} band(s), "
                              f"data has {arr.shape[0]} (shape {arr.shape})")
        shape, buffered = process_tile.shape, process_tile.buffered_shape
        if arr.shape[1:] == buffered:
            pb = process_tile.pixelbuffer
            return arr[:, pb:pb + shape[0], pb:pb + shape[1]] if pb else arr
        if arr.shape[1:] == shape:
            return arr
        raise OutputError(f"tile {process_tile}: data shape {arr.shape[1:]} is neither the buffered "
                          f"tile shape {buffered} nor the unbuffered {shape}")

    def profile(self, tile: Tile) -> dict[str, Any]:
        h, w = tile.shape
        prof: dict[str, Any] = {
            "driver": "GTiff", "width": w, "height": h, "count": self.bands,
            "dtype": self.dtype.name, "nodata": self.nodata, "crs": tile.crs,
            "transform": tile.affine,
        }
        bx, by = block_size(w), block_size(h)
        if bx and by:
            prof.update(tiled=True, blockxsize=bx, blockysize=by)
        else:
            prof["tiled"] = False
        if self.compress != "none":
            prof["compress"] = self.compress
            if self.compress in _PREDICTOR_CODECS:
                prof["predictor"] = 3 if self.dtype.kind == "f" else 2
        prof.update(self.creation_options)
        return prof

    def write(self, process_tile: Tile, data: np.ndarray | np.ma.MaskedArray) -> list[TileIndex]:
        """Write every non-empty output tile of a process tile; returns what was written."""
        meta = self._as_metatile(process_tile, data)
        out, valid = to_dtype(meta, self.dtype, self.nodata)
        return self._write_cut(process_tile, out, valid)

    def result_bytes(self, zoom: int) -> int:
        """Largest prepared array for one process tile at a zoom (sizes shared-memory slots)."""
        h, w = self.grid.max_tile_shape(zoom)
        return self.bands * h * w * self.dtype.itemsize

    def prepare_array(self, process_tile: Tile, data: np.ndarray | np.ma.MaskedArray) -> np.ndarray | None:
        """Crop, cast and fill with nodata: the compact form a worker hands to a parent-side
        writer. None when no pixel is valid (nothing to write)."""
        meta = self._as_metatile(process_tile, data)
        out, valid = to_dtype(meta, self.dtype, self.nodata)
        return out if valid.any() else None

    def write_prepared(self, process_tile: Tile, out: np.ndarray) -> list[TileIndex]:
        """Write an array from `prepare_array`; validity is read back from the nodata value."""
        if self.nodata is None:
            valid = np.ones(out.shape, dtype=bool)
        elif isinstance(self.nodata, float) and np.isnan(self.nodata):
            valid = ~np.isnan(out)
        else:
            valid = out != self.nodata
        return self._write_cut(process_tile, out, valid)

    def _write_cut(self, process_tile: Tile, out: np.ndarray, valid: np.ndarray) -> list[TileIndex]:
        top, left = process_tile.bounds.top, process_tile.bounds.left
        xres, yres = process_tile.resolution
        written: list[TileIndex] = []
        for tile in self.output_tiles(process_tile):
            b = tile.bounds
            r0 = round((top - b.top) / yres)
            c0 = round((b.left - left) / xres)
            h, w = tile.shape
            if not valid[:, r0:r0 + h, c0:c0 + w].any():
                continue
            self._write_tile(tile, out[:, r0:r0 + h, c0:c0 + w])
            written.append(tile.index)
        return written

    def remove_partial(self, process_tile: Tile) -> None:
        """Remove temporary files of writers that are gone (temporaries live in .ziggurat/tmp)."""
        sweep_tmp(tmp_folder(self.path))

    def _write_tile(self, tile: Tile, array: np.ndarray) -> None:
        final = self.tile_path(tile)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"tile {tile}: cannot create {final.parent}: {exc}") from exc
        tmp = tmp_in(tmp_folder(self.path), ".tif")
        try:
            with rasterio.open(tmp, "w", **self.profile(tile)) as dst:
                dst.write(np.ascontiguousarray(array))
            os.replace(tmp, final)
        except Exception as exc:
            raise OutputError(f"tile {tile}: cannot write {final}: {exc}") from exc
        finally:  # also on KeyboardInterrupt; a no-op after os.replace
            tmp.unlink(missing_ok=True)

    def read(self, tile: Tile | TileIndex) -> np.ma.MaskedArray | None:
        """One written output tile, (bands, h, w), or None if it was never written (empty)."""
        path = self.tile_path(tile)
        if not path.exists():
            return None
        try:
            with rasterio.open(path) as src:
                return src.read(masked=True)
        except Exception as exc:
            raise OutputError(f"tile {tile}: cannot read {path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"TileDirectoryOutput(path={str(self.path)!r})"


# -- reading a tile directory back --------------------------------------------------------------
_MOSAIC_MARGIN = 4  # source pixels around the footprint, for resampling kernels


class TileDirectoryInput:
    """A tile directory written by `TileDirectoryOutput`, read as an input in any grid."""

    def __init__(self, config: InputConfigLike, grid: Grid) -> None:
        self.name: str = config.name
        self.path = Path(config.path)
        self.grid = grid
        self.options: dict[str, Any] = dict(config.options or {})
        self.default_resampling: Resampling = resampling_from_name(
            self.options.get("resampling", "nearest"))
        meta_path = self.path / METADATA_FILE
        try:
            meta = json.loads(meta_path.read_text())
            self.dir_grid = Grid.from_dict(meta["grid"])
            out = meta["output"]
            self.dtype: str = np.dtype(out["dtype"]).name
            self.count: int = int(out["bands"])
            self.nodata: float | int | None = nodata_from_json(out.get("nodata"))
        except FileNotFoundError:
            raise InputError(f"input {self.name!r}: {self.path} is not a tile directory "
                             f"(no {METADATA_FILE})") from None
        except Exception as exc:
            raise InputError(f"input {self.name!r}: invalid {meta_path}: {exc}") from exc
        self.crs = self.dir_grid.crs
        self._same_crs = crs_equal(self.crs, grid.crs)
        self.zooms: list[int] = [z for z in int_names(self.path)
                                 if self.dir_grid.minzoom <= z <= self.dir_grid.maxzoom]
        self.dir_bounds: Bounds | None = self._scan_bounds()
        self.bounds: Bounds | None = None
        if self.dir_bounds is not None:
            b = transform_bounds_safe(self.crs, grid.crs, self.dir_bounds)
            self.bounds = grid.bounds() if b is None else intersect(b, grid.bounds())

    def _scan_bounds(self, max_rows: int = 64) -> Bounds | None:
        """Extent of the tiles at the finest zoom with few row folders (cheap listdirs)."""
        rows_by_zoom = {z: int_names(self.path / str(z)) for z in self.zooms}
        nonempty = [z for z in self.zooms if rows_by_zoom[z]]
        if not nonempty:
            return None
        small = [z for z in nonempty if len(rows_by_zoom[z]) <= max_rows]
        zoom = max(small) if small else min(nonempty)
        rows, cols = [], []
        for row in rows_by_zoom[zoom]:
            found = int_names(self.path / str(zoom) / str(row), ".tif")
            if found:
                rows.append(row)
                cols += (found[0], found[-1])
        if not rows:
            return None
        tl = self.dir_grid.tile_bounds(zoom, min(rows), min(cols))
        br = self.dir_grid.tile_bounds(zoom, max(rows), max(cols))
        return Bounds(min(tl.left, br.left), min(tl.bottom, br.bottom),
                      max(tl.right, br.right), max(tl.top, br.top))

    def for_tile(self, tile: Tile) -> "TileDirectoryTileInput":
        return TileDirectoryTileInput(self, tile)

    def is_empty(self, tile: Tile) -> bool:
        return not overlaps(self.bounds, tile.buffered_bounds)

    def tile_path(self, zoom: int, row: int, col: int) -> Path:
        return self.path / str(zoom) / str(row) / f"{col}.tif"

    def read(self, tile: Tile, indexes: int | Sequence[int] | None = None,
             resampling: str | Resampling | None = None) -> np.ma.MaskedArray:
        idx, squeeze = normalize_indexes(indexes, self.count, self.name)
        rs = self.default_resampling if resampling is None else resampling_from_name(resampling)
        out = empty_masked(len(idx), tile.buffered_shape, self.dtype, self.nodata)
        if not self.is_empty(tile):
            try:
                self._read_into(out, tile, idx, rs)
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"input {self.name!r}: cannot read {self.path} for tile "
                                 f"{tile}: {exc}") from exc
        return out[0] if squeeze else out

    def _pick_zoom(self, tile: Tile, footprint: Bounds) -> int:
        """Coarsest stored zoom that is not coarser than the tile (else the finest stored)."""
        xres, yres = tile.resolution
        if self._same_crs:
            target = min(xres, yres)
        else:
            b = clip_geographic(tile.buffered_bounds, tile.crs) or tile.buffered_bounds
            target = min((footprint.right - footprint.left) / ((b.right - b.left) / xres),
                         (footprint.top - footprint.bottom) / ((b.top - b.bottom) / yres))
        fine = [z for z in self.zooms if min(self.dir_grid.resolution(z)) <= target * (1 + 1e-9)]
        if fine:
            return max(fine, key=lambda z: min(self.dir_grid.resolution(z)))
        return min(self.zooms, key=lambda z: min(self.dir_grid.resolution(z)))

    def _paste_tiles(self, dest: np.ma.MaskedArray, dest_affine: Affine, idx: list[int],
                     zoom: int, bounds: Bounds) -> None:
        """Paste the stored tiles overlapping `bounds` into a pixel-aligned destination."""
        _, dh, dw = dest.shape
        for dtile in self.dir_grid.tiles_in_bounds(bounds, zoom):
            path = self.tile_path(zoom, dtile.row, dtile.col)
            if not path.exists():
                continue
            offset = pixel_offset(dest_affine, dtile.affine)
            if offset is None:
                raise InputError(f"input {self.name!r}: tile {dtile} is not aligned to the read")
            row, col = offset
            th, tw = dtile.shape
            r0, c0 = max(0, -row), max(0, -col)
            r1, c1 = min(th, dh - row), min(tw, dw - col)
            if r0 >= r1 or c0 >= c1:
                continue
            with rasterio.open(path) as src:
                part = src.read(idx, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True)
            paste(dest, part, row + r0, col + c0)

    def _read_into(self, out: np.ma.MaskedArray, tile: Tile, idx: list[int],
                   rs: Resampling) -> None:
        footprint = transform_bounds_safe(tile.crs, self.crs, tile.buffered_bounds)
        if footprint is None or not self.zooms:
            return
        wanted = intersect(footprint, self.dir_bounds)  # type: ignore[arg-type]
        if wanted is None:
            return
        zoom = self._pick_zoom(tile, footprint)
        if self._same_crs and pixel_offset(tile.buffered_affine,
                                           self.dir_grid.tile(zoom, 0, 0).affine) is not None:
            self._paste_tiles(out, tile.buffered_affine, idx, zoom, wanted)
            return
        xres, yres = self.dir_grid.resolution(zoom)
        gb = self.dir_grid.bounds(zoom)
        width, height = round((gb.right - gb.left) / xres), round((gb.top - gb.bottom) / yres)
        m = _MOSAIC_MARGIN
        c0 = max(math.floor((wanted.left - gb.left) / xres) - m, 0)
        c1 = min(math.ceil((wanted.right - gb.left) / xres) + m, width)
        r0 = max(math.floor((gb.top - wanted.top) / yres) - m, 0)
        r1 = min(math.ceil((gb.top - wanted.bottom) / yres) + m, height)
        if r0 >= r1 or c0 >= c1:
            return
        affine = Affine(xres, 0.0, gb.left + c0 * xres, 0.0, -yres, gb.top - r0 * yres)
        mosaic = empty_masked(len(idx), (r1 - r0, c1 - c0), self.dtype, self.nodata)
        self._paste_tiles(mosaic, affine, idx, zoom, wanted)
        if mosaic.mask.all():
            return
        self._warp(mosaic, affine, out, tile, rs)

    def _warp(self, mosaic: np.ma.MaskedArray, affine: Affine, out: np.ma.MaskedArray,
              tile: Tile, rs: Resampling) -> None:
        """Reproject the mosaic through an in-memory GeoTIFF (masks kept as nodata or mask band)."""
        bands, h, w = mosaic.shape
        with MemoryFile() as mem:
            with mem.open(driver="GTiff", width=w, height=h, count=bands, dtype=self.dtype,
                          crs=self.crs, transform=affine, nodata=self.nodata) as ds:
                if self.nodata is None:
                    ds.write(mosaic.filled(0))
                    ds.write_mask(np.where(np.ma.getmaskarray(mosaic).all(axis=0), 0, 255
                                           ).astype("uint8"))
                else:
                    ds.write(mosaic.filled(self.nodata))
            with mem.open() as ds:
                out[:] = warp_to_tile(ds, list(range(1, bands + 1)), tile, rs)

    def close(self) -> None:
        """Nothing stays open: tile files are opened per read."""

    def __repr__(self) -> str:
        return f"TileDirectoryInput(name={self.name!r}, path={str(self.path)!r})"


class TileDirectoryTileInput(RasterTileInput):
    """A tile directory input bound to one tile."""
