"""The stored output: what an output holds once written, asked by everything after a run.

`open_stored(path)` reads it back (metadata.json of a tile directory or a Zarr store, or a single
file by its path); a run's `Output` hands out the same object from its own settings (`stored`),
so the recorder, the catalog, `verify`, `reproduce`, `status`, `serve` and the remote sync never
decide from a path what an output is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ziggurat.core.errors import OutputError
from ziggurat.core.formats import DEFAULT_FORMAT, Format, Storage, format_named, formats_where, records_beside
from ziggurat.core.grid import Grid, TileIndex
from ziggurat.core.limits import ZoomLimits
from ziggurat.core.tilelayout import TileLayout
from ziggurat.core.timesteps import TimeSteps
from ziggurat.io.common import int_names, nodata_from_json
from ziggurat.io.outputs.zarrcodec import VARIABLE

RECORDS_FOLDER = ".ziggurat"
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class StoredOutput:
    """An output as stored: `grid` is the *output* grid (output metatiling, no buffer); None for
    a single file read back by its path."""

    path: Path
    info: Format
    storage: Storage
    tile_grid: Grid | None = None
    dtype: str = "float32"
    bands: int = 1
    nodata: float | int | None = None
    #: where each tile's file is (mapchete's `tile_path_schema`)
    layout: TileLayout = TileLayout()
    #: `output.bands` specs as metadata.json keeps them (name, unit, scale, classes, ...); of a
    #: time series one per stored band, named after its step
    band_specs: tuple[dict[str, Any], ...] = ()
    #: a time series' steps (`output.time`), folded into `bands` step after step; None: one image
    time: TimeSteps | None = None

    @property
    def grid(self) -> Grid:
        """The grid of the stored tiles (a single file read back by its path has none)."""
        if self.tile_grid is None:
            raise OutputError(f"output {self.path}: one file, no tile grid recorded")
        return self.tile_grid

    @property
    def format(self) -> str:
        return self.info.name

    @property
    def is_raster(self) -> bool:
        """Raster tiles, one file each (what tiled-assets items, VRTs and `serve` describe)."""
        return self.info.raster_tiles and self.storage is Storage.TILES

    @property
    def single_file(self) -> bool:
        return self.storage is Storage.FILE

    @property
    def records_root(self) -> Path:
        """The folder the output's files are relative to (a single file's parent)."""
        return self.path.parent if self.single_file else self.path

    @property
    def provenance_dir(self) -> Path:
        return provenance_dir(self.path)

    @property
    def ext(self) -> str:
        if not self.is_raster or self.info.tile_suffix is None:
            raise OutputError(f"output {self.path}: format {self.format!r} does not write raster "
                              f"tiles ({', '.join(formats_where(raster_tiles=True))} do)")
        return self.info.tile_suffix[1:]

    def relative_path(self, index: TileIndex) -> str:
        """`zoom/row/col.ext`, POSIX style: what hrefs, indexes and VRTs store."""
        return self.layout.rel(index[0], index[1], index[2], f".{self.ext}")

    def tile_path(self, index: TileIndex) -> Path:
        return self.path / self.relative_path(index)

    def zooms_on_disk(self) -> list[int]:
        return [z for z in int_names(self.path) if self.grid.minzoom <= z <= self.grid.maxzoom]

    def scan(self, zooms: Iterable[int] | None = None) -> Iterator[TileIndex]:
        """Tiles on disk, zoom by zoom, row by row (sorted); one listdir per row folder."""
        wanted = self.zooms_on_disk() if zooms is None else sorted(set(zooms))
        suffix = f".{self.ext}"
        for zoom in wanted:
            zdir = self.path / str(zoom)
            for first in int_names(zdir):   # rows (cols with a col-first layout)
                for second in int_names(zdir / str(first), suffix):
                    yield self.layout.index(zoom, first, second)

    def limits(self, zooms: Iterable[int] | None = None) -> ZoomLimits:
        out = ZoomLimits()
        out.update(self.scan(zooms))
        return out

    def tile_files(self) -> set[str]:
        """Relative paths of every stored tile object (what `verify` compares with the ledger):
        a store's chunk objects, or the files in a tile directory's row folders (hidden ones too)
        and anything in a zoom folder that is not a row folder; nothing for a single file."""
        if self.storage is Storage.STORE:
            return zarr_chunk_files(self.path)
        if self.storage is Storage.FILE:
            return set()
        found: set[str] = set()
        for zoom in os.scandir(self.path):
            if not (zoom.name.isdigit() and zoom.is_dir(follow_symlinks=False)):
                continue
            for row in os.scandir(zoom.path):
                rel = f"{zoom.name}/{row.name}"
                if not (row.name.isdigit() and row.is_dir(follow_symlinks=False)):
                    found.add(rel)   # a file (or link) directly in a zoom folder
                    continue
                found.update(f"{rel}/{entry.name}" for entry in os.scandir(row.path))
        return found


def read_metadata(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A tile directory's `metadata.json`; FileNotFoundError without one, ValueError if it is
    not a JSON object."""
    meta = json.loads((Path(folder) / METADATA_FILE).read_text())
    if not isinstance(meta, dict):
        raise ValueError(f"{METADATA_FILE} holds a {type(meta).__name__}, not an object")
    return meta


