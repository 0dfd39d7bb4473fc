"""The one table of output formats: every fact about a format that more than its driver needs.

Recipe validation, the driver registry (`ziggurat.io`), the stored-output reader, the records,
the catalog, `serve` and `ziggurat formats` read this table; a new output format is a new row
here plus its driver. No other module outside the drivers spells a format name or suffix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum


class Storage(str, Enum):
    """How an output is stored, which decides where its records live and how it is read back."""

    TILES = "tiles"   # a tile directory: one file or object per output tile, records in .ziggurat/
    FILE = "file"     # one file (GeoTIFF/COG); records beside it in `<file>.ziggurat/`
    STORE = "store"   # one store of many objects (Zarr): chunk or shard objects per output tile


@dataclass(frozen=True)
class Format:
    """One output format: its names, what it holds and where its files go."""

    name: str
    #: other names a recipe may use (compared case-insensitively, the name too)
    aliases: tuple[str, ...]
    #: "raster" (processes return arrays) or "vector" (lists of features)
    kind: str
    #: how the output is stored (a path may turn a tile format into one file: `single_file_suffixes`)
    storage: Storage
    #: the suffix of one stored tile file (".tif"), None when tiles are not files of their own
    tile_suffix: str | None
    #: the media type of its tiles (STAC assets)
    media_type: str
    #: what `ziggurat formats` says of it
    description: str
    #: an output path ending in one of these is this format by default (".zarr", ".parquet")
    path_suffixes: tuple[str, ...] = ()
    #: an output path ending in one of these is one file of this format, not a tile directory
    single_file_suffixes: tuple[str, ...] = ()
    #: the GDAL driver writing its tiles (raster tile formats); its creation options are checked
    gdal_driver: str | None = None
    #: dtype when the recipe gives none, and whether masked pixels need no nodata (PNG's alpha)
    default_dtype: str = "float32"
    alpha_nodata: bool = False
    #: mapchete's fixed 8-bit formats: (dtype, bands, nodata) the output must have, None if free
    fixed: tuple[str, int, int] | None = None
    #: read back as a raster input (a recipe input's output, a tiledir input)
    readable: bool = False
    #: the dtypes its tiles can hold (None: any), and whether 1 or 3 bands get an alpha band added
    dtypes: tuple[str, ...] | None = None
    adds_alpha: bool = False
    #: the GDAL driver compresses with `COMPRESS=<output.compress>`
    compress_option: bool = False
    #: named in messages listing the formats (mapchete's PNG_RGBA comes from `.mapchete` files)
    listed: bool = True
    #: holds a time series (`output.time`): a stored tile keeps every step, steps folded into bands
    series: bool = False

    @property
    def raster_tiles(self) -> bool:
        """Raster tiles, one file each: overviews are resampled from them, serve shows them."""
        return self.kind == "raster" and self.storage is Storage.TILES

    def storage_at(self, path: str | os.PathLike[str]) -> Storage:
        """How an output of this format at `path` is stored (a GTiff path ending in .tif: one file)."""
        if self.single_file_suffixes and os.fspath(path).rstrip("/").lower().endswith(self.single_file_suffixes):
            return Storage.FILE
        return self.storage

    def holds_overviews(self, path: str | os.PathLike[str]) -> bool:
        """Overview zooms are resampled from stored tiles: raster tiles or a Zarr store."""
        return self.kind == "raster" and self.storage_at(path) is not Storage.FILE


#: GDAL creation options of the raster tile formats (GDAL 3.x), accepted under `creation_options`
#: or directly as output keys (mapchete's way)
_GTIFF_CREATION = ("TFW", "RPB", "RPCTXT", "INTERLEAVE", "TILED", "BLOCKXSIZE", "BLOCKYSIZE", "NBITS", "COMPRESS",
                   "NUM_THREADS", "PREDICTOR", "DISCARD_LSB", "JPEG_QUALITY", "JPEGTABLESMODE", "ZLEVEL",
                   "ZSTD_LEVEL", "MAX_Z_ERROR", "MAX_Z_ERROR_OVERVIEW", "WEBP_LEVEL", "WEBP_LOSSLESS",
                   "JXL_LOSSLESS", "JXL_EFFORT", "JXL_DISTANCE", "JXL_ALPHA_DISTANCE", "PHOTOMETRIC", "ALPHA",
                   "PROFILE", "BIGTIFF", "PIXELTYPE", "COPY_SRC_OVERVIEWS", "GEOTIFF_KEYS_FLAVOR",
                   "GEOTIFF_VERSION", "SPARSE_OK", "ENDIANNESS", "SOURCE_ICC_PROFILE", "OVERVIEW_RESAMPLING",
                   "OVERVIEWS", "OVERVIEW_COUNT", "LEVEL", "QUALITY", "RESAMPLING", "TILING_SCHEME")
_PNG_CREATION = ("WORLDFILE", "ZLEVEL", "NBITS", "TITLE", "DESCRIPTION", "COPYRIGHT", "COMMENT",
                 "WRITE_METADATA_AS_TEXT")
#: GDAL driver -> its creation options (a format's `gdal_driver` picks its row)
CREATION_OPTIONS = {"GTiff": _GTIFF_CREATION, "PNG": _PNG_CREATION}

_PNG = "image/png"
GTIFF_MEDIA_TYPE = "image/tiff; application=geotiff"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
#: GDAL's IMAGE_STRUCTURE LAYOUT tag of a Cloud Optimized GeoTIFF
COG_LAYOUT = "COG"

FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("GTiff", ("geotiff", "tif", "tiff"), "raster", Storage.TILES, ".tif", GTIFF_MEDIA_TYPE,
           "GeoTIFF tile directory {zoom}/{row}/{col}.tif; or one GeoTIFF/COG with a path ending in .tif",
           single_file_suffixes=(".tif", ".tiff"), gdal_driver="GTiff", readable=True, compress_option=True,
           series=True),
    Format("PNG", (), "raster", Storage.TILES, ".png", _PNG,
           "PNG tile directory (uint8/uint16, 1 or 3 bands + alpha) for web maps",
           gdal_driver="PNG", alpha_nodata=True, readable=True, dtypes=("uint8", "uint16"), adds_alpha=True),
    Format("PNG_hillshade", (), "raster", Storage.TILES, ".png", _PNG, "mapchete's 8-bit shade PNG tiles",
           gdal_driver="PNG", default_dtype="uint8", alpha_nodata=True, fixed=("uint8", 1, 0), readable=True),
    Format("PNG_RGBA", (), "raster", Storage.TILES, ".png", _PNG, "mapchete's 8-bit RGBA PNG tiles",
           gdal_driver="PNG", default_dtype="uint8", alpha_nodata=True, readable=True, listed=False),
    Format("GeoJSON", (), "vector", Storage.TILES, ".geojson", "application/geo+json",
           "vector tile directory {zoom}/{row}/{col}.geojson"),
    Format("FlatGeobuf", ("fgb",), "vector", Storage.TILES, ".fgb", "application/vnd.flatgeobuf",
           "vector tile directory {zoom}/{row}/{col}.fgb"),
    Format("GeoParquet", ("parquet",), "vector", Storage.TILES, ".parquet", "application/vnd.apache.parquet",
           "GeoParquet 1.1 dataset, one part per tile {zoom}/{row}/{col}.parquet (path ending in .parquet)",
           path_suffixes=(".parquet",)),
    Format("Zarr", (), "raster", Storage.STORE, None, "application/vnd+zarr",
           "Zarr store, one array per zoom, chunks (or shards) of whole tiles (path ending in .zarr)",
           path_suffixes=(".zarr",), readable=True, series=True),
)}
DEFAULT_FORMAT = FORMATS["GTiff"]
#: mapchete's PNG output (RGBA tiles), what a `.mapchete` file's `format: PNG` means
MAPCHETE_PNG = FORMATS["PNG_RGBA"]
PNG_MEDIA_TYPE = _PNG
#: the GDAL driver quicklooks and previews are encoded with
PNG_DRIVER = "PNG"

#: input files by suffix, when an input names no format: rasters, vectors, vector indexes of a
#: mosaic, GeoParquet (not a mosaic index)
RASTER_FILE_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".nc", ".png", ".jpg")
VECTOR_FILE_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".gml", ".kml")
VECTOR_INDEX_SUFFIXES = (".gpkg", ".fgb", ".geojson", ".json", ".shp")
GEOPARQUET_SUFFIXES = (".parquet", ".geoparquet")
#: footprint indexes `ziggurat index` writes: name -> (OGR driver, file suffix)
INDEX_VECTOR_FORMATS = {"gpkg": ("GPKG", "gpkg"), "fgb": ("FlatGeobuf", "fgb"), "geojson": ("GeoJSON", "geojson")}
_BY_NAME = {alias.lower(): f for f in FORMATS.values() for alias in (f.name, *f.aliases)}


def format_named(name: str) -> Format | None:
    """The format a recipe's `format:` names (any alias, any case), or None."""
    return _BY_NAME.get(name.lower())


