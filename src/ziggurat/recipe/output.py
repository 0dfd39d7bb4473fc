"""The validated `output:` section (`OutputConfig`) and the names it accepts; the validation
itself is `output_section.OutputSection`. Format facts come from `core.formats`."""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from ziggurat.core.formats import DEFAULT_FORMAT, Format, Storage, format_named
from ziggurat.core.location import Location, is_url
from ziggurat.core.timesteps import TimeSteps
from ziggurat.recipe.yamlload import FrozenDict

COMPRESSIONS = ("deflate", "lzw", "zstd", "lzma", "packbits", "jpeg", "webp", "none")
RASTER_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
                 "float32", "float64")
#: GDAL's data type names (Byte is unsigned: numpy's "byte" is int8)
GDAL_DTYPES = {"byte": "uint8"}
#: names numpy would take as one size without saying so (`float` is float64)
UNSIZED = {"float": "float32 or float64", "double": "float64", "single": "float32", "int": "int16 or int32",
            "uint": "uint16 or uint32", "integer": "int16 or int32"}


#: output keys besides the typed ones, read by the drivers and the records
OPTION_KEYS = ("creation_options", "schema", "cog", "overview_resampling", "stac", "tile_path_schema", "zarr_format",
               "shard", "time")
OUTPUT_KEYS = ("path", "format", "dtype", "bands", "nodata", "compress", "metatiling", "storage_options",
               *OPTION_KEYS)

#: compressions a Zarr store accepts (gzip chunks embed the time they were written)
ZARR_COMPRESSIONS = ("zstd", "none")

@dataclass(frozen=True, eq=False)
class OutputConfig:
    """The validated `output:` section; unknown keys are driver options for io."""

    #: a local output's path; for an output on object storage its local state folder (the
    #: ledger and provenance while a run works; the bucket holds the published copy)
    path: Path
    format: str = DEFAULT_FORMAT.name
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
    def format_info(self) -> Format:
        """The format's row in the format table."""
        found = format_named(self.format)
        if found is None:
            raise ValueError(f"unknown output format {self.format!r}")
        return found

    @property
    def storage(self) -> Storage:
        """How the output is stored: tiles, one file (a GTiff path ending in .tif) or a store."""
        return self.format_info.storage_at(self.location.url if self.location is not None else self.path)

    @property
    def time_steps(self) -> TimeSteps | None:
        """The output's time axis (`output.time`, validated at load), or None: one image per tile."""
        spec = self.options.get("time")
        return None if spec is None else TimeSteps.parse(spec)

    @property
    def holds_overviews(self) -> bool:
        """Overview zooms are resampled from stored tiles: raster tiles or a Zarr store."""
        return self.format_info.kind == "raster" and self.storage is not Storage.FILE


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


__all__ = ["COMPRESSIONS", "GDAL_DTYPES", "OPTION_KEYS", "OUTPUT_KEYS", "OutputConfig",
           "RASTER_DTYPES", "UNSIZED", "ZARR_COMPRESSIONS", "is_remote", "state_folder", "state_root"]
