"""What every raster output shares, tile directory or single file: checked dtype, bands and
nodata, and the array a process returns cropped to the tile and cast for writing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Grid, Tile
from ziggurat.io.common import check_nodata, to_dtype
from ziggurat.recipe import OutputConfig

PREDICTOR_CODECS = {"deflate", "lzw", "zstd"}


class TaggedArray(np.ma.MaskedArray):
    """A process result with GeoTIFF tags (mapchete's ``return array, tags``): str keys are
    file-wide tags, int keys {band: {name: value}} band tags."""

    tags: dict[Any, Any]

    @classmethod
    def wrap(cls, array: Any, tags: dict[Any, Any]) -> "TaggedArray":
        out = np.ma.asarray(array).view(cls)
        out.tags = dict(tags)
        return out

    def split_tags(self) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
        """(file-wide, per band) with string values, as GDAL stores them."""
        tags = getattr(self, "tags", {})  # a view made by numpy has no tags of its own
        files = {str(k): str(v) for k, v in tags.items() if not isinstance(k, int)}
        bands = {int(k): {str(n): str(v) for n, v in dict(v).items()} for k, v in tags.items() if isinstance(k, int)}
        return files, bands


def band_json(specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Band specs as metadata.json keeps them (colour tables keyed by strings, colours as lists)."""
    out = []
    for spec in specs:
        item: dict[str, Any] = {k: v for k, v in spec.items() if k not in ("colormap", "classes")}
        if spec.get("colormap"):
            item["colormap"] = {str(k): list(v) for k, v in spec["colormap"].items()}
        if spec.get("classes"):
            item["classes"] = [{**c, **({"color": list(c["color"])} if "color" in c else {})} for c in spec["classes"]]
        out.append(item)
    return out


def colour_table(spec: Mapping[str, Any]) -> dict[int, tuple[int, ...]] | None:
    """The band's GDAL colour table: its colormap, else the colours of its classes."""
    if spec.get("colormap"):
        return {int(k): tuple(v) for k, v in spec["colormap"].items()}
    coloured = {int(c["value"]): tuple(c["color"]) for c in spec.get("classes") or () if c.get("color")}
    return coloured or None


def write_band_metadata(dst: Any, specs: Sequence[Mapping[str, Any]]) -> None:
    """Names (GDAL band descriptions), units, scale/offset, colour tables and class names into an
    open dataset. GeoTIFF keeps category names only in a .aux.xml sidecar, so class names go into
    band metadata (CLASSES, JSON) here and into STAC `classification:classes`."""
    if not specs:
        return
    for band, spec in enumerate(specs, 1):
        if spec.get("name"):
            dst.set_band_description(band, spec["name"])
        if spec.get("unit"):
            dst.set_band_unit(band, spec["unit"])
        tags = {}
        if spec.get("description"):
            tags["DESCRIPTION"] = spec["description"]
        if spec.get("classes"):
            tags["CLASSES"] = json.dumps([{"value": c["value"], "name": c["name"]} for c in spec["classes"]])
        if tags:
            dst.update_tags(band, **tags)
        table = colour_table(spec)
        if table is not None and dst.driver == "GTiff" and band == 1:
            dst.write_colormap(band, table)
    if any("scale" in s or "offset" in s for s in specs):
        extra = dst.count - len(specs)   # a PNG tile's alpha band
        dst.scales = tuple(float(s.get("scale", 1.0)) for s in specs) + (1.0,) * extra
        dst.offsets = tuple(float(s.get("offset", 0.0)) for s in specs) + (0.0,) * extra


def cut_tiles(process_tile: Tile, tiles: Sequence[Tile], out: np.ndarray, valid: np.ndarray
              ) -> Iterator[tuple[Tile, np.ndarray]]:
    """(output tile, its part of `out`) for the output tiles of a process tile that hold a valid pixel."""
    top, left = process_tile.bounds.top, process_tile.bounds.left
    xres, yres = process_tile.resolution
    for tile in tiles:
        b = tile.bounds
        r0 = round((top - b.top) / yres)
        c0 = round((b.left - left) / xres)
        h, w = tile.shape
        if valid[:, r0:r0 + h, c0:c0 + w].any():
            yield tile, out[:, r0:r0 + h, c0:c0 + w]


def fold_series(result: np.ndarray, steps: int) -> np.ndarray:
    """A time series (time, band, y, x) as (time * band, y, x): a time-series output stores and
    resamples it like bands, step after step. (band, y, x) or (y, x) is taken as one band per
    step only when there is one step."""
    if result.ndim == 4:
        if result.shape[0] != steps:
            raise TypeError(f"execute() returned {result.shape[0]} time step(s); the output's time axis has "
                            f"{steps} (`time_steps` names them)")
        return result.reshape((result.shape[0] * result.shape[1],) + result.shape[2:])
    if steps == 1 and result.ndim in (2, 3):
        return result
    raise TypeError(f"execute() returned a {result.ndim}D array; an output with a time axis takes "
                    f"(time, bands, rows, cols) with {steps} time steps")


class RasterArrays:
    """Base of raster outputs; `grid` is the process grid, `output_grid` that of stored tiles."""

    path: Path
    grid: Grid
    output_grid: Grid

    def _init_arrays(self, config: OutputConfig) -> None:
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
        self.compress = str(config.compress or "none").lower()
        self.creation_options: dict[str, Any] = dict(
            (config.options or {}).get("creation_options") or {})
        #: an integer output whose recipe gave no nodata: masked pixels have nowhere to go
        self.nodata_unset = self.nodata is None and not config.nodata_set
        self.notes: dict[str, int] = {}   # what casts changed since the last `take_notes`
        self.band_specs: tuple[Mapping[str, Any], ...] = tuple(config.band_specs)

    def _init_series(self, config: OutputConfig) -> None:
        """A time series out (`output.time`): its steps are folded into `bands`, step after step,
        for everything that casts, cuts, resamples or reads tiles; `step_bands` is per step."""
        self.time = config.time_steps
        self.step_bands = self.bands
        if self.time is not None:
            self.bands = len(self.time) * self.step_bands

    def series_settings(self, out: dict[str, Any]) -> dict[str, Any]:
        """metadata.json's `output` of a series: the bands of one step and the steps."""
        if self.time is not None:
            out.update(bands=self.step_bands, time=self.time.to_json())
        return out

    def series_differences(self, existing: Any) -> list[str]:
        """A series on disk where the recipe now has none (the other way round, `time` differs)."""
        if self.time is None and isinstance(existing, dict) and (existing.get("output") or {}).get("time"):
            return ["time: a time series on disk, none now"]
        return []

    def codec_options(self) -> dict[str, Any]:
        """compress and, for deflate/lzw/zstd, the predictor that suits the dtype (3: floats)."""
        if self.compress == "none":
            return {}
        out: dict[str, Any] = {"compress": self.compress}
        if self.compress in PREDICTOR_CODECS:
            out["predictor"] = 3 if self.dtype.kind == "f" else 2
        return out

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
            hint = (f"; set output bands: {arr.shape[0]}, or return {self.bands} band(s) (e.g. read one band: "
                    f"src.read(1)). mapchete would have written a fully masked tile here and called the run "
                    "a success" if arr.shape[0] > self.bands else f"; set output bands: {arr.shape[0]}")
            raise OutputError(f"tile {process_tile}: output has {self.bands} band(s), "
                              f"data has {arr.shape[0]} (shape {arr.shape}){hint}")
        shape, buffered = process_tile.shape, process_tile.buffered_shape
        if arr.shape[1:] == buffered:
            pb = process_tile.pixelbuffer
            return arr[:, pb:pb + shape[0], pb:pb + shape[1]] if pb else arr
        if arr.shape[1:] == shape:
            return arr
        raise OutputError(f"tile {process_tile}: data shape {arr.shape[1:]} is neither the buffered "
                          f"tile shape {buffered} nor the unbuffered {shape}")

    def cast(self, process_tile: Tile, data: np.ndarray | np.ma.MaskedArray
             ) -> tuple[np.ndarray, np.ndarray]:
        """(array cropped and cast, with nodata filled in; valid pixels)."""
        arr = self._as_metatile(process_tile, data)
        if self.nodata_unset:
            masked = int(np.count_nonzero(np.ma.getmaskarray(arr)))
            if arr.dtype.kind == "f":
                masked = int(np.count_nonzero(np.ma.getmaskarray(arr) | np.isnan(np.ma.getdata(arr))))
            if masked:
                raise OutputError(
                    f"tile {process_tile}: {masked} pixel(s) are masked but output {self.path} has no nodata "
                    f"value for {self.dtype.name}, so they would be written as valid 0s; set output.nodata "
                    f"to a value the data never takes (e.g. nodata: {self.suggested_nodata()}), or "
                    "nodata: null to write them as 0 on purpose")
        return to_dtype(arr, self.dtype, self.nodata, self.notes)

    def suggested_nodata(self) -> int:
        """The usual nodata of an integer dtype: 0 for unsigned, the minimum for signed."""
        return 0 if self.dtype.kind == "u" else int(np.iinfo(self.dtype).min)

    def prepare_array(self, process_tile: Tile, data: np.ndarray | np.ma.MaskedArray) -> np.ndarray | None:
        """Crop, cast and fill with nodata: the compact form a worker hands to a parent-side
        writer. None when no pixel is valid (nothing to write)."""
        out, valid = self.cast(process_tile, data)
        return out if valid.any() else None

    def valid_pixels(self, out: np.ndarray) -> np.ndarray:
        """Validity of a prepared array, read back from the nodata value."""
        if self.nodata is None:
            return np.ones(out.shape, dtype=bool)
        if isinstance(self.nodata, float) and np.isnan(self.nodata):
            return ~np.isnan(out)
        return out != self.nodata

    def result_bytes(self, zoom: int) -> int:
        h, w = self.grid.max_tile_shape(zoom)
        return self.bands * h * w * self.dtype.itemsize

    def tile_bytes(self, zoom: int) -> int:
        h, w = self.output_grid.max_tile_shape(zoom)
        return self.bands * h * w * self.dtype.itemsize