def is_chunk_object(rel: str) -> bool:
    """A store's data chunk (or shard) object, by its key: under `{zoom}/data/` but not that
    array's metadata document (`zarr.json`; v2: `.zarray`, `.zattrs`); not coordinates or groups."""
    parts = rel.split("/")
    return len(parts) >= 3 and parts[0].isdigit() and parts[1] == VARIABLE and \
        not (len(parts) == 3 and parts[2] in ("zarr.json", ".zarray", ".zattrs"))


def zarr_chunk_files(root: str | Path) -> set[str]:
    """Relative paths of every data chunk (or shard) object of a store (`is_chunk_object`)."""
    found: set[str] = set()
    base = Path(root)
    for zoom in base.iterdir():
        data = zoom / VARIABLE
        if not (zoom.name.isdigit() and data.is_dir()):
            continue
        for path in data.rglob("*"):
            rel = path.relative_to(base).as_posix()
            if path.is_file() and is_chunk_object(rel):
                found.add(rel)
    return found


def provenance_dir(output_path: str | os.PathLike[str]) -> Path:
    """``OUT/.ziggurat`` for a tile directory or store, ``OUT.tif.ziggurat`` beside a single file."""
    path = Path(output_path)
    return path.with_name(path.name + RECORDS_FOLDER) if records_beside(path) else path / RECORDS_FOLDER


def open_stored(path: str | os.PathLike[str]) -> StoredOutput:
    """Read an output back: a single file by its path, else its `metadata.json`."""
    root = Path(path).resolve()
    if records_beside(root):
        return StoredOutput(root, DEFAULT_FORMAT, Storage.FILE)
    meta_path = root / METADATA_FILE
    try:
        meta = read_metadata(root)
    except FileNotFoundError as exc:
        raise OutputError(f"{root} is not a ziggurat tile directory (no {METADATA_FILE})") from exc
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot read {meta_path}: {exc}") from exc
    try:
        return stored_from_metadata(root, meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise OutputError(f"invalid {meta_path}: {exc}") from exc


def stored_or_none(path: str | os.PathLike[str]) -> StoredOutput | None:
    """The ziggurat output at `path`, or None where there is none (or none readable)."""
    try:
        return open_stored(path)
    except OutputError:
        return None


def is_stored(path: str | os.PathLike[str], storage: Storage | None = None, kind: str | None = None) -> bool:
    """Whether `path` holds a ziggurat output (of that storage and kind)."""
    stored = stored_or_none(path)
    return stored is not None and (storage is None or stored.storage is storage) \
        and (kind is None or stored.info.kind == kind)


def stored_from_metadata(root: Path, meta: dict[str, Any]) -> StoredOutput:
    """From a metadata.json's content (read, or made by a run's output as it would write it)."""
    out = meta["output"]
    info = format_named(str(out.get("format", DEFAULT_FORMAT.name)))
    if info is None:
        raise ValueError(f"unknown format {out.get('format')!r}")
    grid = Grid.from_dict(meta["grid"])
    layout = TileLayout.parse(out.get("tile_path_schema"))
    if info.kind != "raster":  # e.g. a vector tile directory: no bands to describe
        return StoredOutput(root, info, info.storage, grid, layout=layout)
    bands, specs = int(out["bands"]), tuple(out.get("band_specs") or ())
    time = TimeSteps.from_json(out["time"]) if out.get("time") else None
    if time is not None:   # what one stored tile holds: every step's bands
        specs = series_band_specs(time, bands, specs)
        bands *= len(time)
    return StoredOutput(root, info, info.storage, grid, str(out["dtype"]), bands,
                        nodata_from_json(out.get("nodata")), layout, specs, time)


def series_band_specs(time: TimeSteps, bands: int, specs: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
    """One spec per stored band of a time series, step after step, named "<step> <band name>"."""
    per_step = list(specs) or [{} for _ in range(bands)]
    return tuple({**spec, "name": f"{label} {spec.get('name') or f'band {b}'}"}
                 for label in time.labels for b, spec in enumerate(per_step, 1))


__all__ = ["METADATA_FILE", "RECORDS_FOLDER", "StoredOutput", "is_chunk_object", "is_stored", "open_stored",
           "provenance_dir", "read_metadata", "series_band_specs", "stored_from_metadata", "stored_or_none",
           "zarr_chunk_files"]
