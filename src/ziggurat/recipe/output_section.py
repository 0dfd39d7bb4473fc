"""Validation of the recipe's `output:` section: format, dtype, nodata, compression, single-file,
Zarr and vector options, checked at load like the rest of the recipe, against the format table."""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ziggurat.core.formats import (
    CREATION_OPTIONS,
    FORMATS,
    Format,
    Storage,
    format_for_path,
    format_named,
    listed_names,
)
from ziggurat.core.grid import METATILING_VALUES, Grid
from ziggurat.core.location import Location
from ziggurat.core.tilelayout import TileLayout
from ziggurat.core.timesteps import TimeSpecError, TimeSteps
from ziggurat.recipe.bands import BandsSection
from ziggurat.recipe.creation_options import probe
from ziggurat.recipe.output import (
    COMPRESSIONS,
    GDAL_DTYPES,
    OPTION_KEYS,
    OUTPUT_KEYS,
    RASTER_DTYPES,
    UNSIZED,
    ZARR_COMPRESSIONS,
    OutputConfig,
    is_remote,
    state_folder,
)
from ziggurat.recipe.vector_schema import SchemaError, parse_schema
from ziggurat.recipe.yamlload import FrozenDict, KeyPath, found, freeze, is_number

TYPED_KEYS = ("path", "format", "dtype", "bands", "nodata", "compress", "metatiling", "storage_options")


