"""ziggurat: a tile-pyramid processing engine for geospatial rasters and vectors."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ziggurat.errors import (
    Empty,
    GridError,
    InputError,
    OutputError,
    ProcessError,
    ProcessLoadError,
    RecipeError,
    ZigguratError,
)
from ziggurat.grid import Bounds, Grid, Tile, TileIndex

try:
    __version__ = version("ziggurat")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "Bounds", "Empty", "Grid", "GridError", "InputError", "OutputError", "ProcessError",
    "ProcessLoadError", "RecipeError", "Tile", "TileIndex", "ZigguratError", "__version__",
]
