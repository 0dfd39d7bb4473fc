"""GeoJSON / FlatGeobuf tile directories: `{root}/{zoom}/{row}/{col}.geojson|.fgb` + metadata.json.

A process returns features (mappings with a shapely or GeoJSON geometry and properties);
each output tile gets them clipped to its bounds (not the buffer) and conformed to the
schema's geometry type: a Multi* schema takes single parts too (promoted), a single-type
schema gets multi-parts exploded into one feature per part, other dimensions are dropped.
Points on a shared tile edge go to one tile only (left/top-inclusive). Tiles without
features are not written. Files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from ziggurat.core.errors import InputError, OutputError
from ziggurat.core.formats import tile_suffix
from ziggurat.core.geometry import (
    combine,
    conform,
    crs_equal,
    dimension,
    flatten,
    keep_dimension,
    repair,
    tidy_clipped_lines,
)
from ziggurat.core.grid import Bounds, Grid, Tile, TileIndex
from ziggurat.core.tilelayout import TileLayout
from ziggurat.io import gdal_errors
from ziggurat.io.checksum import fingerprint_config
from ziggurat.io.common import int_names, transform_bounds_safe
from ziggurat.io.inputs.vector import Feature, VectorTileInput, clip_to_box, prepare_geometries, read_records
from ziggurat.io.outputs.folder import METADATA_FILE, TileFolder, read_metadata
from ziggurat.io.protocols import OutputCapabilities
from ziggurat.recipe import InputConfig, OutputConfig
from ziggurat.recipe.vector_schema import parse_schema

logger = logging.getLogger(__name__)

DRIVERS = {"GeoJSON": "GeoJSON", "FlatGeobuf": "FlatGeobuf"}   # format -> fiona driver


def is_vector_tiledir(path: str | os.PathLike[str]) -> bool:
    """A folder whose metadata.json describes a GeoJSON/FlatGeobuf tile directory."""
    try:
        fmt = read_metadata(path)["output"]["format"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return fmt in DRIVERS


def as_features(result: Any, output_format: str) -> list[Any]:
    """A process result for a vector output as a list; arrays get a clear error."""
    if isinstance(result, np.ndarray):
        raise TypeError(f"execute() returned an array, but the output format {output_format} is a "
                        "vector format; return a list of features {'geometry': ..., 'properties': {...}}")
    if isinstance(result, (BaseGeometry, Mapping)):
        return [result]
    try:
        return list(result)
    except TypeError as exc:
        raise TypeError(f"execute() returned {type(result).__name__}; a vector output ({output_format}) "
                        "expects a list of features {'geometry': ..., 'properties': {...}}") from exc


class VectorTileDirectoryOutput(TileFolder):
    """Writes process features as GeoJSON/FlatGeobuf output tiles; `grid` is the process grid."""

    capabilities = OutputCapabilities(kind="vector", tile_files=True, overviews=False, writes_in_parent=False,
                                      parent_writes=False, threadsafe_writes=True)
    #: the formats this class writes -> fiona driver (a subclass with its own writer: None)
    formats: dict[str, str | None] = dict(DRIVERS)
    writes: tuple[str, ...] = tuple(DRIVERS)

    def __init__(self, config: OutputConfig, grid: Grid) -> None:
        super().__init__(config, grid)
        if self.format not in self.formats:
            raise OutputError(f"output {self.path}: {self.format!r} is not a vector format "
                              f"({', '.join(self.formats)})")
        self.driver, self.suffix = self.formats[self.format], tile_suffix(self.format) or ""
        try:
            self.schema: dict[str, Any] = parse_schema(_thaw((config.options or {}).get("schema")))
        except ValueError as exc:
            raise OutputError(f"output {self.path}: schema: {exc}") from exc
        self._crs_wkt = grid.crs.to_wkt()
        self._dropped_properties: set[str] = set()

    # -- metadata -----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {"format": self.format, "schema": self.schema}

    def strict_settings(self) -> tuple[tuple[str, Any], ...]:
        return (("format", self.format), ("schema", self.schema))

    # -- tiles --------------------------------------------------------------------------
    def _normalise(self, process_tile: Tile, features: Iterable[Any]) -> list[tuple[BaseGeometry, dict]]:
        """(valid shapely geometry, properties) pairs; OutputError for what is not a feature."""
        out = []
        for n, feat in enumerate(features):
            props: Mapping[str, Any]
            if isinstance(feat, BaseGeometry):
                geom, props = feat, {}
            elif isinstance(feat, Mapping) and "geometry" in feat:
                geom, props = feat["geometry"], feat.get("properties") or {}
                if geom is not None and not isinstance(geom, BaseGeometry):
                    try:
                        geom = shapely.geometry.shape(geom)
                    except Exception as exc:
                        raise OutputError(f"tile {process_tile}: feature {n} has no readable geometry: "
                                          f"{exc}") from exc
            else:
                raise OutputError(f"tile {process_tile}: feature {n} is a {type(feat).__name__}; expected "
                                  "a mapping {'geometry': ..., 'properties': {...}} or a shapely geometry")
            if geom is None or geom.is_empty:
                continue
            geom, why = repair(geom)
            if geom is None:
                logger.warning("tile %s: feature %d has an invalid geometry (%s); dropped", process_tile, n, why)
                continue
            out.append((geom, self._properties(props)))
        return out

    def _properties(self, props: Mapping[str, Any]) -> dict[str, Any]:
        names = self.schema["properties"]
        extra = set(props) - set(names) - self._dropped_properties
        if extra:
            self._dropped_properties |= extra
            logger.warning("output %s: properties %s are not in output.schema and are not written",
                           self.path, ", ".join(sorted(map(str, extra))))
        return {k: _cast(props.get(k), kind, k) for k, kind in names.items()}

    def _tile_features(self, tile: Tile, items: Sequence[tuple[BaseGeometry, dict]]
                       ) -> list[tuple[BaseGeometry, dict]]:
        if not items:
            return []
        b = tile.bounds
        geoms = np.empty(len(items), dtype=object)
        geoms[:] = [g for g, _ in items]
        dims = np.array([dimension(g) for g in geoms], dtype=np.int8)
        clipped = clip_to_box(geoms, dims, b)
        out = []
        for (geom, props), dim, part in zip(items, dims, clipped):
            if dim == 0:  # points: half-open tile so an edge point is written once
                part = keep_dimension(geom, 0)
                pts = [p for p in flatten(part) if b.left <= p.x < b.right and b.bottom < p.y <= b.top] \
                    if part is not None else []
                part = combine(pts, 0)
            elif dim == 1 and part is not None:
                part = tidy_clipped_lines(part, b)
            if part is None:
                continue
            out += [(g, props) for g in conform(part, self.schema["geometry"])]
        return out

    def write(self, process_tile: Tile, features: Iterable[Any]) -> list[TileIndex]:
        """Write every non-empty output tile of a process tile; returns what was written."""
        items = self._normalise(process_tile, features)
        written: list[TileIndex] = []
        for tile in self.output_tiles(process_tile):
            feats = self._tile_features(tile, items)
            if feats:
                self._write_tile(tile, feats)
                written.append(tile.index)
        return written

    def _write_tile(self, tile: Tile, feats: list[tuple[BaseGeometry, dict]]) -> None:
        import fiona

        schema = {"geometry": self.schema["geometry"], "properties": dict(self.schema["properties"])}
        records = [fiona.Feature(geometry=fiona.Geometry.from_dict(shapely.geometry.mapping(g)),
                                 properties=fiona.Properties(**p)) for g, p in feats]
        with self.staged(tile) as tmp:
            gdal_errors.reset("fiona")
            # the layer is named after the tile, not the temporary file: deterministic bytes
            with fiona.open(tmp, "w", driver=self.driver, schema=schema, crs_wkt=self._crs_wkt,
                            layer=str(tile.col)) as dst:
                dst.writerecords(records)
            failed = gdal_errors.failure("fiona")  # e.g. a full disk while OGR flushed the file
            if failed is not None:
                raise OutputError(failed)

    def _no_parent_writes(self) -> OutputError:
        """Parent-side writing moves arrays through shared memory; features do not fit that."""
        return OutputError(f"output {self.path}: {self.format} tiles are written by the workers; "
                           "parent-side writing (--write-in parent) is for raster outputs")

    def prepare_array(self, process_tile: Tile, data: Any) -> np.ndarray | None:
        raise self._no_parent_writes()

    def write_prepared(self, process_tile: Tile, array: np.ndarray) -> list[TileIndex]:
        raise self._no_parent_writes()

    def result_bytes(self, zoom: int) -> int:
        raise self._no_parent_writes()

    def tile_bytes(self, zoom: int) -> int:
        """A rough size for `plan`: 4 bytes per pixel of the tile's footprint."""
        h, w = self.output_grid.max_tile_shape(zoom)
        return 4 * h * w

    def read(self, tile: Tile | TileIndex) -> list[Feature] | None:
        """One written output tile's features (shapely geometries), or None if never written."""
        import fiona

        path = self.tile_path(tile)
        data = None
        if self.store is not None:
            data = self.tile_bytes_of(tile)
            if data is None:
                return None
        elif not path.exists():
            return None
        try:
            with ExitStack() as stack:
                if data is not None:  # a remote tile: one GET, read from memory
                    src = stack.enter_context(stack.enter_context(fiona.io.MemoryFile(data)).open())
                else:
                    src = stack.enter_context(fiona.open(path))
                geoms, ids, props = read_records(src)
        except Exception as exc:
            raise OutputError(f"tile {tile}: cannot read {path}: {exc}") from exc
        return [{"id": i, "geometry": g, "properties": p} for g, i, p in zip(geoms, ids, props)]

    def __repr__(self) -> str:
        return f"VectorTileDirectoryOutput(path={str(self.path)!r}, format={self.format!r})"


