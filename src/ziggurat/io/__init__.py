"""Stage 3, inputs, outputs and storage: the driver registries that pick a driver for a recipe's `format`."""

from __future__ import annotations

from typing import Callable

from ziggurat.core.errors import InputError, OutputError
from ziggurat.core.formats import Storage
from ziggurat.core.grid import Grid
from ziggurat.io.inputs.mosaic import MosaicInput, MosaicTileInput
from ziggurat.io.inputs.raster import RasterInput, RasterTileInput
from ziggurat.io.inputs.stac import StacInput, StacTileInput, TimeStack
from ziggurat.io.inputs.tiledir import TileDirectoryInput, TileDirectoryTileInput
from ziggurat.io.inputs.vector import VectorInput, VectorTileInput
from ziggurat.io.inputs.zarrstore import ZarrInput
from ziggurat.io.outputs.geoparquet import GeoParquetOutput
from ziggurat.io.outputs.pngdir import (
    HillshadePNGTileDirectoryOutput,
    PNGTileDirectoryOutput,
    RGBAPNGTileDirectoryOutput,
)
from ziggurat.io.outputs.singlefile import SingleFileOutput
from ziggurat.io.outputs.stored import StoredOutput, open_stored, stored_or_none
from ziggurat.io.outputs.tiledir import TileDirectoryOutput
from ziggurat.io.outputs.vectordir import VectorTileDirectoryInput, VectorTileDirectoryOutput
from ziggurat.io.outputs.zarrstore import ZarrOutput
from ziggurat.io.protocols import Input, InputDriver, Output, OutputCapabilities, TileInput
from ziggurat.recipe import InputConfig, OutputConfig

__all__ = [
    "GeoParquetOutput", "Input", "Output", "OutputCapabilities", "TileInput",
    "INPUT_FORMATS", "OUTPUT_FORMATS", "MosaicInput", "MosaicTileInput", "input_driver",
    "PNGTileDirectoryOutput", "RasterInput", "SingleFileOutput",
    "RasterTileInput", "StacInput", "StacTileInput", "TileDirectoryInput", "TimeStack",
    "TileDirectoryOutput", "TileDirectoryTileInput", "open_input", "open_output",
    "VectorInput", "VectorTileInput", "VectorTileDirectoryInput", "VectorTileDirectoryOutput", "ZarrInput",
    "ZarrOutput",
    "StoredOutput", "open_stored",
]

INPUT_FORMATS: dict[str, InputDriver] = {
    "raster": RasterInput, "tiledir": TileDirectoryInput, "vector": VectorInput, "mosaic": MosaicInput,
    "stac": StacInput}
#: the output drivers; each says which formats of the format table it writes (`writes`)
OUTPUT_DRIVERS = (TileDirectoryOutput, PNGTileDirectoryOutput, HillshadePNGTileDirectoryOutput,
                  RGBAPNGTileDirectoryOutput, VectorTileDirectoryOutput, GeoParquetOutput, ZarrOutput)
OUTPUT_FORMATS: dict[str, Callable[[OutputConfig, Grid], Output]] = {
    name: cls for cls in OUTPUT_DRIVERS for name in cls.writes}



def open_input(config: InputConfig, grid: Grid) -> Input:
    return input_driver(config)(config, grid)


def input_driver(config: InputConfig) -> InputDriver:
    """The driver class an input config opens with (its declared attributes, e.g. `tile_sources`,
    can be read without opening it)."""
    cls = INPUT_FORMATS.get(config.format)
    stored = stored_or_none(config.path) if config.format in ("tiledir", "vector") else None
    if stored is not None and stored.storage is Storage.TILES and stored.info.kind == "vector":
        cls = VectorTileDirectoryInput  # a vector tile directory written by ziggurat
    elif stored is not None and config.format == "tiledir" and stored.storage is Storage.STORE:
        cls = ZarrInput   # a Zarr store written by ziggurat (its metadata.json says so)
    if cls is None:
        raise InputError(f"input {config.name!r}: unsupported format {config.format!r}; "
                         f"supported formats: {', '.join(INPUT_FORMATS)}")
    return cls


def open_output(config: OutputConfig, grid: Grid) -> Output:
    cls = OUTPUT_FORMATS.get(config.format)
    if cls is not None and config.storage is Storage.FILE:  # one GeoTIFF
        cls = SingleFileOutput
    if cls is None:
        raise OutputError(f"output {config.path}: unsupported format {config.format!r}; "
                          f"supported formats: {', '.join(OUTPUT_FORMATS)}")
    return cls(config, grid)
