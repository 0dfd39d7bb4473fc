"""The recipe's `output:` section: formats, dtype, nodata, compression, single-file and vector
options, validated at load like the rest of the recipe (see `recipe.py`)."""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ziggurat.core.grid import METATILING_VALUES, Grid
from ziggurat.core.location import Location, is_url
from ziggurat.core.tilelayout import TileLayout
from ziggurat.recipe.bands import BandsSection
from ziggurat.recipe.creation_options import probe
from ziggurat.recipe.vector_schema import VECTOR_OUTPUT_FORMATS, SchemaError, parse_schema
from ziggurat.recipe.yamlload import FrozenDict, KeyPath, found, freeze, is_number

OUTPUT_FORMATS = {"gtiff": "GTiff", "geotiff": "GTiff", "tif": "GTiff", "tiff": "GTiff", "png": "PNG",
                  "png_hillshade": "PNG_hillshade", "png_rgba": "PNG_RGBA",
                  "geojson": "GeoJSON", "flatgeobuf": "FlatGeobuf", "fgb": "FlatGeobuf", "zarr": "Zarr",
                  "geoparquet": "GeoParquet", "parquet": "GeoParquet"}
COMPRESSIONS = ("deflate", "lzw", "zstd", "lzma", "packbits", "jpeg", "webp", "none")
RASTER_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
                 "float32", "float64")
#: GDAL's data type names (Byte is unsigned: numpy's "byte" is int8)
GDAL_DTYPES = {"byte": "uint8"}
#: names numpy would take as one size without saying so (`float` is float64)
_UNSIZED = {"float": "float32 or float64", "double": "float64", "single": "float32", "int": "int16 or int32",
            "uint": "uint16 or uint32", "integer": "int16 or int32"}


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
CREATION_OPTIONS = {"GTiff": _GTIFF_CREATION, "PNG": _PNG_CREATION, "PNG_hillshade": _PNG_CREATION,
                    "PNG_RGBA": _PNG_CREATION}
#: output keys besides the typed ones, read by the drivers and the records
OPTION_KEYS = ("creation_options", "schema", "cog", "overview_resampling", "stac", "tile_path_schema", "zarr_format",
               "shard")
OUTPUT_KEYS = ("path", "format", "dtype", "bands", "nodata", "compress", "metatiling", "storage_options",
               *OPTION_KEYS)

#: An output path ending in one of these is one GeoTIFF, not a tile directory.
SINGLE_FILE_SUFFIXES = (".tif", ".tiff")
RASTER_TILE_FORMATS = ("GTiff", "PNG", "PNG_hillshade", "PNG_RGBA")
#: An output path ending in this is a Zarr store (format Zarr); its compressions
ZARR_SUFFIX = ".zarr"
ZARR_COMPRESSIONS = ("zstd", "none")
#: An output path ending in this is a GeoParquet dataset (one part per output tile)
PARQUET_SUFFIX = ".parquet"

@dataclass(frozen=True, eq=False)
class OutputConfig:
    """The validated `output:` section; unknown keys are driver options for io."""

    #: a local output's path; for an output on object storage its local state folder (the
    #: ledger and provenance while a run works; the bucket holds the published copy)
    path: Path
    format: str = "GTiff"
    dtype: str = "float32"
    bands: int = 1
    nodata: float | int | None = 0
    compress: str = "deflate"
    metatiling: int = 1
    options: Mapping[str, Any] = field(default_factory=FrozenDict)
    #: where the output lives when that is not `path`: an object store (s3://, gs://, az://)
    location: Location | None = None
    #: credentials and endpoints (secrets: never in provenance, fingerprints or keys)
    storage_options: Mapping[str, Any] = field(default_factory=FrozenDict, compare=False, repr=False)
    #: False when an integer output's recipe gave no nodata: masked pixels are then an error
    nodata_set: bool = True
    #: `output.bands` given as specs: name, description, unit, scale, offset, colormap, classes
    band_specs: tuple[Mapping[str, Any], ...] = ()

    def _key(self) -> tuple[Any, ...]:
        """The compared fields, NaN nodata as a marker (NaN != NaN would make a recipe unequal
        to its own pickled copy)."""
        nodata = "nan" if isinstance(self.nodata, float) and math.isnan(self.nodata) else self.nodata
        return tuple(nodata if f.name == "nodata" else getattr(self, f.name) for f in fields(self) if f.compare)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OutputConfig):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def remote(self) -> bool:
        return self.location is not None

    @property
    def url(self) -> str:
        """How messages and provenance name the output (the bucket URL for a remote one)."""
        return self.location.url if self.location is not None else str(self.path)

    @property
    def is_single_file(self) -> bool:
        """One GeoTIFF (a path ending in .tif) instead of a tile directory."""
        return str(self.path).lower().endswith(SINGLE_FILE_SUFFIXES)

    @property
    def holds_overviews(self) -> bool:
        """Overview zooms are resampled from stored tiles: a raster tile directory."""
        return (self.format in RASTER_TILE_FORMATS and not self.is_single_file) or self.format == "Zarr"


