"""Raster file inputs (anything GDAL opens), read per tile into the tile grid.

An input is opened once per worker; each thread keeps its own dataset handle because
rasterio datasets must not be shared between threads, and reopening per tile is slow.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.io import DatasetReader
from rasterio.transform import array_bounds
from rasterio.windows import Window

from ziggurat.core.errors import InputError
from ziggurat.core.grid import Bounds, Grid, Tile
from ziggurat.core.location import Location, gdal_path, is_url
from ziggurat.io.checksum import fingerprint_config
from ziggurat.io.common import (
    crs_equal,
    empty_masked,
    fill_value,
    normalize_indexes,
    paste,
    pixel_offset,
    resampling_from_name,
    transform_bounds_safe,
)
from ziggurat.io.storage.options import apply_gdal_options
from ziggurat.io.warp import past_global_edge, warp_to_tile
from ziggurat.recipe import InputConfig

logger = logging.getLogger(__name__)


class ThreadLocalDataset:
    """One open dataset per thread, opened on first use and reused; picklable (handles dropped)."""

    def __init__(self, path: str | Path, name: str) -> None:
        self.path = str(path)
        self.name = name
        self._init_local()

    def _init_local(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        # weak: a finished thread's handle goes away with its thread-local storage
        self._handles: weakref.WeakSet[DatasetReader] = weakref.WeakSet()

    def get(self) -> DatasetReader:
        ds = getattr(self._local, "ds", None)
        if ds is None or ds.closed:
            try:
                ds = rasterio.open(self.path)
            except Exception as exc:  # RasterioIOError, CPLE_* ...
                raise InputError(f"input {self.name!r}: cannot open {self.path}: {exc}") from exc
            self._local.ds = ds
            with self._lock:
                self._handles.add(ds)
        return ds

    def close(self) -> None:
        with self._lock:
            handles = list(self._handles)
            self._handles.clear()
        for ds in handles:
            ds.close()
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_local()


def _dataset_bounds(transform: Affine, height: int, width: int) -> Bounds:
    west, south, east, north = array_bounds(height, width, transform)
    return Bounds(min(west, east), min(south, north), max(west, east), max(south, north))


class RasterInput:
    """A raster file as a recipe input; `bounds` are in the grid CRS, clipped to the grid."""

    tile_sources = False  # one whole: its fingerprint covers every tile
    fingerprint = staticmethod(fingerprint_config)

    def sources(self, tile: Tile) -> list[tuple[Path, str | None]]:
        return []

    def __init__(self, config: InputConfig, grid: Grid) -> None:
        self.name: str = config.name
        self.path = gdal_path(config.path)  # URLs as GDAL paths: never through pathlib
        if is_url(str(config.path)):
            apply_gdal_options(Location.parse(str(config.path)), config.storage_options)
        self.grid = grid
        self.options: dict[str, Any] = dict(config.options or {})
        self.default_resampling: Resampling = resampling_from_name(
            self.options.get("resampling", "nearest"))
        #: how a warped read tells valid pixels: "alpha" (GDAL's alpha band: the footprint, masks
        #: and nodata) or "nodata" (GDAL's source/destination nodata, as mapchete reads; the
        #: default of `.mapchete` recipes, whose resampled values then equal mapchete's)
        self.warp_mask = str(self.options.get("warp_mask", "alpha"))
        if self.warp_mask not in ("alpha", "nodata"):
            raise InputError(f"input {self.name!r}: warp_mask must be 'alpha' or 'nodata', got {self.warp_mask!r}")
        self._datasets = ThreadLocalDataset(self.path, self.name)
        src = self._datasets.get()
        self.count: int = src.count
        self.band_names: tuple[str | None, ...] = tuple(src.descriptions)
        self.dtype: str = src.dtypes[0]
        self.nodata: float | int | None = src.nodata
        self._fill = fill_value(np.dtype(self.dtype), self.nodata)   # of every array read
        self._band_nodata = simple_masks(src)
        self.transform: Affine = src.transform
        self.width: int = src.width
        self.height: int = src.height
        if src.crs is None:
            self.close()
            raise InputError(f"input {self.name!r}: {self.path} has no CRS")
        self.crs: CRS = src.crs
        self._same_crs = crs_equal(self.crs, grid.crs)
        self.bounds: Bounds | None = self._grid_bounds()

    def _grid_bounds(self) -> Bounds | None:
        """Footprint in the grid CRS; None when the source lies outside the grid."""
        grid_bounds = self.grid.bounds()
        src_bounds = _dataset_bounds(self.transform, self.height, self.width)
        out = transform_bounds_safe(self.crs, self.grid.crs, src_bounds)
        if out is None:
            logger.warning("input %r: cannot transform the bounds of %s into the grid CRS; "
                           "assuming the whole grid", self.name, self.path)
            return grid_bounds
        return out.intersection(grid_bounds)

    # -- tiles ---------------------------------------------------------------------------
    def for_tile(self, tile: Tile) -> "RasterTileInput":
        return RasterTileInput(self, tile)

    def is_empty(self, tile: Tile) -> bool:
        return self.bounds is None or not self.bounds.intersects(tile.buffered_bounds)

    def read(self, tile: Tile, indexes: int | Sequence[int] | None = None,
             resampling: str | Resampling | None = None, *, method: str = "auto"
             ) -> np.ma.MaskedArray:
        """The tile's buffered window in the grid; `method` "warp" forces the general path."""
        if method not in ("auto", "warp"):
            raise ValueError(f"method must be 'auto' or 'warp', got {method!r}")
        idx, squeeze = normalize_indexes(indexes, self.count, self.name, self.band_names)
        rs = self.default_resampling if resampling is None else resampling_from_name(resampling)
        if self.is_empty(tile):
            out = empty_masked(len(idx), tile.buffered_shape, self.dtype, self.nodata)
        else:
            offset = self.aligned_offset(tile) if method == "auto" else None
            if self.warp_mask == "nodata" and past_global_edge(tile):
                offset = None   # mapchete's read wraps the buffer round the antimeridian
            try:
                out = (self._read_window(idx, tile, offset) if offset is not None
                       else self._read_warped(idx, tile, rs))
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"input {self.name!r}: cannot read {self.path} for tile "
                                 f"{tile}: {exc}") from exc
        return out[0] if squeeze else out

    def aligned_offset(self, tile: Tile) -> tuple[int, int] | None:
        """(row, col) of the buffered tile in source pixels when no resampling is needed."""
        if not self._same_crs:
            return None
        if self.transform.a <= 0 or self.transform.e >= 0:
            return None
        return pixel_offset(self.transform, tile.buffered_affine)

    def _read_window(self, idx: list[int], tile: Tile, offset: tuple[int, int]) -> np.ma.MaskedArray:
        """Fast path: a plain windowed read (no `boundless`, which builds a WarpedVRT)."""
        row, col = offset
        h, w = tile.buffered_shape
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + h, self.height), min(col + w, self.width)
        inside = (r0, c0, r1, c1) == (row, col, row + h, col + w)
        if inside:   # most tiles: the read is the tile, no nodata frame to paste it into
            data = masked_read(self._datasets.get(), idx, Window(col, row, w, h), self._band_nodata)
            # a full mask even without nodata (rasterio gives `nomask`): processes index it
            return np.ma.masked_array(data.data, mask=np.ma.getmaskarray(data), copy=False,
                                      fill_value=self._fill)
        out = empty_masked(len(idx), (h, w), self.dtype, self.nodata)
        if r0 >= r1 or c0 >= c1:
            return out
        src = self._datasets.get()
        data = masked_read(src, idx, Window(c0, r0, c1 - c0, r1 - r0), self._band_nodata)
        paste(out, data, r0 - row, c0 - col)
        return out

    def _read_warped(self, idx: list[int], tile: Tile, resampling: Resampling) -> np.ma.MaskedArray:
        return warp_to_tile(self._datasets.get(), idx, tile, resampling, mask=self.warp_mask)

    def close(self) -> None:
        self._datasets.close()

    def __enter__(self) -> "RasterInput":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RasterInput(name={self.name!r}, path={str(self.path)!r})"