class OutputSection(BandsSection):
    """Validation of `output:`; mixed into the recipe builder, which provides `resolve`."""

    def resolve(self, path: str) -> Path:
        raise NotImplementedError

    def output(self, data: Mapping[str, Any], grid: Grid) -> OutputConfig:
        section = self.mapping(data, ("output",), "a mapping with at least 'path'", required=True) or {}
        key = ("output",)
        where = self.string(section, key + ("path",), "a path string")
        fmt = self.output_format(section, where, key)
        dtype = self.dtype(self.string(section, key + ("dtype",), "a dtype name", fmt.default_dtype), key + ("dtype",))
        bands, band_specs = self.bands(section, key, dtype)
        nodata, nodata_set = self.output_nodata(section, fmt, dtype, band_specs, key)
        compress = self.compression(section, fmt, dtype, key)
        self.format_limits(section, fmt, dtype, bands, nodata, key)
        choices = tuple(m for m in METATILING_VALUES if m <= grid.metatiling)
        metatiling = self.integer(section, key + ("metatiling",), 1, choices=choices)
        path, location = self.output_path(section, where, fmt, key)
        options = FrozenDict((k, v) for k, v in section.items() if k not in TYPED_KEYS)
        options = self.output_options(options, fmt.name, key)
        self.check_creation_values(section, options, fmt.name, dtype, bands, compress, key)
        if fmt.kind == "vector":  # vector tile directories need a schema
            try:
                options = FrozenDict({**options, "schema": freeze(parse_schema(section.get("schema")))})
            except SchemaError as exc:
                raise self.loc.error(key + ("schema",) + exc.path, str(exc)) from exc
        self.tile_path_schema(section, fmt, path, key)
        self.time_axis(section, fmt, where, key)
        storage = self.storage_options(section, key)
        return OutputConfig(path, fmt.name, dtype, bands, nodata, compress, metatiling, options, location, storage,
                            nodata_set, band_specs)

    def output_format(self, section: Mapping[str, Any], where: str, key: KeyPath) -> Format:
        """The format named, or implied by the path (`.zarr`, `.parquet`); a path that implies one
        refuses another."""
        names = listed_names()
        implied = format_for_path(where)
        given = self.string(section, key + ("format",), names, implied.name)
        fmt = format_named(given)
        if fmt is None:
            raise self.fail(key + ("format",), names, given)
        if implied.path_suffixes and fmt is not implied:
            raise self.loc.error(key + ("format",), f"expected {implied.name} for a path ending in "
                                                    f"{implied.path_suffixes[0]}, found {given}")
        return fmt

    def output_nodata(self, section: Mapping[str, Any], fmt: Format, dtype: str,
                      band_specs: tuple[Mapping[str, Any], ...], key: KeyPath) -> tuple[float | int | None, bool]:
        """(nodata, whether the recipe set one); formats with an alpha band always have one."""
        band_nodata = self.band_nodata(section, band_specs, key)
        nodata_set = "nodata" in section or fmt.alpha_nodata
        if band_nodata is not None:
            return self.nodata(band_nodata[1], dtype, band_nodata[0]), True
        if nodata_set:
            return self.nodata(section.get("nodata", 0), dtype, key + ("nodata",)), True
        # floats: NaN, which no value is; integers: no default, every value may be data
        return (math.nan if np.dtype(dtype).kind == "f" else None), False

    def compression(self, section: Mapping[str, Any], fmt: Format, dtype: str, key: KeyPath) -> str:
        store = fmt.storage is Storage.STORE
        choice, default = f"one of {', '.join(COMPRESSIONS)}", "none" if "compress" in section else \
            "zstd" if store else "deflate"
        compress = self.string(section, key + ("compress",), choice, default).lower()  # null: none
        if compress not in COMPRESSIONS:
            raise self.fail(key + ("compress",), choice, section["compress"])
        if store and compress not in ZARR_COMPRESSIONS:
            raise self.fail(key + ("compress",), f"one of {', '.join(ZARR_COMPRESSIONS)} for a Zarr store (gzip "
                                                 "chunks embed the time they were written, so reruns would differ)",
                            compress)
        if compress in ("jpeg", "webp") and dtype != "uint8":
            raise self.loc.error(key + ("compress",), f"expected dtype uint8 with {compress} "
                                                      f"compression, found dtype {dtype}")
        return compress

    def format_limits(self, section: Mapping[str, Any], fmt: Format, dtype: str, bands: int,
                      nodata: float | int | None, key: KeyPath) -> None:
        """What a format allows: Zarr's own keys, mapchete's fixed 8-bit formats, PNG's dtypes."""
        if fmt.storage is Storage.STORE:
            self.zarr_options(section, key)
        for name in ("zarr_format", "shard"):
            if name in section and fmt.storage is not Storage.STORE:
                raise self.loc.error(key + (name,), f"'output.{name}' applies to Zarr stores only (a path ending in "
                                                    f".zarr), not to {fmt.name}")
        if fmt.fixed is not None and (dtype, bands, nodata) != fmt.fixed:
            raise self.loc.error(key + ("format",), f"expected one uint8 band with nodata 0 for {fmt.name} "
                                                    f"(mapchete's shade tiles), found {bands} {dtype} band(s) "
                                                    f"with nodata {nodata}")
        if fmt.dtypes is not None and dtype not in fmt.dtypes:
            raise self.loc.error(key + ("dtype",), f"expected {' or '.join(fmt.dtypes)} for {fmt.name}, "
                                                   f"found {dtype}")

    def output_path(self, section: Mapping[str, Any], where: str, fmt: Format, key: KeyPath
                    ) -> tuple[Path, Location | None]:
        """(local path or state folder, bucket location or None)."""
        if not is_remote(where):
            return self.local_output_path(section, where, fmt, key), None
        try:
            location = Location.parse(where)
        except ValueError as exc:
            raise self.loc.error(key + ("path",), str(exc)) from exc
        if not location.is_object_store:
            raise self.loc.error(key + ("path",), "expected a local path or an object store URL (s3://, "
                                                  f"gs://, az://) for an output, found {where!r}"
                                                  + (" (HTTP is read-only)" if location.is_http else ""))
        self.single_file_format(location.name, fmt, key)
        if not location.key:
            raise self.loc.error(key + ("path",), f"expected a folder inside the bucket ({where}/NAME), "
                                                  "found the bucket itself")
        return state_folder(location), location

    def single_file_format(self, name: str, fmt: Format, key: KeyPath) -> bool:
        """Whether a path names one file; only a format with single files may have such a path."""
        single = fmt.storage_at(name) is Storage.FILE
        if not single and any(f.storage_at(name) is Storage.FILE for f in _single_file_formats()):
            names = " or ".join(f.name for f in _single_file_formats())
            raise self.loc.error(key + ("format",), f"expected {names} for a single-file output ({name}), "
                                                    f"found {fmt.name}")
        return single

    def local_output_path(self, section: Mapping[str, Any], where: str, fmt: Format, key: KeyPath) -> Path:
        path = self.resolve(where)
        single = self.single_file_format(path.name, fmt, key)  # one GeoTIFF instead of tiles
        if single and path.is_dir():
            raise self.loc.error(key + ("path",), f"expected a GeoTIFF file path, found the folder {path}")
        if not single and path.exists() and not path.is_dir():
            raise self.loc.error(key + ("path",), f"expected a directory (or a new path), found the "
                                                  f"file {path}")
        if "cog" in section and not isinstance(section["cog"], bool):
            raise self.fail(key + ("cog",), "true or false", section["cog"])
        return path

    def tile_path_schema(self, section: Mapping[str, Any], fmt: Format, path: Path, key: KeyPath) -> None:
        schema = section.get("tile_path_schema")
        if schema is None:
            return
        try:   # mapchete's key: where tiles go inside the directory
            TileLayout.parse(schema)
        except ValueError as exc:
            raise self.loc.error(key + ("tile_path_schema",), f"{exc} (ziggurat's tile directories keep zoom "
                                                              "folders first, as GDAL's STACTA and the indexes "
                                                              "read them)") from exc
        if fmt.storage_at(path) is Storage.FILE:
            raise self.loc.error(key + ("tile_path_schema",), "a single-file output has no tile paths")

    def output_options(self, options: Mapping[str, Any], fmt: str, key: KeyPath) -> FrozenDict:
        """The keys beyond the typed ones: ziggurat's (OPTION_KEYS) and GDAL creation options of
        the format, given under `creation_options` or, as mapchete allows, directly (then moved
        there). Anything else is a typo, refused with the closest key: it would be ignored."""
        driver = _driver(fmt)
        gdal_names = CREATION_OPTIONS.get(driver or "", ())
        extra: dict[str, Any] = {}
        out: dict[str, Any] = {}
        for name, value in options.items():
            if name in OPTION_KEYS:
                out[name] = value
            elif isinstance(name, str) and name.upper() in gdal_names and driver in CREATION_OPTIONS:
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
                if not isinstance(name, str) or (driver in CREATION_OPTIONS and name.upper() not in gdal_names):
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

    def time_axis(self, section: Mapping[str, Any], fmt: Format, where: Any, key: KeyPath) -> None:
        """`time`: the output's time steps (a series out), held by a Zarr store's time axis or by a
        GeoTIFF tile directory's tiles (a band per step and band, a folder per step)."""
        if "time" not in section:
            return
        series = ", ".join(f.name for f in FORMATS.values() if f.series)
        if not fmt.series or fmt.storage_at(str(where)) is Storage.FILE:
            kind = "one file" if fmt.series else f"format {fmt.name}"
            raise self.loc.error(key + ("time",), f"a time series is written to a Zarr store or a tile directory "
                                                  f"(formats {series}); {kind} holds one image per tile")
        try:
            TimeSteps.parse(section["time"])
        except TimeSpecError as exc:
            raise self.loc.error(key + ("time",) + exc.key, str(exc)) from None

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
        info = format_named(fmt)
        driver = None if info is None else info.gdal_driver
        if not given or info is None or driver not in CREATION_OPTIONS:
            return
        codec = {} if compress == "none" or not info.compress_option or "COMPRESS" in {k.upper() for k in given} \
            else {"COMPRESS": compress}
        stored_bands = bands + 1 if info.adds_alpha and bands in (1, 3) else bands
        for name, problem in probe(driver, {**codec, **given}, dtype, stored_bands):
            if name in codec:
                where = key + ("compress",)
            else:
                direct = next((k for k in section if isinstance(k, str) and k.upper() == name.upper()), None)
                where = key + (direct,) if direct is not None else key + ("creation_options", name)
            raise self.loc.error(where, f"GDAL's {driver} driver refuses "
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
            close = UNSIZED.get(name) or " or ".join(difflib.get_close_matches(name, RASTER_DTYPES, n=2, cutoff=0.6))
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


def _driver(fmt: str) -> str | None:
    """The GDAL driver writing a format's tiles (its creation options are checked)."""
    found_format = format_named(fmt)
    return None if found_format is None else found_format.gdal_driver


def _single_file_formats() -> list[Format]:
    return [f for f in FORMATS.values() if f.single_file_suffixes]


__all__ = ["OutputSection", "TYPED_KEYS"]
