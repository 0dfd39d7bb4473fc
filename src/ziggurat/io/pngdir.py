"""PNG tile directories (`output.format: PNG`): 8- or 16-bit tiles for web maps.

Nodata becomes a transparent alpha band (gray+alpha or RGBA), as web clients expect. PNG files
carry no georeferencing: the grid in `metadata.json` places every tile (GDAL's `.aux.xml`
sidecars are not written, so each tile is one file).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ziggurat.errors import OutputError
from ziggurat.grid import Grid, Tile
from ziggurat.io.tiledir import TileDirectoryOutput
from ziggurat.recipe import OutputConfig

PNG_DTYPES = ("uint8", "uint16")


class PNGTileDirectoryOutput(TileDirectoryOutput):
    """Writes process tiles as PNG output tiles; everything else as the GeoTIFF directory."""

    suffix = ".png"
    gdal_env = {"GDAL_PAM_ENABLED": "NO"}

    def __init__(self, config: OutputConfig, grid: Grid) -> None:
        super().__init__(config, grid)
        if self.dtype.name not in PNG_DTYPES:
            raise OutputError(f"output {self.path}: PNG holds uint8 or uint16, not {self.dtype.name}")
        self.alpha = self.nodata is not None
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
