"""Zarr output (v3 by default, v2 on request): one multiscales group, one array per zoom, written
by every worker at once.

Layout (GeoZarr conventions `multiscales`, `proj:`, `spatial:`; CF-style x/y coordinates, and
`_CRS`, which GDAL's Zarr driver reads):

```
out.zarr/zarr.json                 root group: multiscales layout of the zoom groups, consolidated
out.zarr/{zoom}/zarr.json          level group: proj:code, spatial:transform/shape/bbox
out.zarr/{zoom}/data               (band, y, x) over the zoom's whole tile matrix
out.zarr/{zoom}/data/c/0/{r}/{c}   stored tile (r, c): a chunk, or a shard of grid tiles
out.zarr/{zoom}/x, y, band         coordinates
out.zarr/metadata.json, .ziggurat/ ziggurat's description, ledger and provenance
```

A stored tile is one object, so the ledger, checksums, continue mode, `verify` and `reproduce`
work exactly as for tile directories (`TileFolder`); the parent writes only the metadata
documents, in `start_run`.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
import struct
import threading
import warnings
from typing import Any, Sequence

import numpy as np

from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Bounds, Grid, Tile, TileIndex
from ziggurat.core.timesteps import EPOCH, TimeSteps
from ziggurat.io.common import nodata_from_json, nodata_to_json, same_nodata
from ziggurat.io.outputs.folder import METADATA_FILE, TileFolder, read_metadata
from ziggurat.io.outputs.rasterarrays import RasterArrays, band_json, cut_tiles
from ziggurat.io.outputs.zarrcodec import VARIABLE, ZARR_CODECS, ChunkCodec, Level, zarr_module
from ziggurat.io.protocols import OutputCapabilities
from ziggurat.io.storage.atomic import write_bytes_atomic
from ziggurat.recipe import OutputConfig

log = logging.getLogger(__name__)

#: zarr-conventions registrations (https://github.com/zarr-conventions)
CONVENTIONS = {
    "multiscales": {"uuid": "d35379db-88df-4056-af3a-620245f8e347", "name": "multiscales",
                    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v1/schema.json",
                    "spec_url": "https://github.com/zarr-conventions/multiscales/blob/v1/README.md",
                    "description": "Multiscale layout of zarr datasets"},
    "proj:": {"uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f", "name": "proj:",
              "schema_url": "https://raw.githubusercontent.com/zarr-conventions/geo-proj/refs/tags/v1/schema.json",
              "spec_url": "https://github.com/zarr-conventions/geo-proj/blob/v1/README.md",
              "description": "Coordinate reference system information for geospatial data"},
    "spatial:": {"uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4", "name": "spatial:",
                 "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
                 "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
                 "description": "Spatial coordinate information"},
}


def crs_code(grid: Grid) -> dict[str, Any]:
    auth = grid.crs.to_authority()
    return {"proj:code": f"{auth[0]}:{auth[1]}"} if auth else {"proj:wkt2": grid.crs.to_wkt()}


class ZarrOutput(TileFolder, RasterArrays):
    """`output.path` ending in .zarr (or `format: Zarr`): stored tiles are the chunks (or shards)."""

    writes = ("Zarr",)
    capabilities = OutputCapabilities(kind="raster", tile_files=True, overviews=True, writes_in_parent=False,
                                      parent_writes=True, threadsafe_writes=True)
    suffix = ""

    def __init__(self, config: OutputConfig, grid: Grid) -> None:
        super().__init__(config, grid)
        self._init_arrays(config)
        self._init_series(config)
        if not self.layout.is_default:
            raise OutputError(f"output {self.where}: a Zarr store has no tile_path_schema (chunk keys are Zarr's)")
        options = dict(config.options)
        self.zarr_format = int(options.get("zarr_format", 3))
        self.shard = bool(options.get("shard", False))
        if self.compress not in ZARR_CODECS:
            raise OutputError(f"output {self.where}: compress {self.compress!r} has no Zarr codec; "
                              f"use one of {', '.join(ZARR_CODECS)}")
        if self.shard and self.zarr_format == 2:
            raise OutputError(f"output {self.where}: sharding needs zarr_format 3")
        self._codecs: dict[int, ChunkCodec] = {}
        self._earlier: dict[int, ChunkCodec] = {}   # a series being extended: its stored steps' codecs
        self._lock = threading.Lock()
        #: the recipe's whole area and zooms (`set_extent`): the arrays are sized from it once
        self.extent: Bounds | None = None
        self.zooms: tuple[int, ...] = ()

    def set_extent(self, zooms: Sequence[int], bounds: Bounds | None) -> None:
        """The recipe's area, snapped to output tiles at each zoom, is what the arrays cover; a
        later run of the recipe over another area is refused by `prepare` (settings differ)."""
        if bounds is None:
            raise OutputError(f"Zarr output {self.where}: the recipe covers no area, so its arrays have no size")
        self.extent = Bounds(*(round(v, 9) for v in bounds))
        self.zooms = tuple(sorted(zooms))

    # -- geometry ---------------------------------------------------------------------------------
    def codec(self, zoom: int) -> ChunkCodec:
        with self._lock:
            codec = self._codecs.get(zoom)
            if codec is None:
                if self.extent is None:
                    self._stored_extent()
                assert self.extent is not None
                level = Level.of(self.output_grid, zoom, self.step_bands, self.shard, self.extent, self.grid,
                                 len(self.time) if self.time is not None else 0)
                codec = self._codecs[zoom] = ChunkCodec(level, self.dtype, self.nodata,
                                                        ZARR_CODECS[self.compress], self.zarr_format)
            return codec

    def tile_key(self, tile: Tile | TileIndex) -> str:
        if not isinstance(tile, Tile):
            tile = self.output_grid.tile(*tile[:3])
        try:
            return f"{tile.zoom}/{VARIABLE}/{self.codec(tile.zoom).chunk_key(tile)}"
        except OutputError:   # outside the arrays: a name no chunk has (never written)
            return f"{tile.zoom}/{VARIABLE}/outside/{tile.row}/{tile.col}"

    # -- metadata.json ----------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        out = self.series_settings({"format": self.format, "dtype": self.dtype.name, "bands": self.bands,
                                    "nodata": nodata_to_json(self.nodata), "compress": self.compress,
                                    "zarr_format": self.zarr_format, "shard": self.shard,
                                    "extent": None if self.extent is None else list(self.extent),
                                    "zooms": list(self.zooms)})
        if self.band_specs:
            out["band_specs"] = band_json(self.band_specs)
        return out

    def strict_settings(self) -> tuple[tuple[str, Any], ...]:
        # one array has one codec: unlike tile files, chunks cannot differ in compression
        return (("format", self.format), ("dtype", self.dtype.name), ("bands", self.step_bands),
                ("nodata", nodata_to_json(self.nodata)), ("compress", self.compress),
                ("zarr_format", self.zarr_format), ("shard", self.shard), ("extent", self.settings()["extent"])) \
            + ((("time", self.settings()["time"]),) if self.time is not None else ())

    def _differences(self, existing: Any) -> list[str]:
        return super()._differences(existing) + self.series_differences(existing)

    def same_setting(self, key: str, on_disk: Any, now: Any) -> bool:
        if key == "nodata":
            return same_nodata(nodata_from_json(on_disk), self.nodata)
        if key == "extent":   # the same tiles at every zoom: the same arrays
            try:
                other = Bounds(*on_disk)
            except TypeError:
                return False
            return all(self.output_grid.tile_range(other, z) == self.output_grid.tile_range(self.extent, z)
                       for z in self.zooms) if self.extent is not None else False
        return bool(on_disk == now)

    def _stored_extent(self) -> None:
        """A store opened to be read (preview, overviews, status): its extent from metadata.json."""
        import json

        raw = self.store.get(METADATA_FILE) if self.store is not None else None
        try:
            meta = json.loads(raw) if raw is not None else read_metadata(self.path)
            out = meta["output"]
            self.extent, self.zooms = Bounds(*out["extent"]), tuple(out.get("zooms") or ())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OutputError(f"Zarr output {self.where}: no extent recorded in its {METADATA_FILE}") from exc

    def check_run(self, zooms: Sequence[int], bounds: Bounds | None) -> None:
        """Runs within the recipe's area and zooms: the arrays cover exactly those."""
        if self.extent is None:
            raise OutputError(f"Zarr output {self.where}: the recipe covers no area")
        outside = sorted(set(zooms) - set(self.zooms))
        if outside:
            raise OutputError(f"Zarr output {self.where}: zoom(s) {outside} are not among the recipe's "
                              f"{list(self.zooms)}")

    def metadata(self) -> dict[str, Any]:
        meta = super().metadata()
        meta.pop("driver", None)   # not a mapchete tile directory
        meta.pop("pyramid", None)
        return meta

    # -- the Zarr documents (parent only) -----------------------------------------------------------
    def start_run(self, zooms: Sequence[int], bounds: Bounds | None) -> None:
        """Write the group and array documents of every zoom of the recipe (unchanged ones are
        left alone), so the store is complete and readable from the first tile on."""
        for key, data in self.documents(sorted(set(self.zooms) | set(zooms))).items():
            self._put_document(key, data)

    def _put_document(self, key: str, data: bytes) -> None:
        if self.store is not None:
            self.store.put(key, data)
            return
        path = self.path / key
        try:
            if path.is_file() and path.read_bytes() == data:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, data)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc}") from exc

    def documents(self, zooms: Sequence[int]) -> dict[str, bytes]:
        """Every metadata document and coordinate chunk of the store, built by zarr-python in memory
        (consolidated into the root group, as the multiscales convention recommends)."""
        zarr = zarr_module()
        data: dict[str, Any] = {}
        mem = zarr.storage.MemoryStore(data)
        grid = self.output_grid
        layout = []
        finest = max(zooms) if zooms else None
        for zoom in zooms:
            entry: dict[str, Any] = {"asset": str(zoom), "spatial:transform": self._transform(zoom),
                                     "spatial:shape": list(self.codec(zoom).level.shape2d)}
            if finest is not None and zoom != finest:   # overview levels: each from the next finer one
                source = min(z for z in zooms if z > zoom)
                factor = grid.resolution(zoom)[0] / grid.resolution(source)[0]
                entry.update(derived_from=str(source), transform={"scale": [factor, factor],
                                                                  "translation": [0.0, 0.0]})
            layout.append(entry)
        root_attrs = {"zarr_conventions": list(CONVENTIONS.values()),
                      "multiscales": {"layout": layout, "resampling_method": "nearest"},
                      **crs_code(grid), "spatial:dimensions": ["y", "x"]}
        root = zarr.open_group(mem, mode="w", zarr_format=self.zarr_format, attributes=root_attrs)
        for zoom in zooms:
            self._level_documents(root, mem, zoom)
        with warnings.catch_warnings():   # "consolidated metadata is not part of the v3 spec" (zarr-python)
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(mem, zarr_format=self.zarr_format)
        return {k: bytes(v.to_bytes()) for k, v in data.items()}

    def _transform(self, zoom: int) -> list[float]:
        xres, yres = self.output_grid.resolution(zoom)
        lv = self.codec(zoom).level
        return [xres, 0.0, lv.left, 0.0, -yres, lv.top]

    def _level_documents(self, root: Any, mem: Any, zoom: int) -> None:
        codec = self.codec(zoom)
        lv = codec.level
        t = self._transform(zoom)
        bbox = [lv.left, lv.top + lv.height * t[4], lv.left + lv.width * t[0], lv.top]
        spatial = {"zarr_conventions": [CONVENTIONS["proj:"], CONVENTIONS["spatial:"]], **crs_code(self.output_grid),
                   "spatial:dimensions": ["y", "x"], "spatial:transform_type": "affine",
                   "spatial:registration": "pixel", "spatial:transform": t, "spatial:shape": [lv.height, lv.width],
                   "spatial:bbox": bbox}
        group = root.create_group(str(zoom), attributes=spatial, overwrite=True)
        crs = self.output_grid.crs
        auth = crs.to_authority()
        attrs: dict[str, Any] = {**spatial, "grid_mapping": "spatial_ref",
                                 "_CRS": {"wkt": crs.to_wkt(),
                                          **({"url": f"http://www.opengis.net/def/crs/{auth[0]}/0/{auth[1]}"}
                                             if auth else {})}}
        if self.band_specs:
            attrs["ziggurat:bands"] = band_json(self.band_specs)
        if self.zarr_format == 2:
            attrs["_ARRAY_DIMENSIONS"] = lv.dimensions
        elif self.nodata is not None and math.isfinite(self.nodata):
            # CF's nodata marker: xarray decodes Zarr v3 arrays by it (v2's fill_value serves there)
            attrs["_FillValue"] = cf_fill_value(codec.fill_value(), self.dtype)
        codec.create(mem, f"{zoom}/{VARIABLE}", attrs)
        names = [(s or {}).get("name") for s in self.band_specs]
        band = np.array(names, dtype="U") if names and all(names) else np.arange(1, lv.bands + 1, dtype="int32")
        units = "degrees" if crs.is_geographic else "metre"
        coords: dict[str, tuple[np.ndarray, dict[str, Any]]] = {
            "x": ((lv.left + (np.arange(lv.width) + 0.5) * t[0]).astype("float64"),
                  {"standard_name": "projection_x_coordinate", "units": units}),
            "y": ((lv.top + (np.arange(lv.height) + 0.5) * t[4]).astype("float64"),
                  {"standard_name": "projection_y_coordinate", "units": units}),
            "band": (band, {})}
        if self.time is not None:   # CF time: xarray decodes it to dates without options
            coords.update(time_coordinates(self.time))
        for name, (values, extra) in coords.items():
            dim = "time" if name.startswith("time") else name
            kwargs: dict[str, Any] = {"attributes": {"_ARRAY_DIMENSIONS": [dim], **extra}} \
                if self.zarr_format == 2 else {"dimension_names": [dim], "attributes": extra}
            arr = group.create_array(name, shape=values.shape, dtype=values.dtype if values.dtype.kind != "U" else str,
                                     chunks=(min(len(values), 1 << 20),), overwrite=True, **kwargs)
            arr[:] = values

    # -- tiles ------------------------------------------------------------------------------------
    def write(self, process_tile: Tile, data: np.ndarray | np.ma.MaskedArray) -> list[TileIndex]:
        out, valid = self.cast(process_tile, data)
        return self._write_cut(process_tile, out, valid)

    def write_prepared(self, process_tile: Tile, array: np.ndarray) -> list[TileIndex]:
        return self._write_cut(process_tile, array, self.valid_pixels(array))

    def _write_cut(self, process_tile: Tile, out: np.ndarray, valid: np.ndarray) -> list[TileIndex]:
        written: list[TileIndex] = []
        codec = self.codec(process_tile.zoom)
        for tile, block in cut_tiles(process_tile, self.output_tiles(process_tile), out, valid):
            raw = codec.encode(tile, np.ascontiguousarray(block))
            self.put_tile(tile, raw)
            written.append(tile.index)
        return written

    def read(self, tile: Tile | TileIndex) -> np.ma.MaskedArray | None:
        """One stored tile, (bands, h, w), or None if it was never written."""
        return self._read_with(tile, None)

    def read_earlier(self, tile: Tile, steps: int) -> np.ma.MaskedArray | None:
        """A shard of a series being extended, as stored: `steps` steps (the array's earlier shape)."""
        return self._read_with(tile, steps)

    def _read_with(self, tile: Tile | TileIndex, steps: int | None) -> np.ma.MaskedArray | None:
        if not isinstance(tile, Tile):
            tile = self.output_grid.tile(*tile[:3])
        raw = self.tile_bytes_of(tile)
        if raw is None:
            return None
        codec = self.codec(tile.zoom)
        if steps is not None:
            with self._lock:
                earlier = self._earlier.get(tile.zoom)
                if earlier is None:
                    earlier = self._earlier[tile.zoom] = ChunkCodec(
                        dataclasses.replace(codec.level, steps=steps), self.dtype, self.nodata,
                        ZARR_CODECS[self.compress], self.zarr_format)
            codec = earlier
        try:
            values = codec.decode(tile, raw)
        except Exception as exc:
            raise OutputError(f"tile {tile}: cannot decode {self.where}/{self.tile_key(tile)}: {exc}") from exc
        return masked(values, self.nodata)

    def __repr__(self) -> str:
        return f"ZarrOutput(path={str(self.path)!r})"


