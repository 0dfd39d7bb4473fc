"""The recipe's `input:` section: paths and specs, mapchete's groups and zoom-dependent
inputs, mosaics, and other recipes read as inputs; validated at load (see `model.py`)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from ziggurat.core.errors import RecipeError
from ziggurat.core.formats import RASTER_FILE_SUFFIXES, VECTOR_FILE_SUFFIXES, Storage
from ziggurat.core.location import Location
from ziggurat.recipe.mosaic import MosaicSection, is_mosaic
from ziggurat.recipe.output import is_remote
from ziggurat.recipe.stac_input import StacSection, is_stac
from ziggurat.recipe.yamlload import ZOOM_OPS, FrozenDict, KeyPath, found, zoom_conditions

INPUT_FORMATS = {"raster": "raster", "raster_file": "raster", "gtiff": "raster", "geotiff": "raster",
                 "tif": "raster", "vrt": "raster", "vector": "vector", "vector_file": "vector",
                 "geojson": "vector", "gpkg": "vector", "flatgeobuf": "vector", "esri shapefile": "vector",
                 "tiledir": "tiledir", "tiledirectory": "tiledir", "tile_directory": "tiledir"}
RASTER_EXTS = RASTER_FILE_SUFFIXES
VECTOR_EXTS = VECTOR_FILE_SUFFIXES
def file_kind(mode: int) -> str:
    """What a path that is not a regular file is, for messages."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((what for test, what in kinds if test(mode)), "not a regular file")


#: recipes being loaded as inputs of others (a recipe reading itself is a cycle)
_LOADING: set[Path] = set()


@dataclass(frozen=True)
class InputConfig:
    """One validated `input:` entry; io opens it without re-checking."""

    name: str
    path: Path | str  # str only for remote paths (/vsi..., scheme://) which must not be normalised
    format: str       # "raster" | "tiledir" | "vector" | "mosaic" | "stac" (path: the recipe folder)
    options: Mapping[str, Any] = field(default_factory=FrozenDict)
    #: where a driver may keep what it learned about its files (the output's .ziggurat/cache), set
    #: by the engine; not part of what the input is
    cache_dir: str | None = field(default=None, compare=False)
    #: credentials and endpoints (secrets: never in provenance, fingerprints or keys)
    storage_options: Mapping[str, Any] = field(default_factory=FrozenDict, compare=False, repr=False)
    #: the process argument it is given as: its name, or "group/name" inside an input group
    #: (mapchete's nested inputs); several configs share one when they apply at other zooms
    arg: str = ""
    #: the zooms it applies at (mapchete's ``file1: {zoom>=10: a.tif}``); None: every zoom
    zooms: tuple[int, ...] | None = None

    @property
    def argument(self) -> str:
        return self.arg or self.name

    def active(self, zoom: int) -> bool:
        return self.zooms is None or zoom in self.zooms


