"""Single-file GeoTIFF (or Cloud-Optimized GeoTIFF) output for one zoom level.

Workers compute tiles; one writer in the parent places each tile's window into a tiled,
sparse GeoTIFF, so the raster is never held in memory and can be far larger than RAM.
The file covers exactly the run's area snapped outward to the zoom's pixel grid. It is
written under a temporary name and renamed at the end of a successful run, so an earlier
file is never lost or left half-written; with `cog: true` the temporary GeoTIFF is
converted by GDAL's COG driver (overviews included) before the rename.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine

from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Bounds, Grid, Tile, TileIndex
from ziggurat.io import gdal_errors
from ziggurat.io.outputs.base import OutputBase
from ziggurat.io.outputs.preview import Preview
from ziggurat.io.outputs.rasterarrays import RasterArrays, write_band_metadata
from ziggurat.io.protocols import OutputCapabilities
from ziggurat.io.storage.atomic import staged, tmp_in
from ziggurat.io.storage.store import ObjectStore, open_store
from ziggurat.recipe import OutputConfig

log = logging.getLogger(__name__)
_BLOCK = 512
#: GTiff creation options and what the COG driver calls them; the ones it has no use for.
_COG_NAMES = {"zlevel": "level", "zstd_level": "level", "jpeg_quality": "quality", "blockxsize": "blocksize"}
_NOT_FOR_COG = {"tiled", "blockysize", "sparse_ok", "interleave", "photometric"}


class SingleFileOutput(OutputBase, RasterArrays):
    """`output.path` ending in .tif: one GeoTIFF, written by a single writer in the parent.

    Its "tiles" are windows of one file: the process tile is the unit, there are no per-tile
    files to hash, skip or remove, and the file is final only when the run ends."""

    capabilities = OutputCapabilities(kind="raster", tile_files=False, overviews=False, writes_in_parent=True,
                                      parent_writes=True, threadsafe_writes=False)

    def __init__(self, config: OutputConfig, grid: Grid) -> None:
        super().__init__(config, grid)
        self._init_arrays(config)
        options = dict(config.options)
        self.cog = bool(options.pop("cog", False))
        self.overview_resampling = str(options.pop("overview_resampling", "nearest"))
        self._dst: Any = None
        self._tmp: Path | None = None
        self._origin: tuple[float, float] = (0.0, 0.0)
        self._res: tuple[float, float] = (0.0, 0.0)
        self._preview: Preview | None = None

    # -- run lifecycle ---------------------------------------------------------------------
    def prepare(self, overwrite: bool, narrowed: bool = False) -> bool:
        there = (self._bucket().head(self._name) is not None) if self.store is not None else self.path.exists()
        if there and not overwrite:
            raise OutputError(f"output file {self.where} exists; use --overwrite to replace it "
                              "(a single-file output is always written whole)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create folder {self.path.parent}: {exc}") from exc
        return False  # the file is replaced whole when the run ends

    def exists(self, process_tile: Tile) -> bool:
        return False

    def _bucket(self) -> ObjectStore:
        """The folder of the bucket holding the file (the store is opened at the file's own URL)."""
        assert self.config.location is not None
        return open_store(self.config.location.parent, self.config.storage_options)

    @property
    def _name(self) -> str:
        return self.path.name

    @property
    def _tmp_folder(self) -> Path:
        """``OUT.tif.ziggurat/tmp``: same file system, swept at the start of the next run."""
        return self.path.with_name(self.path.name + ".ziggurat") / "tmp"

    def check_run(self, zooms: Sequence[int], bounds: Bounds | None) -> None:
        if len(zooms) != 1:
            raise OutputError(f"single-file output {self.path} holds one zoom level, the run covers "
                              f"zooms {min(zooms)}..{max(zooms)}: choose one with -z")
        if bounds is None:
            raise OutputError(f"single-file output {self.path}: the run covers no area")

    def start_run(self, zooms: Sequence[int], bounds: Bounds | None) -> None:
        """Create the temporary file covering the run's area at its single zoom."""
        self.check_run(zooms, bounds)
        assert bounds is not None
        zoom, area = zooms[0], bounds
        xres, yres = self.grid.resolution(zoom)
        gb = self.grid.bounds(zoom)
        c0 = math.floor((area.left - gb.left) / xres + 1e-6)
        c1 = math.ceil((area.right - gb.left) / xres - 1e-6)
        r0 = math.floor((gb.top - area.top) / yres + 1e-6)
        r1 = math.ceil((gb.top - area.bottom) / yres - 1e-6)
        width, height = max(c1 - c0, 1), max(r1 - r0, 1)
        left, top = gb.left + c0 * xres, gb.top - r0 * yres
        self._origin, self._res = (left, top), (xres, yres)
        profile: dict[str, Any] = {
            "driver": "GTiff", "width": width, "height": height, "count": self.bands,
            "dtype": self.dtype.name, "nodata": self.nodata, "crs": self.grid.crs,
            "transform": Affine(xres, 0.0, left, 0.0, -yres, top), "tiled": True,
            "blockxsize": _BLOCK, "blockysize": _BLOCK, "sparse_ok": True, "bigtiff": "IF_SAFER",
        }
        profile.update(self.codec_options())
        profile["num_threads"] = "ALL_CPUS"  # one writer: GDAL compresses blocks on every core
        profile.update(self.creation_options)
        self._tmp = tmp_in(self._tmp_folder, ".tif")
        try:
            self._dst = rasterio.open(self._tmp, "w", **profile)
            write_band_metadata(self._dst, self.band_specs)
        except Exception as exc:
            self._tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot create {self.path}: {exc}") from exc
        rgb = self.dtype == np.uint8 and self.bands in (3, 4)
        self._preview = Preview(height, width, range(self.bands) if rgb else [0], self.dtype, self.nodata)
        log.info("single-file output %s: %d x %d px at zoom %d", self.path, width, height, zoom)

    def finish_run(self, success: bool) -> None:
        """Close, convert to COG if asked, and rename into place; on failure drop the temp file."""
        dst, self._dst = self._dst, None
        tmp, self._tmp = self._tmp, None
        if dst is None or tmp is None:
            return
        try:
            gdal_errors.reset()
            dst.close()  # the last blocks are flushed here: a full disk shows now, or never
            if not success:
                return
            failed = gdal_errors.failure()
            if failed is not None:
                raise OutputError(f"cannot finish {self.path}: {failed}")
            if self.cog:
                with staged(self.path, tmp_in(self._tmp_folder, ".cog.tif")) as cog_tmp:
                    rasterio.shutil.copy(tmp, cog_tmp, driver="COG", **self.cog_options())
                    failed = gdal_errors.failure()
                    if failed is not None:
                        raise OutputError(f"cannot write the COG {self.path}: {failed}")
            else:
                with staged(self.path, tmp):
                    pass
            if self.store is not None:  # finished locally in the state folder: then one upload
                self._bucket().put_file(self._name, self.path)
        except OutputError:
            raise
        except Exception as exc:
            raise OutputError(f"cannot finish {self.path}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def cog_options(self) -> dict[str, Any]:
        """The COG driver's options: the codec and predictor of the tiles, the recipe's
        creation options under the COG driver's names (ZLEVEL is LEVEL, BLOCKXSIZE BLOCKSIZE)."""
        codec = self.codec_options()
        options: dict[str, Any] = {"compress": str(codec.get("compress", "none")).upper(),
                                   "overview_resampling": self.overview_resampling, "bigtiff": "IF_SAFER",
                                   "num_threads": "ALL_CPUS"}
        if "predictor" in codec:
            options["predictor"] = "FLOATING_POINT" if codec["predictor"] == 3 else "STANDARD"
        for key, value in self.creation_options.items():
            name = _COG_NAMES.get(str(key).lower(), str(key).lower())
            if name in _NOT_FOR_COG:
                continue
            options[name] = value
        return options

    # -- tiles ---------------------------------------------------------------------------------
    def output_tiles(self, process_tile: Tile) -> list[Tile]:
        return [process_tile]

    def tile_path(self, tile: Tile | TileIndex) -> Path:
        return self.path

    def tile_bytes_of(self, tile: Tile | TileIndex) -> bytes | None:
        """No tile files: the one file is final only when the run ends."""
        return None

    def checksums(self, written: Sequence[TileIndex]) -> tuple[str, ...]:
        """None per tile: the file's bytes are final only when the run ends."""
        return ()

    def remove_stale(self, process_tile: Tile, written: Sequence[TileIndex]) -> None:
        """Nothing: a single file is always written whole."""

    def read(self, tile: Tile | TileIndex) -> None:
        raise OutputError(f"single-file output {self.path}: tiles are not read back (overview zooms "
                          "need a tile directory output)")

    def write(self, process_tile: Tile, data: np.ndarray | np.ma.MaskedArray) -> list[TileIndex]:
        out = self.prepare_array(process_tile, data)
        return [] if out is None else self.write_prepared(process_tile, out)

    def write_prepared(self, process_tile: Tile, out: np.ndarray) -> list[TileIndex]:
        """Place a prepared (unbuffered, cast) tile array into its window of the file."""
        if self._dst is None:
            raise OutputError(f"single-file output {self.path} is not open (start_run was not called)")
        (left, top), (xres, yres) = self._origin, self._res
        b = process_tile.bounds
        r = round((top - b.top) / yres)
        c = round((b.left - left) / xres)
        h, w = out.shape[1:]
        r0, c0 = max(r, 0), max(c, 0)
        r1, c1 = min(r + h, self._dst.height), min(c + w, self._dst.width)
        if r0 >= r1 or c0 >= c1:
            return []
        window = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
        self._dst.write(np.ascontiguousarray(out[:, r0 - r:r1 - r, c0 - c:c1 - c]), window=window)
        if self._preview is not None:
            self._preview.add(r, c, out)
        return [process_tile.index]

    def preview(self) -> np.ma.MaskedArray | None:
        """The quicklook's pixels, gathered from every window this run wrote (see `Preview`)."""
        return None if self._preview is None else self._preview.result()

    def __repr__(self) -> str:
        return f"SingleFileOutput(path={str(self.path)!r}, cog={self.cog})"
