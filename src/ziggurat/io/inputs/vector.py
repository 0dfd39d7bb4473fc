"""Vector file inputs (anything fiona opens), read per tile in the grid CRS.

Features come back as plain mappings ``{"id", "geometry", "properties"}`` whose geometry is a
**shapely geometry** in the grid CRS, clipped to the buffered tile, valid, and of the source
feature's dimension (a polygon clipped along an edge stays a polygon, never a stray line).

Two spatial filters keep reads proportional to the tile, not the layer:

- ``index: memory`` (default up to 50 000 features): the layer is read once per worker,
  reprojected, repaired and put in an STRtree;
- ``index: file``: every read asks the file for the tile's footprint (fiona bbox filter, which
  uses the file's own spatial index: GeoPackage, FlatGeobuf, Shapefile with .qix).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence

import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from shapely.geometry.base import BaseGeometry

from ziggurat.core.errors import InputError
from ziggurat.core.geometry import dimension, keep_dimension, repair, reproject, to_pyproj
from ziggurat.core.grid import Bounds, Grid, Tile
from ziggurat.core.location import Location, gdal_path, is_url
from ziggurat.io.checksum import fingerprint_config
from ziggurat.io.common import transform_bounds_safe
from ziggurat.io.storage.options import apply_gdal_options
from ziggurat.recipe import InputConfig

logger = logging.getLogger(__name__)
#: rasterio.features builds an in-memory dataset inside a (not thread-safe) catch_warnings
#: block; under the threads executor its NotGeoreferencedWarning leaks. It is spurious.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"rasterio\.features")

#: Layers up to this many features are held in memory with an STRtree (index: auto).
MEMORY_INDEX_MAX_FEATURES = 50_000
INDEX_CHOICES = ("auto", "memory", "file")

Feature = dict  # {"id": str | int | None, "geometry": BaseGeometry, "properties": dict}


class FeatureSource(Protocol):
    """What a tile input needs from its source (VectorInput, VectorTileDirectoryInput)."""

    name: str
    bounds: Bounds | None

    def features(self, tile: Tile) -> list[Feature]: ...

    def is_empty(self, tile: Tile) -> bool: ...


# -- shared helpers ------------------------------------------------------------------------------
def clip_to_box(geoms: np.ndarray, dims: np.ndarray, bounds: Sequence[float]) -> np.ndarray:
    """Each geometry clipped to `bounds`, kept at its own dimension (None where nothing is left)."""
    out = np.empty(len(geoms), dtype=object)
    if not len(geoms):
        return out
    box = shapely.box(*bounds)
    inside = shapely.contains(box, geoms)
    out[inside] = geoms[inside]
    for i in np.nonzero(~inside)[0]:
        out[i] = keep_dimension(shapely.intersection(geoms[i], box), int(dims[i]))
    return out


def prepare_geometries(geoms: Sequence[BaseGeometry | None], ids: Sequence[Any], src_crs: Any,
                       grid_crs: Any, label: str, warned: set[Any] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Repair, reproject and re-check: (geometries, dimensions, kept positions).

    Invalid geometries are repaired with make_valid; what cannot be repaired (or projected)
    is dropped with a warning naming the feature. `warned` remembers features already
    reported, for sources read again on every tile.
    """
    fixed: list[BaseGeometry] = []
    keep: list[int] = []
    for i, (geom, fid) in enumerate(zip(geoms, ids)):
        if geom is None or geom.is_empty:
            continue
        good, why = repair(geom)
        if why is not None and (warned is None or fid not in warned):
            if warned is not None:
                warned.add(fid)
            if good is None:
                logger.warning("%s: feature %s has an invalid geometry (%s) that make_valid cannot "
                               "repair; dropped", label, fid, why)
            else:
                logger.info("%s: feature %s has an invalid geometry (%s); repaired with make_valid",
                            label, fid, why)
        if good is not None:
            fixed.append(good)
            keep.append(i)
    arr = np.empty(len(fixed), dtype=object)
    arr[:] = fixed
    dims = np.array([dimension(g) for g in arr], dtype=np.int8)
    if src_crs is not None:
        arr = reproject(arr, src_crs, grid_crs)
        invalid = np.nonzero(~shapely.is_valid(arr))[0]  # projection can fold rings
        for k in invalid:
            arr[k] = keep_dimension(shapely.make_valid(arr[k]), int(dims[k]))
    ok = np.array([g is not None and not g.is_empty for g in arr], dtype=bool)
    for k in np.nonzero(~ok)[0]:
        fid = ids[keep[k]]
        if warned is None or fid not in warned:
            if warned is not None:
                warned.add(fid)
            logger.warning("%s: feature %s lies outside what the grid CRS can represent; dropped",
                           label, fid)
    return arr[ok], dims[ok], np.asarray(keep, dtype=np.int64)[ok]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def read_records(src: Any, bbox: tuple[float, float, float, float] | None = None
                 ) -> tuple[list[BaseGeometry | None], list[Any], list[dict]]:
    """(shapely geometries, feature ids, property dicts) of an open fiona collection."""
    geoms: list[BaseGeometry | None] = []
    ids: list[Any] = []
    props: list[dict] = []
    for rec in (src.filter(bbox=bbox) if bbox is not None else src):
        geoms.append(shapely.geometry.shape(rec.geometry) if rec.geometry is not None else None)
        ids.append(rec.id)
        props.append({k: _plain(v) for k, v in dict(rec.properties or {}).items()})
    return geoms, ids, props