class InputSection(MosaicSection, StacSection):
    """Validation of `input:`; mixed into the recipe builder, which provides `resolve`."""

    base_dir: Path
    #: the recipe is a `.mapchete` file (its inputs are read as mapchete reads them)
    mapchete_dialect: bool = False

    def load_upstream(self, path: Path) -> Any:
        """Another recipe, loaded (the recipe builder provides it: a recipe input is a recipe)."""
        raise NotImplementedError

    def resolve(self, path: str) -> Path:
        raise NotImplementedError

    def storage_options(self, section: Mapping[str, Any], key: KeyPath) -> FrozenDict:
        """See `OutputSection.storage_options` (one check for inputs and the output)."""
        raise NotImplementedError

    def inputs(self, data: Mapping[str, Any], zooms: tuple[int, int]) -> Mapping[str, InputConfig]:
        expected = "a mapping of input name -> path or {path: ..., format: ...}"
        section = self.mapping(data, ("input",), expected, required=False) or {}
        out: dict[str, InputConfig] = {}
        self.input_tree(section, ("input",), "", range(zooms[0], zooms[1] + 1), out)
        return FrozenDict(out)

    def input_tree(self, section: Mapping[str, Any], key: KeyPath, prefix: str, zooms: range,
                   out: dict[str, InputConfig]) -> None:
        """mapchete's input forms: a path or spec, zoom-dependent (``{zoom>=10: a.tif}``), null
        (no input: the process default applies), or a group (a mapping of inputs, nestable)."""
        for name, value in section.items():
            here: KeyPath = key + (name,)
            if not isinstance(name, str) or not name or "/" in name:
                raise self.fail(here, "input names to be non-empty strings without '/'", name)
            arg = prefix + name
            if value is None:
                continue
            conds = zoom_conditions(value, here, self.loc)
            if conds:   # at a zoom no condition matches the input is absent (mapchete)
                active: dict[str, list[int]] = {cond: [] for cond, _, _ in conds}
                for zoom in zooms:
                    hits = [cond for cond, op, n in conds if ZOOM_OPS[op](zoom, n)]
                    if len(hits) > 1:
                        raise self.loc.error(here, f"several conditions match zoom {zoom} ({', '.join(hits)}); "
                                                   "expected at most one per zoom")
                    if hits:
                        active[hits[0]].append(zoom)
                for cond, zs in active.items():
                    if value[cond] is not None and zs:
                        cfg = self.one_input(f"{arg} ({cond.replace(' ', '')})", value[cond], here + (cond,))
                        out[cfg.name] = replace(cfg, arg=arg, zooms=tuple(zs))
                continue
            if isinstance(value, Mapping) and not (is_mosaic(value) or is_stac(value) or "path" in value
                                                   or "format" in value):
                self.input_tree(value, here, arg + "/", zooms, out)   # a group
                continue
            out[arg] = self.one_input(arg, value, here)

    def one_input(self, name: str, value: Any, key: KeyPath) -> InputConfig:
        if is_mosaic(value):  # several rasters read as one (see ziggurat.recipe.mosaic)
            return InputConfig(name, self.base_dir, "mosaic", self.mosaic_options(value, key))
        if is_stac(value):  # the items of a STAC catalog as a time series (see ziggurat.recipe.stac_input)
            return InputConfig(name, self.base_dir, "stac", self.stac_options(value, key))
        if isinstance(value, Mapping) and "path" not in value and "format" in value:
            fmt = value["format"]
            if not isinstance(fmt, str) or fmt.lower() not in INPUT_FORMATS:
                raise self.fail(key + ("format",), "one of raster, vector, tiledir (or mapchete's raster_file, "
                                                   "vector_file, TileDirectory; mapchete's input plug-ins are "
                                                   "not supported)", fmt)
        if isinstance(value, Mapping) and "path" not in value:
            raise self.loc.error(key, "expected 'path' (one file) or 'mosaic: [...]' (several files, "
                                      "globs or an index read as one), found the keys "
                                      f"{', '.join(map(str, value)) or 'none'}")
        if isinstance(value, str) and value.strip():
            spec: Mapping[str, Any] = FrozenDict()
            path_key, where = key, value
        elif isinstance(value, Mapping):
            spec, path_key = value, key + ("path",)
            where = self.string(spec, path_key, "a path string")
        else:
            raise self.loc.error(key, "expected a path, a mapping {path: ..., format: ...}, {mosaic: [...]}, "
                                      "zoom conditions ({zoom>=10: a.tif}) or a group (a mapping of inputs), "
                                      f"found {found(value)}")
        fmt = spec.get("format")
        if fmt is not None and (not isinstance(fmt, str) or fmt.lower() not in INPUT_FORMATS):
            raise self.fail(key + ("format",), "one of raster, vector, tiledir (or mapchete's raster_file, "
                                               "vector_file, TileDirectory)", fmt)
        options = FrozenDict((k, v) for k, v in spec.items() if k not in ("path", "format", "storage_options"))
        if "resampling" in options:   # checked here, with its line, not in every worker
            self.resampling(options["resampling"], key + ("resampling",))
        storage = self.storage_options(spec, key)
        path, detected = self.input_path(where, INPUT_FORMATS.get(fmt.lower()) if fmt else None, path_key)
        if self.mapchete_dialect and detected in ("raster", "tiledir") and "warp_mask" not in options:
            options = FrozenDict({**options, "warp_mask": "nodata"})   # read as mapchete reads
        if self.mapchete_dialect and detected == "tiledir" and "zoom_matching" not in options:
            options = FrozenDict({**options, "zoom_matching": "gdal"})
        return InputConfig(name, path, detected, options, storage_options=storage)

    def recipe_input(self, where: str, key: KeyPath) -> tuple[Path | str, str]:
        """Another recipe as an input (mapchete's ``file2: other.mapchete``): its output, which
        must have been written (`ziggurat execute` that recipe first)."""
        path = self.resolve(where)
        if path in _LOADING:
            raise self.loc.error(key, f"recipe {path} reads itself through its inputs (a cycle)")
        _LOADING.add(path)
        try:
            upstream = self.load_upstream(path)
        except RecipeError as exc:
            raise self.loc.error(key, f"cannot read the recipe given as input: {exc}") from exc
        finally:
            _LOADING.discard(path)
        out = upstream.output
        if not out.format_info.readable:
            raise self.loc.error(key, f"the recipe {where!r} writes {out.format}; only raster outputs can be "
                                      "read as inputs")
        if out.remote:
            return out.url, "raster" if out.storage is Storage.FILE else "tiledir"
        if not out.path.exists():
            raise self.loc.error(key, f"the recipe {where!r} has not written its output {out.path} yet: run "
                                      f"`ziggurat execute {where}` first (ziggurat does not process another "
                                      "recipe's tiles on demand)")
        return out.path, "raster" if out.storage is Storage.FILE else "tiledir"

    def input_path(self, where: str, fmt: str | None, key: KeyPath) -> tuple[Path | str, str]:
        ext = os.path.splitext(where.split("?")[0].rstrip("/"))[1].lower()
        if ext == ".mapchete" and not is_remote(where):
            return self.recipe_input(where, key)
        by_ext = "vector" if ext in VECTOR_EXTS else "raster"
        if is_remote(where):
            try:
                Location.parse(where)
            except ValueError as exc:
                raise self.loc.error(key, str(exc)) from exc
            # a URL without a file extension names a tile directory (its metadata.json is read on open)
            guessed = by_ext if ext in RASTER_EXTS + VECTOR_EXTS else "tiledir"
            return where, fmt or guessed
        path = self.resolve(where)
        if not path.exists():
            raise self.loc.error(key, f"input not found: {path} (from {where!r})")
        mode = path.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):   # GDAL would wait on a FIFO, read a device forever
            raise self.loc.error(key, f"expected a file or a folder, found {file_kind(mode)}: {path}")
        tiledir = path.is_dir() and (path / "metadata.json").is_file()
        if fmt == "tiledir" and not tiledir:
            raise self.loc.error(key, f"expected a tile directory with a metadata.json, found {path}")
        if fmt is None and path.is_dir() and not tiledir and ext not in RASTER_EXTS + VECTOR_EXTS:
            raise self.loc.error(key, f"{path} is a directory without metadata.json; expected a file or "
                                      "a tile directory (or give an explicit 'format')")
        return path, fmt or ("tiledir" if tiledir else by_ext)

    def input_gdal_options(self, inputs: Mapping[str, InputConfig]) -> dict[str, str]:
        """The inputs' `gdal_options` (GDAL reads them process-wide, so every worker sets them)."""
        out: dict[str, str] = {}
        for cfg in inputs.values():
            opts = cfg.options.get("gdal_options") or {}
            if not isinstance(opts, Mapping):
                raise self.fail(("input", cfg.argument, "gdal_options"), "a mapping of GDAL option -> value", opts)
            out.update({str(k): ("YES" if v else "NO") if isinstance(v, bool) else str(v) for k, v in opts.items()})
        return out

