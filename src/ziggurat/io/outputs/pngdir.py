"""PNG tile directories (`output.format: PNG`): 8- or 16-bit tiles for web maps.

Nodata becomes a transparent alpha band (gray+alpha or RGBA), as web clients expect. PNG files
carry no georeferencing: the grid in `metadata.json` places every tile (GDAL's `.aux.xml`
sidecars are not written, so each tile is one file).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Grid, Tile
from ziggurat.io.common import local_env
from ziggurat.io.outputs.tiledir import TileDirectoryOutput
from ziggurat.recipe import OutputConfig

PNG_DTYPES = ("uint8", "uint16")


class PNGTileDirectoryOutput(TileDirectoryOutput):
    """Writes process tiles as PNG output tiles; everything else as the GeoTIFF directory."""

    writes = ("PNG",)

    suffix = ".png"
    gdal_env = {"GDAL_PAM_ENABLED": "NO"}
    #: the process result is made RGBA (its fourth band is the alpha): no alpha band is added
    rgba = False

    def __init__(self, config: OutputConfig, grid: Grid) -> None:
        super().__init__(config, grid)
        if self.dtype.name not in PNG_DTYPES:
            raise OutputError(f"output {self.path}: PNG holds uint8 or uint16, not {self.dtype.name}")
        self.alpha = self.nodata is not None and not self.rgba
        if self.alpha and self.bands not in (1, 3):
            raise OutputError(f"output {self.path}: with a nodata value PNG tiles get an alpha band, so "
                              f"bands must be 1 (gray) or 3 (RGB), got {self.bands}; or set nodata: null")
        if self.bands > 4:
            raise OutputError(f"output {self.path}: PNG holds at most 4 bands, got {self.bands}")

    def profile(self, tile: Tile) -> dict[str, Any]:
        h, w = tile.shape
        prof: dict[str, Any] = {"driver": "PNG", "width": w, "height": h,
                                "count": self.bands + int(self.alpha), "dtype": self.dtype.name,
                                "crs": tile.crs, "transform": tile.affine,  # not stored (no PAM)
                                "ZLEVEL": 6}
        prof.update(self.creation_options)
        return prof

    def encode(self, array: np.ndarray) -> np.ndarray:
        if not self.alpha:
            return array
        opaque = np.iinfo(self.dtype).max
        alpha = np.where((array == self.nodata).all(axis=0), 0, opaque).astype(self.dtype)
        return np.concatenate([array, alpha[np.newaxis]])

    def __repr__(self) -> str:
        return f"PNGTileDirectoryOutput(path={str(self.path)!r})"


class HillshadePNGTileDirectoryOutput(PNGTileDirectoryOutput):
    """mapchete's PNG_hillshade: a black gray band and the inverted shade (255 - value) as its
    alpha, so the tiles darken whatever lies below them on a web map; nodata is transparent."""

    writes = ("PNG_hillshade",)

    def __init__(self, config: OutputConfig, grid: Grid) -> None:
        super().__init__(config, grid)
        if (self.dtype.name, self.bands, self.nodata) != ("uint8", 1, 0):
            raise OutputError(f"output {self.path}: PNG_hillshade holds one uint8 band with nodata 0, "
                              f"not {self.bands} {self.dtype.name} band(s) with nodata {self.nodata}")

    def encode(self, array: np.ndarray) -> np.ndarray:
        value = array[0]
        alpha = np.where(value == 0, 0, 255 - value.astype(np.int16)).astype(np.uint8)
        return np.stack([np.zeros_like(alpha), alpha])

    def read(self, tile: Any) -> np.ma.MaskedArray | None:
        """Stored tiles back as shade values (overviews); a shade of 255 reads as nodata."""
        stored = super().read(tile)  # band 1 (black) only: read the alpha band instead
        if stored is None:
            return None
        import rasterio

        with local_env(GDAL_PAM_ENABLED="NO"), rasterio.open(self.tile_path(tile)) as src:
            alpha = src.read(2)
        value = np.where(alpha == 0, 0, 255 - alpha.astype(np.int16)).astype(np.uint8)
        return np.ma.masked_equal(value[np.newaxis], 0)


class RGBAPNGTileDirectoryOutput(PNGTileDirectoryOutput):
    """mapchete's PNG: always 8-bit RGBA, whatever the process returns: one band is gray
    (alpha 0 where it is nodata), two are gray + alpha, three RGB (alpha from the first band),
    four are taken as RGBA. `.mapchete` recipes get it for `format: PNG`."""

    writes = ("PNG_RGBA",)

    rgba = True

    def __init__(self, config: OutputConfig, grid: Grid) -> None:
        super().__init__(config, grid)
        if (self.dtype.name, self.bands) != ("uint8", 4):
            raise OutputError(f"output {self.path}: mapchete's PNG holds 4 uint8 bands (RGBA), "
                              f"not {self.bands} {self.dtype.name}")

    def cast(self, process_tile: Tile, data: Any) -> tuple[np.ndarray, np.ndarray]:
        arr = np.ma.asarray(data)
        arr = arr[np.newaxis] if arr.ndim == 2 else arr
        nodata = 0 if self.nodata is None else self.nodata
        values = np.ma.filled(arr, nodata)   # mapchete: masked pixels become nodata first
        if values.dtype != np.uint8:   # saturates (mapchete's astype wraps 256 to 0: a deliberate difference)
            values = np.clip(np.rint(values) if values.dtype.kind == "f" else values, 0, 255).astype(np.uint8)
        opaque = np.where(values[0] == nodata, 0, 255).astype(np.uint8)
        if len(values) == 1:
            rgba = np.stack([values[0], values[0], values[0], opaque])
        elif len(values) == 2:
            rgba = np.stack([values[0], values[0], values[0], values[1]])
        elif len(values) == 3:
            rgba = np.stack([values[0], values[1], values[2], opaque])
        elif len(values) == 4:
            rgba = values
        else:
            raise OutputError(f"tile {process_tile}: PNG takes 1 to 4 bands, the process returned {len(values)}")
        return super().cast(process_tile, np.ma.masked_equal(rgba, nodata) if self.nodata is not None else rgba)