def listed_names() -> str:
    """"GTiff, PNG, ... or Zarr": what a message expecting a format name lists."""
    names = [f.name for f in FORMATS.values() if f.listed]
    return f"{', '.join(names[:-1])} or {names[-1]}"


def format_for_path(path: str | os.PathLike[str]) -> Format:
    """The format an output path implies when the recipe names none (`out.zarr`: Zarr)."""
    lowered = os.fspath(path).rstrip("/").lower()
    for fmt in FORMATS.values():
        if fmt.path_suffixes and lowered.endswith(fmt.path_suffixes):
            return fmt
    return DEFAULT_FORMAT


def formats_where(**facts: object) -> tuple[str, ...]:
    """Names of the formats whose attributes equal `facts` (`kind="vector"`, `raster_tiles=True`)."""
    return tuple(f.name for f in FORMATS.values() if all(getattr(f, k) == v for k, v in facts.items()))


def tile_suffix(name: str) -> str | None:
    """The suffix of one stored tile of the format `name` (None: unknown, or no tile files)."""
    found = format_named(name)
    return None if found is None else found.tile_suffix


def single_file_suffixes() -> tuple[str, ...]:
    """Every suffix that makes an output path one file."""
    return tuple(s for f in FORMATS.values() for s in f.single_file_suffixes)


def records_beside(path: str | os.PathLike[str]) -> bool:
    """Whether an output path keeps its records beside it (`OUT.tif.ziggurat/`): one file. Only
    a path is known here (a reader before opening, a state folder); the stored output says the rest."""
    return os.fspath(path).rstrip("/").lower().endswith(single_file_suffixes())


__all__ = ["COG_LAYOUT", "COG_MEDIA_TYPE", "CREATION_OPTIONS", "DEFAULT_FORMAT", "FORMATS", "GEOPARQUET_SUFFIXES",
           "GTIFF_MEDIA_TYPE", "INDEX_VECTOR_FORMATS", "MAPCHETE_PNG", "PNG_DRIVER", "PNG_MEDIA_TYPE",
           "RASTER_FILE_SUFFIXES", "VECTOR_FILE_SUFFIXES", "VECTOR_INDEX_SUFFIXES", "Format", "Storage",
           "format_for_path", "format_named", "formats_where", "listed_names", "records_beside",
           "single_file_suffixes", "tile_suffix"]
