"""The Zarr geometry of one zoom level, and its chunks encoded and decoded by zarr-python.

A Zarr output keeps one array per zoom (`{zoom}/data`, dims band, y, x) covering the whole tile
matrix of the output grid, so stored tile (row, col) *is* chunk (or shard) (0, row, col): every
worker writes its tiles' objects directly, and a narrowed or later run writes into the same
array. zarr-python does all the encoding (codecs, sharding index, padding of edge chunks) on an
in-memory twin of the array; ziggurat writes the bytes it produced through its own atomic local
writes or one PUT per object, so a crash never leaves a half-written chunk and checksums come
from the bytes themselves.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Bounds, Grid, Tile

#: the data variable of every zoom group (GeoZarr multiscales: `{zoom}/data`)
VARIABLE = "data"
#: Zarr formats zarr-python writes; 2 is for readers that know only Zarr v2 (GDAL <= 3.10)
ZARR_FORMATS = (2, 3)
#: output.compress -> zarr codec name (no gzip: its header holds the time of writing, so the same
#: pixels would give other bytes and checksums on every run)
ZARR_CODECS = {"zstd": "zstd", "none": None}


def zarr_module() -> Any:
    try:
        import zarr
    except ImportError as exc:   # an optional extra
        raise OutputError("Zarr outputs need zarr-python 3: pip install 'ziggurat[zarr]'") from exc
    return zarr


def compressors(codec: str | None, zarr_format: int) -> Any:
    """The compressor list zarr-python takes for a format (None: uncompressed)."""
    if codec is None:
        return None
    if zarr_format == 2:
        import numcodecs

        return [numcodecs.Zstd(level=3)]
    from zarr.codecs import ZstdCodec

    return [ZstdCodec(level=3)]


@dataclass(frozen=True)
class Level:
    """One zoom's array: the output tiles of the store's extent, their pixels and the stored
    object (chunk or shard) and inner chunk."""

    zoom: int
    bands: int
    #: grid-CRS top-left corner of the array and pixel size
    left: float
    top: float
    xres: float
    yres: float
    height: int
    width: int
    #: pixels of one stored object: an output (meta)tile
    object_shape: tuple[int, int]
    #: inner chunks of a shard (None: the object is a plain chunk)
    inner: tuple[int, int] | None
    #: time steps of a time-series output (0: no time axis); one object then holds every step
    #: of its tile, as a shard of one chunk per step (Zarr v3) or one chunk (v2)
    steps: int = 0

    @classmethod
    def of(cls, grid: Grid, zoom: int, bands: int, shard: bool, extent: Bounds, process_grid: Grid,
           steps: int = 0) -> "Level":
        """`grid` is the output grid: its (meta)tiles are the stored objects. The array covers the
        process tiles meeting `extent` (grid CRS; a process tile writes all its output tiles), so
        chunk (0, i, j) is the (i, j)-th output tile of that block."""
        cover = process_grid.with_options(pixelbuffer=0)
        rows, cols = cover.tile_range(extent, zoom)
        if not rows or not cols:
            raise OutputError(f"zoom {zoom}: the output's extent {tuple(extent)} holds no tile")
        corners = [cover.tile_bounds(zoom, r, c) for r in (rows[0], rows[-1]) for c in (cols[0], cols[-1])]
        box = Bounds.union_all(corners)
        assert box is not None
        xres, yres = grid.resolution(zoom)
        base = grid.with_options(metatiling=1)
        th, tw = base.max_tile_shape(zoom)
        m = grid.metatiling
        inner = (th, tw) if shard and m > 1 else None
        return cls(zoom, bands, box.left, box.top, xres, yres, round((box.top - box.bottom) / yres),
                   round((box.right - box.left) / xres), (th * m, tw * m), inner, steps)

    @property
    def lead(self) -> tuple[int, ...]:
        """The axes before y, x: (time, band) or (band,)."""
        return (self.steps, self.bands) if self.steps else (self.bands,)

    @property
    def dimensions(self) -> list[str]:
        return ["time", "band", "y", "x"] if self.steps else ["band", "y", "x"]

    @property
    def shape2d(self) -> tuple[int, int]:
        return self.height, self.width

    def window(self, tile: Tile) -> tuple[int, int, int, int]:
        """(row0, row1, col0, col1) of a stored tile in the array (edge tiles are clipped)."""
        b = tile.bounds
        r0, c0 = round((self.top - b.top) / self.yres), round((b.left - self.left) / self.xres)
        h, w = tile.shape
        if r0 < 0 or c0 < 0 or r0 + h > self.height or c0 + w > self.width:
            raise OutputError(f"tile {tile} lies outside the store's extent at zoom {self.zoom}")
        return r0, r0 + h, c0, c0 + w

    def chunk(self, tile: Tile) -> tuple[int, int]:
        """The tile's chunk (or shard) index (y, x) in the array."""
        r0, _, c0, _ = self.window(tile)
        oh, ow = self.object_shape
        if r0 % oh or c0 % ow:
            raise OutputError(f"tile {tile} is not aligned to the store's chunks at zoom {self.zoom}")
        return r0 // oh, c0 // ow