def simple_masks(src: DatasetReader) -> tuple[Any, ...] | None:
    """Each band's nodata value (None: all valid) when that is all its mask is, so a read can test
    the values itself instead of reading GDAL's mask band (a second pass over every block, about
    40 % of a read's CPU); None when GDAL must: alpha bands, mask files, a nodata value the
    dtype cannot hold (GDAL then masks nothing)."""
    out: list[Any] = []
    dtype = np.dtype(src.dtypes[0])
    if any(d != src.dtypes[0] for d in src.dtypes):
        return None
    for flags, nodata in zip(src.mask_flag_enums, src.nodatavals):
        if list(flags) == [MaskFlags.all_valid]:
            out.append(None)
        elif list(flags) == [MaskFlags.nodata] and nodata is not None and _holds(dtype, nodata):
            out.append(nodata)
        else:
            return None
    return tuple(out)


def _holds(dtype: np.dtype, value: float) -> bool:
    """Whether `dtype` holds `value` exactly (NaN: float dtypes; floats compare in integers only
    when whole), so an equality test finds what GDAL's nodata mask finds."""
    if math.isnan(value):
        return dtype.kind == "f"
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(value).is_integer() and info.min <= value <= info.max
    return dtype.kind == "f" and float(np.asarray(value, dtype=dtype)) == value


