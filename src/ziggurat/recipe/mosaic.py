"""The `mosaic` input section: several rasters read as one, checked when the recipe loads.

```yaml
input:
  dem:
    mosaic: [fixes/*.tif, fabdem/*.tif, {path: glo30/*.tif, resampling: cubic, nodata: -32767}]
    priority: first        # first (default, like yirgacheffe's GroupLayer) or last (like a GDAL VRT)
  dem2: [a.tif, b.tif]     # shorthand: a list is a mosaic
  dem3: tiles/*.tif        # shorthand: a glob is a mosaic
```

A source is a raster path (also a VRT or GDAL GTI index, read as one raster), a glob, or a
vector index of files (GeoPackage, FlatGeobuf, GeoJSON, Shapefile; `location` names the field
holding each file's path, relative to the index). Globs must match something now.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ziggurat.core.formats import GEOPARQUET_SUFFIXES, VECTOR_INDEX_SUFFIXES
from ziggurat.core.location import is_url
from ziggurat.recipe.checker import Checker
from ziggurat.recipe.yamlload import FrozenDict, KeyPath, is_number

GLOB_CHARS = "*?["
SOURCE_KEYS = ("path", "resampling", "nodata", "location")
MOSAIC_KEYS = ("mosaic", "priority", "resampling", "dtype", "format", "path")
VECTOR_INDEX_EXTS = VECTOR_INDEX_SUFFIXES


def is_glob(text: str) -> bool:
    return any(c in text for c in GLOB_CHARS)


def is_mosaic(value: Any) -> bool:
    """A list, a glob string or a mapping with `mosaic`: the mosaic input's forms."""
    if isinstance(value, (list, tuple)):
        return True
    if isinstance(value, str):
        return is_glob(value)
    return isinstance(value, Mapping) and "mosaic" in value


class MosaicSection(Checker):
    """Validates one mosaic input; mixed into the recipe builder."""

    base_dir: Path

    def mosaic_options(self, value: Any, key: KeyPath) -> FrozenDict:
        spec: Mapping[str, Any] = value if isinstance(value, Mapping) else {"mosaic": value}
        self.check_keys(spec, key, MOSAIC_KEYS)
        entries = spec.get("mosaic")
        if isinstance(entries, str):
            entries = [entries]
        if not isinstance(entries, (list, tuple)) or not entries:
            raise self.fail(key + ("mosaic",), "a non-empty list of paths, globs or {path: ...} mappings",
                            entries)
        priority = spec.get("priority", "first")
        if priority not in ("first", "last"):
            raise self.fail(key + ("priority",), "first or last", priority)
        sources = [self._source(entry, key + ("mosaic", i)) for i, entry in enumerate(entries)]
        options: dict[str, Any] = {"mosaic": tuple(sources), "priority": priority}
        if spec.get("resampling") is not None:
            options["resampling"] = self.resampling(spec["resampling"], key + ("resampling",))
        if spec.get("dtype") is not None:
            try:
                options["dtype"] = np.dtype(str(spec["dtype"])).name
            except TypeError as exc:
                raise self.fail(key + ("dtype",), "a numeric dtype", spec["dtype"]) from exc
        return FrozenDict(options)

    def _source(self, entry: Any, key: KeyPath) -> FrozenDict:
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, Mapping):
            raise self.fail(key, "a path, a glob or a mapping {path: ..., resampling: ..., nodata: ...}", entry)
        self.check_keys(entry, key, SOURCE_KEYS)
        where = self.string(entry, key + ("path",), "a path or glob string")
        path = where if is_url(where) else os.path.abspath(self.base_dir / os.path.expanduser(where))
        if is_url(where):  # a bucket or web server: listed and opened when the input opens
            pass
        elif is_glob(where):
            if not glob.glob(path, recursive=True):
                raise self.loc.error(key + ("path",), f"the pattern {where!r} matches no file ({path})")
        elif not os.path.exists(path):
            raise self.loc.error(key + ("path",), f"input not found: {path} (from {where!r})")
        if Path(path).suffix.lower() in GEOPARQUET_SUFFIXES:
            raise self.loc.error(key + ("path",), "expected a GeoPackage, FlatGeobuf, GeoJSON or Shapefile index: "
                                                  "the GDAL in the rasterio/fiona wheels has no Parquet driver "
                                                  f"(convert {where!r} with ogr2ogr -f GPKG)")
        out: dict[str, Any] = {"path": path}
        if entry.get("resampling") is not None:
            out["resampling"] = self.resampling(entry["resampling"], key + ("resampling",))
        if entry.get("nodata") is not None:
            if not is_number(entry["nodata"]):
                raise self.fail(key + ("nodata",), "a number or .nan", entry["nodata"])
            out["nodata"] = float(entry["nodata"])
        if Path(path).suffix.lower() in VECTOR_INDEX_EXTS:
            out["location"] = str(entry.get("location", "location"))
        elif entry.get("location") is not None:
            raise self.loc.error(key + ("location",), "expected a vector index of files (.gpkg, .fgb, "
                                                      f".geojson, .shp) for 'location', found {where!r}")
        return FrozenDict(out)


__all__ = ["GLOB_CHARS", "MosaicSection", "VECTOR_INDEX_EXTS", "is_glob", "is_mosaic"]
