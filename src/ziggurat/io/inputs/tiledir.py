"""Reading a tile directory written by ziggurat back as an input, in any grid.

Same grid and zoom: pixels are pasted exactly. Otherwise the covering tiles of the closest
zoom are mosaicked and warped, so resampling has no seams.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rasterio.windows import Window

from ziggurat.core.errors import InputError
from ziggurat.core.formats import DEFAULT_FORMAT, tile_suffix
from ziggurat.core.grid import Bounds, Grid, Tile
from ziggurat.core.location import Location, is_url
from ziggurat.core.tilelayout import TileLayout
from ziggurat.io.checksum import fingerprint_config
from ziggurat.io.common import (
    clip_geographic,
    crs_equal,
    empty_masked,
    int_names,
    nodata_from_json,
    normalize_indexes,
    open_tile,
    paste,
    pixel_offset,
    resampling_from_name,
    transform_bounds_safe,
)
from ziggurat.io.inputs.raster import RasterTileInput
from ziggurat.io.outputs.folder import METADATA_FILE, describe_folder, read_metadata
from ziggurat.io.storage.remote_files import RemoteFolder
from ziggurat.io.warp import warp_to_tile
from ziggurat.recipe import InputConfig

logger = logging.getLogger(__name__)

# -- reading a tile directory back --------------------------------------------------------------
_MOSAIC_MARGIN = 4  # source pixels around the footprint, for resampling kernels


class TileDirectoryInput:
    """A tile directory written by `TileDirectoryOutput`, read as an input in any grid."""

    tile_sources = True  # a tile reads a few stored tiles: its key covers just those
    fingerprint = staticmethod(fingerprint_config)

    def __init__(self, config: InputConfig, grid: Grid) -> None:
        self.name: str = config.name
        where = str(config.path)
        #: a tile directory in a bucket or on a web server: files fetched whole, never through pathlib
        self.remote = RemoteFolder(Location.parse(where), config.storage_options) if is_url(where) else None
        self.path = Path(config.path) if self.remote is None else Path(self.remote.location.name)
        self.where = where
        self.grid = grid
        self.options: dict[str, Any] = dict(config.options or {})
        self.default_resampling: Resampling = resampling_from_name(
            self.options.get("resampling", "nearest"))
        #: see RasterInput.warp_mask ("nodata": as mapchete reads, the default of .mapchete recipes)
        self.warp_mask = str(self.options.get("warp_mask", "alpha"))
        #: which stored zoom a reprojected read uses: "min" (ziggurat: the coarsest not coarser than
        #: the tile anywhere in it) or "gdal" (mapchete's default: GDAL's suggested warp resolution)
        self.zoom_matching = str(self.options.get("zoom_matching", "min"))
        meta_path = self.path / METADATA_FILE if self.remote is None else self.remote.url(METADATA_FILE)
        try:
            meta = read_metadata(self.path) if self.remote is None else self._remote_metadata()
            self.dir_grid, out = describe_folder(meta)
            self.dtype: str = np.dtype(out["dtype"]).name
            self.count: int = int(out["bands"])
            #: the names the writing recipe gave its bands (`output.bands`), for reads by name
            self.band_names: tuple[str | None, ...] = tuple(
                (spec or {}).get("name") for spec in out.get("band_specs") or ())
            self.nodata: float | int | None = nodata_from_json(out.get("nodata"))
            self.suffix = tile_suffix(out.get("format", DEFAULT_FORMAT.name)) or ""
            self.layout = TileLayout.parse(out.get("tile_path_schema"))
        except FileNotFoundError as exc:
            raise InputError(f"input {self.name!r}: {self.where} is not a tile directory "
                             f"(no {METADATA_FILE})") from exc
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"input {self.name!r}: invalid {meta_path}: {exc}") from exc
        self.settings: dict[str, Any] = dict(out)
        self.process_grid = Grid.from_dict(meta["process_grid"]) if "process_grid" in meta else self.dir_grid
        self.crs = self.dir_grid.crs
        self._same_crs = crs_equal(self.crs, grid.crs)
        #: remote: the tiles there (one listing of a bucket; None over HTTP, which cannot list)
        self._present: dict[str, str | None] | None = None   # relative path -> ETag
        if self.remote is not None:
            self._present = self.remote.files()
            stored = (range(self.dir_grid.minzoom, self.dir_grid.maxzoom + 1) if self._present is None
                      else sorted({int(p.split("/", 1)[0]) for p in self._present if p.split("/", 1)[0].isdigit()}))
        else:
            stored = int_names(self.path)
        self.zooms: list[int] = [z for z in stored if self.dir_grid.minzoom <= z <= self.dir_grid.maxzoom]
        self.dir_bounds: Bounds | None = self._scan_bounds()
        self.bounds: Bounds | None = None
        if self.dir_bounds is not None:
            b = transform_bounds_safe(self.crs, grid.crs, self.dir_bounds)
            self.bounds = grid.bounds() if b is None else b.intersection(grid.bounds())

    def _remote_metadata(self) -> dict[str, Any]:
        assert self.remote is not None
        data = self.remote.get(METADATA_FILE)
        if data is None:
            raise FileNotFoundError(self.remote.url(METADATA_FILE))
        meta = json.loads(data)
        if not isinstance(meta, dict):
            raise ValueError(f"{METADATA_FILE} holds a {type(meta).__name__}, not an object")
        return meta

    def _scan_bounds(self, max_rows: int = 64) -> Bounds | None:
        """Extent of the tiles at the finest zoom with few row folders (cheap listdirs)."""
        if self.remote is not None:
            return self._remote_bounds()
        rows_by_zoom = {z: int_names(self.path / str(z)) for z in self.zooms}
        nonempty = [z for z in self.zooms if rows_by_zoom[z]]
        if not nonempty:
            return None
        small = [z for z in nonempty if len(rows_by_zoom[z]) <= max_rows]
        zoom = max(small) if small else min(nonempty)
        rows: list[int] = []
        cols: list[int] = []
        for first in rows_by_zoom[zoom]:   # row folders (col folders with a col-first layout)
            found = int_names(self.path / str(zoom) / str(first), self.suffix)
            for second in (found[0], found[-1]) if found else ():
                index = self.layout.index(zoom, first, second)
                rows.append(index.row)
                cols.append(index.col)
        if not rows:
            return None
        tl = self.dir_grid.tile_bounds(zoom, min(rows), min(cols))
        br = self.dir_grid.tile_bounds(zoom, max(rows), max(cols))
        return tl.union(br)

    def _remote_bounds(self) -> Bounds | None:
        """From the listing (every tile of the finest zoom); the whole grid over HTTP."""
        if self._present is None:
            return self.dir_grid.bounds()
        cells = [self.layout.index(*map(int, p[: -len(self.suffix)].split("/"))) for p in self._present
                 if p.endswith(self.suffix) and p.count("/") == 2 and p.split("/", 1)[0].isdigit()]
        if not cells:
            return None
        zoom = max(c[0] for c in cells)
        rows = [c[1] for c in cells if c[0] == zoom]
        cols = [c[2] for c in cells if c[0] == zoom]
        return self.dir_grid.tile_bounds(zoom, min(rows), min(cols)).union(
            self.dir_grid.tile_bounds(zoom, max(rows), max(cols)))

    def _tile_bytes(self, zoom: int, row: int, col: int) -> bytes | None:
        """A remote tile's bytes (None if it is not there: the listing says so without a request)."""
        assert self.remote is not None
        rel = self.layout.rel(zoom, row, col, self.suffix)
        if self._present is not None and rel not in self._present:
            return None
        return self.remote.get(rel)

    def for_tile(self, tile: Tile) -> "TileDirectoryTileInput":
        return TileDirectoryTileInput(self, tile)

    def is_empty(self, tile: Tile) -> bool:
        return self.bounds is None or not self.bounds.intersects(tile.buffered_bounds)

    def tile_path(self, zoom: int, row: int, col: int) -> Path:
        return self.path / self.layout.rel(zoom, row, col, self.suffix)

    def read(self, tile: Tile, indexes: int | Sequence[int] | None = None,
             resampling: str | Resampling | None = None) -> np.ma.MaskedArray:
        idx, squeeze = normalize_indexes(indexes, self.count, self.name, self.band_names)
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

    def sources(self, tile: Tile) -> list[tuple[str | Path, str | None]]:
        """The stored tiles a read of `tile` would paste (whether they exist or not); their
        checksums are looked up in this tile directory's ledger."""
        footprint = transform_bounds_safe(tile.crs, self.crs, tile.buffered_bounds)
        if footprint is None or not self.zooms or self.dir_bounds is None or self.is_empty(tile):
            return []
        wanted = footprint.intersection(self.dir_bounds)
        if wanted is None:
            return []
        zoom = self._pick_zoom(tile, footprint)
        cells = self.dir_grid.tiles_in_bounds(wanted, zoom)
        if self.remote is not None:  # URLs, versioned by the listing's ETags ("missing": not there)
            rels = [self.layout.rel(zoom, t.row, t.col, self.suffix) for t in cells]
            return [(self.remote.url(rel), None if self._present is None else (self._present.get(rel) or "missing"))
                    for rel in rels]
        return [(self.tile_path(zoom, t.row, t.col), None) for t in cells]

    def _pick_zoom(self, tile: Tile, footprint: Bounds) -> int:
        """Coarsest stored zoom that is not coarser than the tile (else the finest stored)."""
        if not self._same_crs and self.zoom_matching == "gdal":
            return self._gdal_zoom(tile)
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

    def _gdal_zoom(self, tile: Tile) -> int:
        """mapchete's `tile_to_zoom_level(matching_method="gdal")`: the first zoom whose pixels are
        no larger than the x resolution GDAL suggests for warping the buffered tile into the
        directory's CRS (8 digits); zooms past the stored ones read nothing, as in mapchete."""
        from rasterio.warp import calculate_default_transform

        height, width = tile.buffered_shape
        with rasterio.Env(CHECK_WITH_INVERT_PROJ=True):
            transform, _, _ = calculate_default_transform(tile.crs, self.crs, width, height, *tile.buffered_bounds)
        wanted = round(transform[0], 8)
        zoom = self.dir_grid.minzoom
        while zoom < self.dir_grid.maxzoom and round(self.dir_grid.resolution(zoom)[0], 8) > wanted:
            zoom += 1
        return zoom

    def _paste_tiles(self, dest: np.ma.MaskedArray, dest_affine: Affine, idx: list[int],
                     zoom: int, bounds: Bounds) -> None:
        """Paste the stored tiles overlapping `bounds` into a pixel-aligned destination."""
        _, dh, dw = dest.shape
        for dtile in self.dir_grid.tiles_in_bounds(bounds, zoom):
            offset = pixel_offset(dest_affine, dtile.affine)
            if offset is None:
                raise InputError(f"input {self.name!r}: tile {dtile} is not aligned to the read")
            row, col = offset
            th, tw = dtile.shape
            r0, c0 = max(0, -row), max(0, -col)
            r1, c1 = min(th, dh - row), min(tw, dw - col)
            if r0 >= r1 or c0 >= c1:
                continue
            part = self._stored_part(dtile, idx, Window(c0, r0, c1 - c0, r1 - r0))
            if part is None:
                continue
            paste(dest, part, row + r0, col + c0)

    def _stored_part(self, dtile: Tile, idx: list[int], window: Window) -> np.ma.MaskedArray | None:
        """A window of one stored tile's bands (None: the tile is not there)."""
        pb = self.dir_grid.pixelbuffer  # mapchete's output.pixelbuffer: a rim around each stored tile
        with ExitStack() as stack:
            src = self._open_stored(stack, dtile)
            if src is None:
                return None
            return src.read(idx, window=Window(window.col_off + pb, window.row_off + pb, window.width, window.height),
                            masked=True)

    def _open_stored(self, stack: ExitStack, dtile: Tile) -> Any:
        """The stored tile's dataset, closed with `stack` (None: the tile is not there)."""
        zoom = dtile.zoom
        path = self.tile_path(zoom, dtile.row, dtile.col)
        if self.remote is not None:
            data = self._tile_bytes(zoom, dtile.row, dtile.col)
            if data is None:
                return None
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # PNG tiles
            return stack.enter_context(stack.enter_context(MemoryFile(data)).open())   # fetched whole
        if not path.exists():
            return None
        return stack.enter_context(open_tile(path))

    def _warp_each(self, out: np.ma.MaskedArray, tile: Tile, idx: list[int], rs: Resampling, zoom: int,
                   wanted: Bounds) -> None:
        """mapchete's read of a tile directory in another CRS: each stored tile, rim and all,
        warped to the tile on its own, a later tile's valid pixels over an earlier one's."""
        for dtile in self.dir_grid.tiles_in_bounds(wanted, zoom):
            with ExitStack() as stack:
                src = self._open_stored(stack, dtile)
                if src is None:
                    continue
                part = warp_to_tile(src, idx, tile, rs, mask="nodata")
            valid = ~np.ma.getmaskarray(part)
            out[valid] = part[valid]   # (unmasks them)

    def _read_into(self, out: np.ma.MaskedArray, tile: Tile, idx: list[int],
                   rs: Resampling) -> None:
        footprint = transform_bounds_safe(tile.crs, self.crs, tile.buffered_bounds)
        if footprint is None or not self.zooms:
            return
        wanted = footprint.intersection(self.dir_bounds)  # type: ignore[arg-type]
        if wanted is None:
            return
        zoom = self._pick_zoom(tile, footprint)
        if self._same_crs and pixel_offset(tile.buffered_affine,
                                           self.dir_grid.tile(zoom, 0, 0).affine) is not None:
            self._paste_tiles(out, tile.buffered_affine, idx, zoom, wanted)
            return
        if self.zoom_matching == "gdal" and self.suffix in (".tif", ".tiff"):
            self._warp_each(out, tile, idx, rs, zoom, wanted)
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
                out[:] = warp_to_tile(ds, list(range(1, bands + 1)), tile, rs, mask=self.warp_mask)

    def close(self) -> None:
        """Nothing stays open: tile files are opened per read."""

    def __repr__(self) -> str:
        return f"TileDirectoryInput(name={self.name!r}, path={self.where!r})"


class TileDirectoryTileInput(RasterTileInput):
    """A tile directory input bound to one tile."""