def time_coordinates(time: TimeSteps) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """`time` (each step's start) and `time_end` as CF-encoded seconds since 1970."""
    attrs = {"units": "seconds since 1970-01-01 00:00:00", "calendar": "proleptic_gregorian"}
    starts = np.array([(s.start - EPOCH).total_seconds() for s in time], dtype="int64")
    ends = np.array([(s.end - EPOCH).total_seconds() for s in time], dtype="int64")
    return {"time": (starts, {**attrs, "standard_name": "time", "axis": "T"}),
            "time_end": (ends, {**attrs, "long_name": "end of the time step (exclusive)"})}


def masked(values: np.ndarray, nodata: float | int | None) -> np.ma.MaskedArray:
    if nodata is None:
        return np.ma.masked_array(values, mask=np.zeros(values.shape, bool))
    if isinstance(nodata, float) and math.isnan(nodata):
        return np.ma.masked_array(values, mask=np.isnan(values))
    return np.ma.masked_array(values, mask=values == nodata)


def cf_fill_value(value: Any, dtype: np.dtype) -> Any:
    """`_FillValue` as xarray encodes it in Zarr v3 attributes: integers as they are, floats as the
    base64 of their little-endian float64 bytes (JSON cannot hold every float exactly)."""
    if np.dtype(dtype).kind == "f":
        return base64.standard_b64encode(struct.pack("<d", float(value))).decode()
    return int(value)


__all__ = ["CONVENTIONS", "ZarrOutput", "masked"]