class ChunkCodec:
    """Encodes and decodes one zoom's stored objects with zarr-python, per thread (zarr's arrays
    over a dict are cheap; one per thread keeps writes from different threads apart)."""

    def __init__(self, level: Level, dtype: np.dtype[Any], nodata: float | int | None, codec: str | None,
                 zarr_format: int) -> None:
        self.level = level
        self.dtype = dtype
        self.nodata = nodata
        self.codec = codec
        self.zarr_format = zarr_format
        self._local = threading.local()

    def fill_value(self) -> Any:
        if self.nodata is None:
            return 0
        if isinstance(self.nodata, float) and math.isnan(self.nodata):
            return float("nan")
        return self.dtype.type(self.nodata).item()

    def create(self, store: Any, path: str, attributes: dict[str, Any] | None = None) -> Any:
        """The array in `store` at `path` (metadata only: no chunk is written)."""
        zarr = zarr_module()
        lv = self.level
        kwargs: dict[str, Any] = {}
        if lv.steps and self.zarr_format == 3:   # a shard per tile, a chunk per step
            kwargs.update(shards=(*lv.lead, *lv.object_shape), chunks=(1, lv.bands, *(lv.inner or lv.object_shape)))
        elif lv.inner is not None:
            kwargs.update(shards=(*lv.lead, *lv.object_shape), chunks=(*lv.lead, *lv.inner))
        else:
            kwargs["chunks"] = (*lv.lead, *lv.object_shape)
        if self.zarr_format == 2:
            kwargs.update(chunk_key_encoding={"name": "v2", "separator": "/"})
        else:
            kwargs.update(dimension_names=lv.dimensions)
        return zarr.create_array(store, name=path, shape=(*lv.lead, lv.height, lv.width), dtype=self.dtype,
                                 fill_value=self.fill_value(), compressors=compressors(self.codec, self.zarr_format),
                                 zarr_format=self.zarr_format, attributes=attributes or {}, overwrite=True,
                                 config={"write_empty_chunks": True}, **kwargs)

    def _twin(self) -> tuple[Any, dict[str, Any]]:
        twin = getattr(self._local, "twin", None)
        if twin is None:
            zarr = zarr_module()
            data: dict[str, Any] = {}
            array = self.create(zarr.storage.MemoryStore(data), "a")
            twin = self._local.twin = (array, data)
        return twin

    def chunk_key(self, tile: Tile) -> str:
        """The object's key inside the array folder."""
        i, j = self.level.chunk(tile)
        lead = "0/0/" if self.level.steps else "0/"
        return f"{lead}{i}/{j}" if self.zarr_format == 2 else f"c/{lead}{i}/{j}"

    def _clear(self, data: dict[str, Any]) -> None:
        """Drop the twin's chunks, keep its metadata documents."""
        prefix = f"a/{self.chunk_key_prefix}"
        for key in [k for k in data if k.startswith(prefix)]:
            del data[key]

    @property
    def chunk_key_prefix(self) -> str:
        return "0/" if self.zarr_format == 2 else "c/"

    def encode(self, tile: Tile, block: np.ndarray) -> bytes:
        """The stored bytes of a tile's object from its (bands, h, w) pixels."""
        array, data = self._twin()
        r0, r1, c0, c1 = self.level.window(tile)
        if block.shape[1:] != (r1 - r0, c1 - c0):
            raise OutputError(f"tile {tile}: {block.shape[1:]} px for a {(r1 - r0, c1 - c0)} chunk window")
        self._clear(data)
        array[..., r0:r1, c0:c1] = block.reshape(*self.level.lead, *block.shape[1:])
        key = f"a/{self.chunk_key(tile)}"
        buf = data.pop(key, None)
        self._clear(data)
        if buf is None:
            raise OutputError(f"tile {tile}: zarr wrote no chunk {key}")
        return bytes(buf.to_bytes())

    def decode(self, tile: Tile, raw: bytes) -> np.ndarray:
        """A stored object's pixels, (bands, h, w) of the tile (an edge object's padding cut off;
        a time series' steps folded into the bands, step after step)."""
        from zarr.core.buffer import default_buffer_prototype

        array, data = self._twin()
        self._clear(data)
        data[f"a/{self.chunk_key(tile)}"] = default_buffer_prototype().buffer.from_bytes(raw)
        r0, r1, c0, c1 = self.level.window(tile)
        try:
            values = np.asarray(array[..., r0:r1, c0:c1])
            return values.reshape(-1, *values.shape[-2:])   # time and band folded, as written
        finally:
            self._clear(data)


__all__ = ["ChunkCodec", "Level", "VARIABLE", "ZARR_CODECS", "ZARR_FORMATS", "compressors", "zarr_module"]
