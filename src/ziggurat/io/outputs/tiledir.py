"""GeoTIFF tile directories: `{root}/{zoom}/{row}/{col}.tif` plus `metadata.json`.

Tiles are written atomically (temporary file + `os.replace`) so an interrupted run never
leaves a truncated tile that continue mode would take for a finished one.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Grid, Tile, TileIndex
from ziggurat.io import gdal_errors
from ziggurat.io.common import block_size, local_env, nodata_from_json, nodata_to_json, open_tile, same_nodata
from ziggurat.io.outputs.folder import METADATA_FILE, TileFolder
from ziggurat.io.outputs.rasterarrays import RasterArrays, TaggedArray, band_json, cut_tiles, write_band_metadata
from ziggurat.io.outputs.stored import series_band_specs
from ziggurat.io.protocols import OutputCapabilities
from ziggurat.recipe import OutputConfig

logger = logging.getLogger(__name__)
__all__ = ["METADATA_FILE", "TileDirectoryOutput"]



class TileDirectoryOutput(TileFolder, RasterArrays):
    """Writes process tiles as output-grid GeoTIFF tiles; `grid` is the process grid."""

    #: the formats of the format table this driver writes
    writes: tuple[str, ...] = ("GTiff",)
    capabilities = OutputCapabilities(kind="raster", tile_files=True, overviews=True, writes_in_parent=False,
                                      parent_writes=True, threadsafe_writes=True)

    def __init__(self, config: OutputConfig, grid: Grid) -> None:
        super().__init__(config, grid)
        self._init_arrays(config)
        self._init_series(config)
        #: what each stored band says of itself (a time series: every step's bands, named by step)
        self.file_band_specs = tuple(self.band_specs) if self.time is None else \
            series_band_specs(self.time, self.step_bands, tuple(band_json(self.band_specs)))

    # -- metadata -----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        out = {"format": self.format, "dtype": self.dtype.name, "bands": self.bands,
               "nodata": nodata_to_json(self.nodata), "compress": self.compress}
        if self.band_specs:
            out["band_specs"] = band_json(self.band_specs)
        return self.series_settings(out)

    def strict_settings(self) -> tuple[tuple[str, Any], ...]:
        return (("format", self.format), ("dtype", self.dtype.name), ("bands", self.step_bands),
                ("nodata", nodata_to_json(self.nodata))) + \
            ((("time", self.time.to_json()),) if self.time is not None else ())

    def _differences(self, existing: Any) -> list[str]:
        return super()._differences(existing) + self.series_differences(existing)

    def same_setting(self, key: str, on_disk: Any, now: Any) -> bool:
        if key == "nodata":
            return same_nodata(nodata_from_json(on_disk), self.nodata)
        return bool(on_disk == now)

    # -- tiles --------------------------------------------------------------------------
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
        prof.update(self.codec_options())
        prof.update(self.creation_options)
        return prof

    def write(self, process_tile: Tile, data: np.ndarray | np.ma.MaskedArray) -> list[TileIndex]:
        """Write every non-empty output tile of a process tile; returns what was written."""
        out, valid = self.cast(process_tile, data)
        tags = data.split_tags() if isinstance(data, TaggedArray) else None
        return self._write_cut(process_tile, out, valid, tags)

    def write_prepared(self, process_tile: Tile, array: np.ndarray) -> list[TileIndex]:
        """Write an array from `prepare_array`; validity is read back from the nodata value."""
        return self._write_cut(process_tile, array, self.valid_pixels(array))

    def _write_cut(self, process_tile: Tile, out: np.ndarray, valid: np.ndarray,
                   tags: tuple[dict[str, str], dict[int, dict[str, str]]] | None = None) -> list[TileIndex]:
        written: list[TileIndex] = []
        for tile, block in cut_tiles(process_tile, self.output_tiles(process_tile), out, valid):
            self._write_tile(tile, block, tags)
            written.append(tile.index)
        return written

    def _write_tile(self, tile: Tile, array: np.ndarray,
                    tags: tuple[dict[str, str], dict[int, dict[str, str]]] | None = None) -> None:
        # encoded in memory, then written with checked Python I/O: GDAL may report a short write
        # on a full disk only as a warning, and a truncated tile must never be renamed into place
        gdal_errors.reset()
        with local_env(**self.gdal_env), MemoryFile() as mem:
            with mem.open(**self.profile(tile)) as dst:
                write_band_metadata(dst, self.file_band_specs)   # a colour table must come before the pixels
                dst.write(np.ascontiguousarray(self.encode(array)))
                if tags is not None:
                    dst.update_tags(**tags[0])
                    for band, band_tags in tags[1].items():
                        dst.update_tags(band, **band_tags)
            failed = gdal_errors.failure()
            if failed is not None:
                raise OutputError(f"tile {tile}: cannot encode: {failed}")
            data = mem.read()
        self.put_tile(tile, data)

    #: GDAL configuration while writing a tile (PNG turns off .aux.xml sidecars).
    gdal_env: dict[str, str] = {}

    def encode(self, array: np.ndarray) -> np.ndarray:
        """The bands as stored in the file (PNG adds an alpha band)."""
        return array

    def read(self, tile: Tile | TileIndex) -> np.ma.MaskedArray | None:
        """One written output tile, (bands, h, w), or None if it was never written (empty)."""
        return self._read_bands(tile, self.bands)

    def read_earlier(self, tile: Tile, steps: int) -> np.ma.MaskedArray | None:
        """A tile of a series being extended, as stored: its first `steps` steps' bands."""
        return self._read_bands(tile, steps * self.step_bands)

    def _read_bands(self, tile: Tile | TileIndex, count: int) -> np.ma.MaskedArray | None:
        path = self.tile_path(tile)
        if self.store is not None:  # one GET, read from memory
            data = self.tile_bytes_of(tile)
            if data is None:
                return None
            try:
                with warnings.catch_warnings(), rasterio.MemoryFile(data) as mem, mem.open() as src:
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)  # PNG tiles
                    return src.read(list(range(1, count + 1)), masked=True)
            except Exception as exc:
                raise OutputError(f"tile {tile}: cannot read {self.store.url(self.tile_key(tile))}: {exc}") from exc
        if not path.exists():
            return None
        try:
            with open_tile(path) as src:
                return src.read(list(range(1, count + 1)), masked=True)
        except Exception as exc:
            raise OutputError(f"tile {tile}: cannot read {path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"TileDirectoryOutput(path={str(self.path)!r})"