def is_remote(path: str) -> bool:
    """GDAL virtual paths and URLs: never checked locally, never normalised (``//`` matters)."""
    return is_url(path)


def state_root() -> Path:
    """Where remote outputs keep local state: $ZIGGURAT_STATE_DIR, else the user's cache folder."""
    given = os.environ.get("ZIGGURAT_STATE_DIR")
    if given:
        return Path(os.path.abspath(os.path.expanduser(given)))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "ziggurat"


def state_folder(location: Location) -> Path:
    """The local state folder of a remote output: one per URL, named so a person can tell which."""
    digest = hashlib.sha256(location.url.encode()).hexdigest()[:12]
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{location.bucket}_{location.key}")[-80:]
    # the last part keeps the output's name: files named after it (the STAC item) match the bucket's
    return state_root() / "remote" / f"{location.scheme}-{label}-{digest}" / location.name


class OutputSection(BandsSection):
    """Validation of `output:`; mixed into the recipe builder, which provides `resolve`."""

    def resolve(self, path: str) -> Path:
        raise NotImplementedError

    def output(self, data: Mapping[str, Any], grid: Grid) -> OutputConfig:
        section = self.mapping(data, ("output",), "a mapping with at least 'path'", required=True) or {}
        key = ("output",)
        where = self.string(section, key + ("path",), "a path string")
        names = "GTiff, PNG, PNG_hillshade, GeoJSON, FlatGeobuf, GeoParquet or Zarr"
        zarr_path = where.rstrip("/").lower().endswith(ZARR_SUFFIX)
        parquet_path = where.rstrip("/").lower().endswith(PARQUET_SUFFIX)
        fmt = self.string(section, key + ("format",), names,
                          "Zarr" if zarr_path else "GeoParquet" if parquet_path else "GTiff")
        if fmt.lower() not in OUTPUT_FORMATS:
            raise self.fail(key + ("format",), names, fmt)
        if zarr_path and fmt.lower() != "zarr":
            raise self.loc.error(key + ("format",), f"expected Zarr for a path ending in {ZARR_SUFFIX}, found {fmt}")
        if parquet_path and OUTPUT_FORMATS[fmt.lower()] != "GeoParquet":
            raise self.loc.error(key + ("format",), f"expected GeoParquet for a path ending in {PARQUET_SUFFIX}, "
                                                    f"found {fmt}")
        fmt = OUTPUT_FORMATS[fmt.lower()]
        # mapchete's PNG formats are 8-bit
        default_dtype = "uint8" if fmt in ("PNG_hillshade", "PNG_RGBA") else "float32"
        dtype = self.dtype(self.string(section, key + ("dtype",), "a dtype name", default_dtype), key + ("dtype",))
        bands, band_specs = self.bands(section, key, dtype)
        band_nodata = self.band_nodata(section, band_specs, key)
        nodata_set = "nodata" in section or fmt in ("PNG", "PNG_hillshade", "PNG_RGBA")  # PNG: alpha
        if band_nodata is not None:
            nodata_set = True
            nodata = self.nodata(band_nodata[1], dtype, band_nodata[0])
        elif nodata_set:
            nodata = self.nodata(section.get("nodata", 0), dtype, key + ("nodata",))
        else:   # floats: NaN, which no value is; integers: no default, every value may be data
            nodata = math.nan if np.dtype(dtype).kind == "f" else None
        choice, default = f"one of {', '.join(COMPRESSIONS)}", "none" if "compress" in section else \
            "zstd" if fmt == "Zarr" else "deflate"
        compress = self.string(section, key + ("compress",), choice, default).lower()  # null: none
        if compress not in COMPRESSIONS:
            raise self.fail(key + ("compress",), choice, section["compress"])
        if fmt == "Zarr" and compress not in ZARR_COMPRESSIONS:
            raise self.fail(key + ("compress",), f"one of {', '.join(ZARR_COMPRESSIONS)} for a Zarr store (gzip "
                                                 "chunks embed the time they were written, so reruns would differ)",
                            compress)
        if fmt == "Zarr":
            self.zarr_options(section, key)
        for name in ("zarr_format", "shard"):
            if name in section and fmt != "Zarr":
                raise self.loc.error(key + (name,), f"'output.{name}' applies to Zarr stores only (a path ending in "
                                                    f".zarr), not to {fmt}")
        if compress in ("jpeg", "webp") and dtype != "uint8":
            raise self.loc.error(key + ("compress",), f"expected dtype uint8 with {compress} "
                                                      f"compression, found dtype {dtype}")
        if fmt == "PNG_hillshade" and (dtype, bands, nodata) != ("uint8", 1, 0):
            raise self.loc.error(key + ("format",), "expected one uint8 band with nodata 0 for PNG_hillshade "
                                                    f"(mapchete's shade tiles), found {bands} {dtype} band(s) "
                                                    f"with nodata {nodata}")
        if fmt == "PNG" and dtype not in ("uint8", "uint16"):
            raise self.loc.error(key + ("dtype",), f"expected uint8 or uint16 for PNG, found {dtype}")
        choices = tuple(m for m in METATILING_VALUES if m <= grid.metatiling)
        metatiling = self.integer(section, key + ("metatiling",), 1, choices=choices)
        location: Location | None = None
        if is_remote(where):
            try:
                location = Location.parse(where)
            except ValueError as exc:
                raise self.loc.error(key + ("path",), str(exc)) from exc
            if not location.is_object_store:
                raise self.loc.error(key + ("path",), "expected a local path or an object store URL (s3://, "
                                                      f"gs://, az://) for an output, found {where!r}"
                                                      + (" (HTTP is read-only)" if location.is_http else ""))
            if location.suffix.lower() in SINGLE_FILE_SUFFIXES and fmt != "GTiff":
                raise self.loc.error(key + ("format",), f"expected GTiff for a single-file output "
                                                        f"({location.name}), found {fmt}")
            if not location.key:
                raise self.loc.error(key + ("path",), f"expected a folder inside the bucket ({where}/NAME), "
                                                      "found the bucket itself")
            path = state_folder(location)
        else:
            path = self.resolve(where)
            single = path.suffix.lower() in SINGLE_FILE_SUFFIXES  # one GeoTIFF instead of tiles
            if single and fmt != "GTiff":
                raise self.loc.error(key + ("format",), f"expected GTiff for a single-file output "
                                                        f"({path.name}), found {fmt}")
            if single and path.is_dir():
                raise self.loc.error(key + ("path",), f"expected a GeoTIFF file path, found the folder {path}")
            if not single and path.exists() and not path.is_dir():
                raise self.loc.error(key + ("path",), f"expected a directory (or a new path), found the "
                                                      f"file {path}")
            if "cog" in section and not isinstance(section["cog"], bool):
                raise self.fail(key + ("cog",), "true or false", section["cog"])
        known = ("path", "format", "dtype", "bands", "nodata", "compress", "metatiling", "storage_options")
        options = FrozenDict((k, v) for k, v in section.items() if k not in known)
        options = self.output_options(options, fmt, key)
        self.check_creation_values(section, options, fmt, dtype, bands, compress, key)
        if fmt in VECTOR_OUTPUT_FORMATS:  # GeoJSON/FlatGeobuf tile directories need a schema
            try:
                options = FrozenDict({**options, "schema": freeze(parse_schema(section.get("schema")))})
            except SchemaError as exc:
                raise self.loc.error(key + ("schema",) + exc.path, str(exc)) from exc
        schema = section.get("tile_path_schema")
        if schema is not None:   # mapchete's key: where tiles go inside the directory
            try:
                TileLayout.parse(schema)
            except ValueError as exc:
                raise self.loc.error(key + ("tile_path_schema",), f"{exc} (ziggurat's tile directories keep zoom "
                                                                  "folders first, as GDAL's STACTA and the indexes "
                                                                  "read them)") from exc
            if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
                raise self.loc.error(key + ("tile_path_schema",), "a single-file output has no tile paths")
        storage = self.storage_options(section, key)
        return OutputConfig(path, fmt, dtype, bands, nodata, compress, metatiling, options, location, storage,
                            nodata_set, band_specs)

    def output_options(self, options: Mapping[str, Any], fmt: str, key: KeyPath) -> FrozenDict:
        """The keys beyond the typed ones: ziggurat's (OPTION_KEYS) and GDAL creation options of
        the format, given under `creation_options` or, as mapchete allows, directly (then moved
        there). Anything else is a typo, refused with the closest key: it would be ignored."""
        gdal_names = CREATION_OPTIONS.get(fmt, ())
        extra: dict[str, Any] = {}
        out: dict[str, Any] = {}
        for name, value in options.items():
            if name in OPTION_KEYS:
                out[name] = value
            elif isinstance(name, str) and name.upper() in gdal_names and fmt in CREATION_OPTIONS:
                extra[name.upper()] = value
            else:
                valid = tuple(OUTPUT_KEYS) + tuple(n.lower() for n in gdal_names)
                close = difflib.get_close_matches(str(name).lower(), valid, n=1)
                hint = f"did you mean 'output.{close[0]}'?" if close else f"valid keys: {', '.join(OUTPUT_KEYS)}"
                raise self.loc.error(key + (name,), f"unknown key 'output.{name}' ({hint})", name_key=False)
        given = out.get("creation_options")
        if given is not None:
            if not isinstance(given, Mapping):
                raise self.fail(key + ("creation_options",), "a mapping of GDAL creation option -> value "
                                                             "(e.g. {BLOCKXSIZE: 512})", given)
            for name, value in given.items():
                if not isinstance(name, str) or (fmt in CREATION_OPTIONS and name.upper() not in gdal_names):
                    close = difflib.get_close_matches(str(name).upper(), gdal_names, n=1)
                    hint = f"did you mean {close[0]!r}?" if close else f"the {fmt} driver's options: " + \
                        ", ".join(gdal_names)
                    raise self.loc.error(key + ("creation_options", name), f"{name!r} is not a GDAL {fmt} "
                                                                           f"creation option ({hint})")
                if isinstance(value, (Mapping, list, tuple)) or value is None:
                    raise self.fail(key + ("creation_options", name), "a scalar value", value)
        if extra:
            out["creation_options"] = FrozenDict({**(given or {}), **extra})
        return FrozenDict(out)

    def zarr_options(self, section: Mapping[str, Any], key: KeyPath) -> None:
        """`zarr_format` (3, or 2 for readers that know only v2) and `shard` (a metatile per object)."""
        if "zarr_format" in section and section["zarr_format"] not in (2, 3):
            raise self.fail(key + ("zarr_format",), "2 or 3", section["zarr_format"])
        if "shard" in section:
            if not isinstance(section["shard"], bool):
                raise self.fail(key + ("shard",), "true or false", section["shard"])
            if section["shard"] and section.get("zarr_format", 3) == 2:
                raise self.loc.error(key + ("shard",), "expected zarr_format 3 with shard: true (Zarr v2 has no "
                                                       "sharding)")
        if "tile_path_schema" in section:
            raise self.loc.error(key + ("tile_path_schema",), "a Zarr store has no tile paths (its chunk keys are "
                                                              "Zarr's)")

    def band_nodata(self, section: Mapping[str, Any], specs: tuple[Mapping[str, Any], ...], key: KeyPath
                    ) -> tuple[KeyPath, Any] | None:
        """(where, value) of a nodata given on the bands; GeoTIFF and PNG keep one for all bands."""
        given = [(key + ("bands", i, "nodata"), s["nodata"]) for i, s in enumerate(specs) if "nodata" in s]
        if not given:
            return None
        values = {repr(v) for _, v in given} | ({repr(section["nodata"])} if "nodata" in section else set())
        if len(values) > 1:
            raise self.loc.error(given[0][0], "expected one nodata value for all bands (a GeoTIFF or PNG tile has "
                                              f"one), found {', '.join(sorted(values))}; set output.nodata")
        return given[0]

    def check_creation_values(self, section: Mapping[str, Any], options: Mapping[str, Any], fmt: str, dtype: str,
                              bands: int, compress: str, key: KeyPath) -> None:
        """Values the GDAL driver itself rejects or would silently ignore, found by creating one
        small in-memory file with them (see `creation_options`)."""
        given = dict(options.get("creation_options") or {})
        if not given or fmt not in CREATION_OPTIONS:
            return
        codec = {} if compress == "none" or fmt != "GTiff" or "COMPRESS" in {k.upper() for k in given} \
            else {"COMPRESS": compress}
        stored_bands = bands + 1 if fmt == "PNG" and bands in (1, 3) else bands   # PNG adds alpha
        for name, problem in probe(fmt, {**codec, **given}, dtype, stored_bands):
            if name in codec:
                where = key + ("compress",)
            else:
                direct = next((k for k in section if isinstance(k, str) and k.upper() == name.upper()), None)
                where = key + (direct,) if direct is not None else key + ("creation_options", name)
            raise self.loc.error(where, f"GDAL's {'GTiff' if fmt == 'GTiff' else 'PNG'} driver refuses "
                                        f"{name}={given.get(name, codec.get(name))}: {problem}")

    def storage_options(self, section: Mapping[str, Any], key: KeyPath) -> FrozenDict:
        """`storage_options:` (mapchete's key): a mapping of option names to scalars or mappings."""
        value = section.get("storage_options")
        if value is None:
            return FrozenDict()
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise self.fail(key + ("storage_options",), "a mapping of option names (key, secret, "
                                                        "endpoint_url, region, anon, ...) to values", value)
        # a saved recipe's redacted values mean "from the environment" (see recipe.dump.redact)
        return freeze({k: v for k, v in value.items() if v != "<redacted>"})

    def dtype(self, value: str, key: KeyPath) -> str:
        """A sized dtype name (GDAL's spellings too); `float` or `int` would be a guess."""
        expected = f"a numeric dtype ({', '.join(RASTER_DTYPES)})"
        name = str(value).strip().lower()
        name = GDAL_DTYPES.get(name, name)
        if name not in RASTER_DTYPES:
            close = _UNSIZED.get(name) or " or ".join(difflib.get_close_matches(name, RASTER_DTYPES, n=2, cutoff=0.6))
            hint = f" (did you mean {close}?)" if close else ""
            raise self.loc.error(key, f"expected {expected}, found {found(value)}{hint}")
        return name

    def nodata(self, value: Any, dtype: str, key: KeyPath) -> float | int | None:
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lower() in ("nan", "-nan", "inf", "-inf"):
            value = float(value.strip().lower())   # `nodata: nan` (YAML itself knows only .nan)
            if np.dtype(dtype).kind != "f":
                raise self.loc.error(key, f"expected an integer nodata for dtype {dtype}, found {found(value)} "
                                          "(NaN and infinities exist only in float dtypes)")
        if not is_number(value):
            raise self.fail(key, "a number, nan or null", value)
        dt = np.dtype(dtype)
        if dt.kind in "ui":
            if isinstance(value, float) and not value.is_integer():
                raise self.loc.error(key, f"expected an integer nodata for dtype {dtype}, found {found(value)}")
            info = np.iinfo(dt)
            if not info.min <= int(value) <= info.max:
                raise self.loc.error(key, f"expected a nodata value that fits dtype {dtype} "
                                          f"({info.min}..{info.max}), found {found(value)}")
            return int(value)
        limit = float(np.finfo(dt).max)
        if math.isfinite(value) and abs(value) > limit:
            raise self.loc.error(key, f"expected a nodata value that fits dtype {dtype} "
                                      f"(-{limit:g}..{limit:g}), found {found(value)}")
        return float(value)
