"""Stage 3, inputs, outputs and storage: the driver registries that pick a driver for a recipe's `format`."""

from __future__ import annotations

import os
from typing import Callable

from ziggurat.core.errors import InputError, OutputError
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
from ziggurat.io.outputs.tiledir import TileDirectoryOutput
from ziggurat.io.outputs.vectordir import VectorTileDirectoryInput, VectorTileDirectoryOutput, is_vector_tiledir
from ziggurat.io.outputs.zarrstore import ZarrOutput, is_zarr_store, zarr_chunk_files
from ziggurat.io.protocols import Input, InputDriver, Output, OutputCapabilities, TileInput
from ziggurat.recipe import InputConfig, OutputConfig
from ziggurat.recipe.output import SINGLE_FILE_SUFFIXES

__all__ = [
    "GeoParquetOutput", "Input", "Output", "OutputCapabilities", "SINGLE_FILE_SUFFIXES", "TileInput",
    "INPUT_FORMATS", "OUTPUT_FORMATS", "MosaicInput", "MosaicTileInput", "input_driver",
    "PNGTileDirectoryOutput", "RasterInput", "SingleFileOutput",
    "RasterTileInput", "StacInput", "StacTileInput", "TileDirectoryInput", "TimeStack",
    "TileDirectoryOutput", "TileDirectoryTileInput", "open_input", "open_output",
    "VectorInput", "VectorTileInput", "VectorTileDirectoryInput", "VectorTileDirectoryOutput", "ZarrInput",
    "ZarrOutput",
    "stored_tile_files",
]

INPUT_FORMATS: dict[str, InputDriver] = {
    "raster": RasterInput, "tiledir": TileDirectoryInput, "vector": VectorInput, "mosaic": MosaicInput,
    "stac": StacInput}
OUTPUT_FORMATS: dict[str, Callable[[OutputConfig, Grid], Output]] = {
    "GTiff": TileDirectoryOutput, "PNG": PNGTileDirectoryOutput, "PNG_hillshade": HillshadePNGTileDirectoryOutput,
    "PNG_RGBA": RGBAPNGTileDirectoryOutput,
    "GeoJSON": VectorTileDirectoryOutput, "FlatGeobuf": VectorTileDirectoryOutput, "Zarr": ZarrOutput,
    "GeoParquet": GeoParquetOutput}



def stored_tile_files(root: str | os.PathLike[str]) -> set[str]:
    """Relative paths of every stored tile object under an output's zoom folders (what `verify`
    compares with the ledger), by the store's kind: a Zarr store's chunk objects, or for a tile
    directory the files in row folders (hidden ones too) and anything that is not a row folder."""
    root = os.fspath(root)
    if is_zarr_store(root):
        return zarr_chunk_files(root)
    found: set[str] = set()
    for zoom in os.scandir(root):
        if not (zoom.name.isdigit() and zoom.is_dir(follow_symlinks=False)):
            continue
        for row in os.scandir(zoom.path):
            rel = f"{zoom.name}/{row.name}"
            if not (row.name.isdigit() and row.is_dir(follow_symlinks=False)):
                found.add(rel)   # a file (or link) directly in a zoom folder
                continue
            found.update(f"{rel}/{entry.name}" for entry in os.scandir(row.path))
    return found


def open_input(config: InputConfig, grid: Grid) -> Input:
    return input_driver(config)(config, grid)


def input_driver(config: InputConfig) -> InputDriver:
    """The driver class an input config opens with (its declared attributes, e.g. `tile_sources`,
    can be read without opening it)."""
    cls = INPUT_FORMATS.get(config.format)
    if config.format in ("tiledir", "vector") and is_vector_tiledir(config.path):
        cls = VectorTileDirectoryInput  # a GeoJSON/FlatGeobuf tile directory written by ziggurat
    elif config.format == "tiledir" and is_zarr_store(str(config.path)):
        cls = ZarrInput   # a Zarr store written by ziggurat (its metadata.json says so)
    if cls is None:
        raise InputError(f"input {config.name!r}: unsupported format {config.format!r}; "
                         f"supported formats: {', '.join(INPUT_FORMATS)}")
    return cls


def open_output(config: OutputConfig, grid: Grid) -> Output:
    cls = OUTPUT_FORMATS.get(config.format)
    if config.format == "GTiff" and str(config.path).lower().endswith(SINGLE_FILE_SUFFIXES):  # one GeoTIFF
        cls = SingleFileOutput
    if cls is None:
        raise OutputError(f"output {config.path}: unsupported format {config.format!r}; "
                          f"supported formats: {', '.join(OUTPUT_FORMATS)}")
    return cls(config, grid)