def _cast(value: Any, kind: str, name: str) -> Any:
    """A property value as the schema's Python type: fiona writes null for a mismatch
    (an int into a float field, a number into a str field) without a word."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    base = kind.split(":", 1)[0]
    try:
        if base == "float":
            return float(value)
        if base in ("int", "int32", "int64"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("not a whole number")
            return int(value)
        if base == "str":
            return str(value)
        if base == "bool":
            return bool(value)
    except (TypeError, ValueError) as exc:
        raise OutputError(f"property {name!r}: cannot write {value!r} as {kind} ({exc})") from exc
    return value  # date, time, datetime: fiona takes strings and datetime objects


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


# -- reading a vector tile directory back --------------------------------------------------------
class VectorTileDirectoryInput:
    """A vector tile directory as an input, in any grid.

    Stored tiles are clipped at their edges, so a feature spanning several stored tiles
    comes back as several pieces (one per stored tile); unions and rasterising are unaffected.
    """

    tile_sources = False  # one whole: its fingerprint covers every tile
    fingerprint = staticmethod(fingerprint_config)

    def sources(self, tile: Tile) -> list[tuple[Path, str | None]]:
        return []

    def __init__(self, config: InputConfig, grid: Grid) -> None:
        self.name: str = config.name
        self.path = Path(config.path)
        self.grid = grid
        meta_path = self.path / METADATA_FILE
        try:
            meta = read_metadata(self.path)
            self.dir_grid = Grid.from_dict(meta["grid"])
            self.format: str = meta["output"]["format"]
            self.suffix = tile_suffix(self.format) or ""
            self.schema = meta["output"].get("schema")
            self.layout = TileLayout.parse(meta["output"].get("tile_path_schema"))
        except FileNotFoundError as exc:
            raise InputError(f"input {self.name!r}: {self.path} is not a tile directory "
                             f"(no {METADATA_FILE})") from exc
        except Exception as exc:
            raise InputError(f"input {self.name!r}: invalid {meta_path}: {exc}") from exc
        self.crs = self.dir_grid.crs
        self._same_crs = crs_equal(self.crs, grid.crs)
        self.zooms = [z for z in int_names(self.path) if self.dir_grid.minzoom <= z <= self.dir_grid.maxzoom
                      and int_names(self.path / str(z))]
        self.dir_bounds = self._scan_bounds()
        self.bounds: Bounds | None = None
        if self.dir_bounds is not None:
            b = transform_bounds_safe(self.crs, grid.crs, self.dir_bounds)
            self.bounds = grid.bounds() if b is None else b.intersection(grid.bounds())
        self._label = f"input {self.name!r} ({self.path.name})"
        self._warned: set[Any] = set()

    def _scan_bounds(self) -> Bounds | None:
        """Extent of the stored tiles at the coarsest stored zoom."""
        if not self.zooms:
            return None
        zoom = min(self.zooms)
        boxes = []
        for first in int_names(self.path / str(zoom)):   # rows (cols with a col-first layout)
            found = int_names(self.path / str(zoom) / str(first), self.suffix)
            for second in (found[0], found[-1]) if found else ():
                index = self.layout.index(zoom, first, second)
                boxes.append(self.dir_grid.tile_bounds(zoom, index.row, index.col))
        return Bounds.union_all(boxes)

    def for_tile(self, tile: Tile) -> VectorTileInput:
        return VectorTileInput(self, tile)

    def is_empty(self, tile: Tile) -> bool:
        return self.bounds is None or not self.bounds.intersects(tile.buffered_bounds)

    def _pick_zoom(self, tile: Tile, footprint: Bounds) -> int:
        """The stored zoom whose tile size is closest to the footprint's (log scale)."""
        size = max(footprint.right - footprint.left, footprint.top - footprint.bottom)

        def distance(z: int) -> float:
            b = self.dir_grid.tile_bounds(z, 0, 0)
            return abs(np.log(max(b.right - b.left, b.top - b.bottom) / size))

        return min(self.zooms, key=lambda z: (distance(z), -z))

    def features(self, tile: Tile) -> list[Feature]:
        import fiona

        bounds = tile.buffered_bounds
        footprint = transform_bounds_safe(tile.crs, self.crs, bounds)
        wanted = footprint.intersection(self.dir_bounds) if footprint and self.dir_bounds else None
        if wanted is None:
            return []
        zoom = self._pick_zoom(tile, footprint)  # type: ignore[arg-type]  # not None: `wanted` is
        geoms, ids, props = [], [], []
        for stored in self.dir_grid.tiles_in_bounds(wanted, zoom):
            path = self.path / self.layout.rel(zoom, stored.row, stored.col, self.suffix)
            if not path.exists():
                continue
            try:
                with fiona.open(path) as src:
                    g, i, p = read_records(src, (wanted.left, wanted.bottom, wanted.right, wanted.top))
            except Exception as exc:
                raise InputError(f"{self._label}: cannot read {path}: {exc}") from exc
            geoms += g
            ids += [f"{zoom}/{stored.row}/{stored.col}:{x}" for x in i]
            props += p
        src_crs = None if self._same_crs else self.crs
        arr, dims, keep = prepare_geometries(geoms, ids, src_crs, self.grid.crs, self._label, self._warned)
        hit = shapely.intersects(arr, shapely.box(*bounds)) if len(arr) else np.zeros(0, bool)
        clipped = clip_to_box(arr[hit], dims[hit], bounds)
        return [{"id": ids[i], "geometry": g, "properties": props[i]}
                for i, g in zip(keep[hit], clipped) if g is not None]

    def close(self) -> None:
        """Nothing stays open: tile files are opened per read."""

    def __repr__(self) -> str:
        return f"VectorTileDirectoryInput(name={self.name!r}, path={str(self.path)!r})"