# -- file input -----------------------------------------------------------------------------------
class VectorInput:
    """A fiona-readable layer as a recipe input; opened once per worker."""

    tile_sources = False  # one whole: its fingerprint covers every tile
    fingerprint = staticmethod(fingerprint_config)

    def sources(self, tile: Tile) -> list[tuple[Path, str | None]]:
        return []

    def __init__(self, config: InputConfig, grid: Grid) -> None:
        import fiona

        self.name: str = config.name
        self.path = gdal_path(config.path)  # URLs as GDAL paths: never through pathlib
        if is_url(str(config.path)):
            apply_gdal_options(Location.parse(str(config.path)), config.storage_options)
        self.grid = grid
        self.options: dict[str, Any] = dict(config.options or {})
        self.layer: str | int = self.options.get("layer", 0)
        index = str(self.options.get("index", "auto")).lower()
        if index not in INDEX_CHOICES:
            raise InputError(f"input {self.name!r}: index must be one of {', '.join(INDEX_CHOICES)}, "
                             f"got {index!r}")
        try:
            with fiona.open(self.path, layer=self.layer) as src:
                wkt = src.crs_wkt or None
                count = len(src)
                src_bounds = src.bounds if count else None
                self.schema: dict[str, Any] = dict(src.schema)
        except Exception as exc:  # fiona DriverError, ValueError for a missing layer, ...
            raise InputError(f"input {self.name!r}: cannot open {self.path} as a vector file: {exc}") from exc
        if wkt is None:
            given = self.options.get("crs")
            if given is None:
                raise InputError(f"input {self.name!r}: {self.path} has no CRS; add `crs: EPSG:...` "
                                 "to the recipe input")
            wkt = to_pyproj(given).to_wkt()
        self.src_crs = to_pyproj(wkt)
        self._src_rio_crs = CRS.from_wkt(wkt)
        self.count = count
        self.index = index if index != "auto" else (
            "memory" if count <= MEMORY_INDEX_MAX_FEATURES else "file")
        self.bounds: Bounds | None = None
        if src_bounds is not None and all(np.isfinite(src_bounds)):
            b = transform_bounds_safe(CRS.from_wkt(wkt), grid.crs, Bounds(*src_bounds))
            self.bounds = grid.bounds() if b is None else b.intersection(grid.bounds())
        self._label = f"input {self.name!r} ({os.path.basename(self.path)})"
        self._lock = threading.Lock()
        self._loaded: tuple[np.ndarray, np.ndarray, list[Any], list[dict], shapely.STRtree] | None = None
        self._local = threading.local()
        self._handles: list[Any] = []
        self._warned: set[Any] = set()

    # -- loading -------------------------------------------------------------------------------
    def _records(self, bbox: tuple[float, float, float, float] | None = None
                 ) -> tuple[list[BaseGeometry | None], list[Any], list[dict]]:
        try:
            return read_records(self._collection(), bbox)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{self._label}: cannot read {self.path}: {exc}") from exc

    def _collection(self) -> Any:
        """The thread's open fiona collection (fiona handles must not cross threads)."""
        import fiona

        src = getattr(self._local, "src", None)
        if src is None or src.closed:
            try:
                src = fiona.open(self.path, layer=self.layer)
            except Exception as exc:
                raise InputError(f"{self._label}: cannot open {self.path}: {exc}") from exc
            self._local.src = src
            with self._lock:
                self._handles.append(src)
        return src

    def _load(self) -> tuple[np.ndarray, np.ndarray, list[Any], list[dict], shapely.STRtree]:
        with self._lock:
            if self._loaded is None:
                geoms, ids, props = self._records_locked()
                arr, dims, keep = prepare_geometries(geoms, ids, self.src_crs, self.grid.crs, self._label)
                self._loaded = (arr, dims, [ids[i] for i in keep], [props[i] for i in keep],
                                shapely.STRtree(arr))
                logger.debug("%s: %d features in memory", self._label, len(arr))
            return self._loaded

    def _records_locked(self) -> tuple[list[BaseGeometry | None], list[Any], list[dict]]:
        """The whole layer, through a handle of its own that is closed again at once."""
        import fiona

        try:
            with fiona.open(self.path, layer=self.layer) as src:
                return read_records(src)
        except Exception as exc:
            raise InputError(f"{self._label}: cannot read {self.path}: {exc}") from exc

    # -- per tile ------------------------------------------------------------------------------
    def for_tile(self, tile: Tile) -> "VectorTileInput":
        return VectorTileInput(self, tile)

    def is_empty(self, tile: Tile) -> bool:
        """Cheap test: the layer's extent misses the buffered tile."""
        return self.bounds is None or not self.bounds.intersects(tile.buffered_bounds)

    def features(self, tile: Tile) -> list[Feature]:
        """Features meeting the buffered tile, clipped to it, in the grid CRS."""
        if self.is_empty(tile):
            return []
        bounds = tile.buffered_bounds
        if self.index == "memory":
            geoms, dims, ids, props, tree = self._load()
            idx = np.sort(tree.query(shapely.box(*bounds), predicate="intersects"))
            clipped = clip_to_box(geoms[idx], dims[idx], bounds)
            return [{"id": ids[i], "geometry": g, "properties": dict(props[i])}
                    for i, g in zip(idx, clipped) if g is not None]
        footprint = transform_bounds_safe(self.grid.crs, self._src_rio_crs, bounds)
        if footprint is None:
            return []
        records, ids, props = self._records(footprint)
        arr, dims, keep = prepare_geometries(records, ids, self.src_crs, self.grid.crs, self._label,
                                             self._warned)
        hit = shapely.intersects(arr, shapely.box(*bounds)) if len(arr) else np.zeros(0, bool)
        clipped = clip_to_box(arr[hit], dims[hit], bounds)
        return [{"id": ids[i], "geometry": g, "properties": props[i]}
                for i, g in zip(keep[hit], clipped) if g is not None]

    def close(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
        for src in handles:
            src.close()
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        """Picklable without open handles, locks or the loaded layer (rebuilt on first read)."""
        state = self.__dict__.copy()
        for key in ("_lock", "_local", "_handles", "_loaded"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock, self._local, self._handles, self._loaded = threading.Lock(), threading.local(), [], None

    def __repr__(self) -> str:
        return f"VectorInput(name={self.name!r}, path={str(self.path)!r})"


# -- what a process receives -----------------------------------------------------------------------
class VectorTileInput:
    """A vector input bound to one tile; features are read once and kept for this tile."""

    kind: Literal["raster", "vector"] = "vector"

    def __init__(self, source: FeatureSource, tile: Tile) -> None:
        self.source = source
        self.tile = tile
        self._features: list[Feature] | None = None

    def _get(self) -> list[Feature]:
        if self._features is None:
            self._features = [] if self.source.is_empty(self.tile) else self.source.features(self.tile)
        return self._features

    def read(self) -> list[Feature]:
        """Features meeting the buffered tile: shapely geometries in the grid CRS, clipped to it.

        Each call returns new dicts (properties included), so a process may change them.
        """
        return [{"id": f["id"], "geometry": f["geometry"], "properties": dict(f["properties"])}
                for f in self._get()]

    def is_empty(self) -> bool:
        """No feature meets the buffered tile."""
        return self.source.is_empty(self.tile) or not self._get()

    def read_union(self) -> BaseGeometry:
        """All features of the buffered tile as one geometry (an empty collection if none)."""
        geoms = [f["geometry"] for f in self._get()]
        return shapely.union_all(geoms) if geoms else shapely.GeometryCollection()

    def rasterize(self, value: float | str = 1, *, all_touched: bool = False, dtype: str | None = None,
                  fill: float = 0) -> np.ndarray:
        """Burn the features into the buffered tile's pixel grid (2D array).

        `value` is a number, or a property name whose value each feature burns (features
        with a null value are skipped). Where features overlap, the later one in the layer's
        order wins (FlatGeobuf files with a spatial index are in Hilbert-curve order). `dtype`
        defaults to uint8 for a constant 0..255, else float64.
        """
        from rasterio.features import rasterize

        if dtype is None:
            small = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value <= 255
            dtype = "uint8" if small else "float64"
        if isinstance(value, str):
            shapes = [(f["geometry"], f["properties"].get(value)) for f in self._get()]
            missing = [f["id"] for f in self._get() if value not in f["properties"]]
            if missing:
                raise KeyError(f"input {self.source.name!r}: feature {missing[0]} has no property "
                               f"{value!r}")
            shapes = [(g, v) for g, v in shapes if v is not None]
        else:
            shapes = [(f["geometry"], value) for f in self._get()]
        shape = self.tile.buffered_shape
        if not shapes:
            return np.full(shape, fill, dtype=dtype)
        return rasterize(shapes, out_shape=shape, transform=self.tile.buffered_affine, fill=fill,
                         all_touched=all_touched, dtype=dtype)

    def mask(self, *, all_touched: bool = False, invert: bool = False) -> np.ndarray:
        """Boolean (h, w) of the buffered tile, True **outside** the features (numpy masked-array
        convention: ``np.ma.masked_array(data, mask=inp.mask())`` keeps what they cover);
        `invert` gives True inside."""
        from rasterio.features import geometry_mask

        geoms = [f["geometry"] for f in self._get()]
        shape = self.tile.buffered_shape
        if not geoms:
            return np.zeros(shape, dtype=bool) if invert else np.ones(shape, dtype=bool)
        return geometry_mask(geoms, out_shape=shape, transform=self.tile.buffered_affine,
                             all_touched=all_touched, invert=invert)

    def __repr__(self) -> str:
        return f"VectorTileInput({self.source.name!r}, {self.tile})"