def masked_read(src: DatasetReader, idx: list[int], window: Window, band_nodata: tuple[Any, ...] | None
                ) -> np.ma.MaskedArray:
    """`src.read(idx, window=window, masked=True)`, with the masks of plain nodata bands tested in
    numpy (see `simple_masks`)."""
    if band_nodata is None:
        return src.read(idx, window=window, masked=True)
    data = src.read(idx, window=window)
    mask = np.zeros(data.shape, dtype=bool)
    for k, band in enumerate(idx):
        nodata = band_nodata[band - 1]
        if nodata is None:
            continue
        if isinstance(nodata, float) and math.isnan(nodata):
            np.isnan(data[k], out=mask[k])
        else:
            np.equal(data[k], np.asarray(nodata, dtype=data.dtype), out=mask[k])
    return np.ma.masked_array(data, mask=mask, copy=False)


class OpenRasters:
    """Raster inputs opened on demand, per thread, the least recently used closed beyond `limit`
    (many files read as one: mosaic members, STAC assets)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._local = threading.local()

    def get(self, key: Any, opener: Callable[[], "RasterInput"]) -> "RasterInput":
        cache: OrderedDict[Any, RasterInput] | None = getattr(self._local, "open", None)
        if cache is None:
            cache = self._local.open = OrderedDict()
        got = cache.get(key)
        if got is not None:
            cache.move_to_end(key)
            return got
        got = cache[key] = opener()
        while len(cache) > self.limit:
            cache.popitem(last=False)[1].close()
        return got

    def close(self) -> None:
        """This thread's open inputs."""
        cache = getattr(self._local, "open", None)
        if cache:
            for inp in cache.values():
                inp.close()
            cache.clear()


class TileReader(Protocol):
    """What a tile input needs from its source (RasterInput, TileDirectoryInput)."""

    name: str

    def read(self, tile: Tile, indexes: int | Sequence[int] | None = None,
             resampling: str | Resampling | None = None) -> np.ma.MaskedArray: ...

    def is_empty(self, tile: Tile) -> bool: ...


class RasterTileInput:
    """What a process receives: an input bound to one tile; reads lazily."""

    kind: Literal["raster", "vector"] = "raster"

    def __init__(self, source: TileReader, tile: Tile) -> None:
        self.source = source
        self.tile = tile

    def read(self, indexes: int | Sequence[int] | None = None,
             resampling: str | Resampling | None = None) -> np.ma.MaskedArray:
        return self.source.read(self.tile, indexes, resampling)

    def is_empty(self) -> bool:
        return self.source.is_empty(self.tile)

    def __repr__(self) -> str:
        return f"RasterTileInput({self.source.name!r}, {self.tile})"
