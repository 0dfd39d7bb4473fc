"""Process areas: parse `area` (WKT, GeoJSON, vector file) into a grid-CRS polygon, find the
tiles it touches, mask raster results and cut vector results to it.

Tiles are found by quadtree subdivision in tile-index space: blocks inside the area are
counted (or listed) whole, blocks outside are dropped, and only blocks on the boundary are
split, so counting costs about the boundary length in tiles, not the bounding box area.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import shapely
from rasterio.errors import NotGeoreferencedWarning
from shapely.geometry.base import BaseGeometry

from ziggurat.core.errors import RecipeError
from ziggurat.core.geometry import combine, dimension, flatten, keep_dimension, repair, reproject_one, to_pyproj
from ziggurat.core.grid import Grid, Tile
from ziggurat.recipe.yamlload import thaw

logger = logging.getLogger(__name__)
#: rasterio.features builds an in-memory dataset inside a (not thread-safe) catch_warnings
#: block; under the threads executor its NotGeoreferencedWarning leaks. It is spurious.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"rasterio\.features")

_WKT = re.compile(r"^\s*((MULTI)?(POLYGON|POINT|LINESTRING)|GEOMETRYCOLLECTION)\s*(Z|M|ZM)?\s*(\(|EMPTY)",
                  re.IGNORECASE)
#: Blocks with at most this many tiles are tested tile by tile (vectorised).
_LEAF = 64


# -- parsing ------------------------------------------------------------------------------------
def _from_mapping(value: Mapping[str, Any]) -> BaseGeometry:
    data = thaw(value)
    kind = data.get("type")
    if kind == "FeatureCollection":
        geoms = [shapely.geometry.shape(f["geometry"]) for f in data.get("features") or ()
                 if f.get("geometry")]
        return shapely.GeometryCollection(geoms)
    if kind == "Feature":
        return shapely.geometry.shape(data["geometry"])
    return shapely.geometry.shape(data)


def _from_file(path: Path, crs: str | None) -> tuple[BaseGeometry, Any]:
    import fiona

    try:
        with fiona.open(path) as src:
            file_crs = src.crs_wkt or None
            geoms = []
            for rec in src:
                if rec.geometry is None:
                    continue
                geom, why = repair(shapely.geometry.shape(rec.geometry))
                if why is not None:
                    logger.warning("area %s: feature %s has an invalid geometry (%s); %s", path, rec.id,
                                   why, "repaired" if geom is not None else "dropped")
                if geom is not None:
                    geoms.append(geom)
    except Exception as exc:  # fiona raises DriverError and friends
        raise RecipeError(f"cannot read the area file {path}: {exc}") from exc
    if crs is not None and file_crs is not None:
        from ziggurat.core.geometry import crs_equal

        if not crs_equal(crs, file_crs):
            raise RecipeError(f"area_crs {crs!r} contradicts the CRS of {path.name} "
                              f"({to_pyproj(file_crs).name}); area_crs is for WKT/GeoJSON areas and "
                              "files without a CRS")
    return shapely.GeometryCollection(geoms), file_crs or crs


def parse_area(value: Any, *, crs: str | None, grid: Grid, base_dir: Path | str) -> BaseGeometry:
    """The area as a valid (Multi)Polygon in the grid CRS, clipped to the grid.

    `value`: WKT, GeoJSON (a mapping or its JSON text; a geometry, Feature or
    FeatureCollection) or the path of a vector file (relative to `base_dir`). `crs` is the CRS
    of WKT/GeoJSON (default: the grid CRS) and of files that have none. Raises RecipeError
    with a message that does not name its source; callers add file, line and key.
    """
    src_crs: Any = crs
    try:
        if isinstance(value, Mapping):
            geom = _from_mapping(value)
        elif isinstance(value, str) and value.strip().startswith("{"):
            geom = _from_mapping(json.loads(value))
        elif isinstance(value, str) and _WKT.match(value):
            geom = shapely.from_wkt(value)
        elif isinstance(value, (str, os.PathLike)):
            path = Path(base_dir) / os.path.expanduser(os.fspath(value))
            if not path.exists():
                raise RecipeError(f"expected WKT, GeoJSON or the path of a vector file, found "
                                  f"{str(value)[:80]!r} (no such file: {path})")
            geom, src_crs = _from_file(path, crs)
        else:
            raise RecipeError(f"expected WKT, GeoJSON or a vector file path, found {type(value).__name__}")
    except RecipeError:
        raise
    except Exception as exc:  # shapely GEOSException, KeyError, json errors ...
        raise RecipeError(f"expected WKT, GeoJSON or the path of a vector file, found "
                          f"{str(value)[:80]!r} ({type(exc).__name__}: {exc})") from exc
    polygons = []
    for part in flatten(geom):
        if part.geom_type != "Polygon":
            raise RecipeError(f"expected a polygon or multipolygon area, found a {part.geom_type}")
        fixed, why = repair(part)
        if why is not None:
            logger.warning("area: invalid polygon (%s); %s", why, "repaired" if fixed else "dropped")
        if fixed is not None:
            polygons += flatten(fixed)
    if not polygons:
        raise RecipeError("expected a non-empty polygon area, found an empty geometry")
    area = combine(polygons, 2)
    if src_crs is not None:
        try:
            area = reproject_one(area, to_pyproj(src_crs), grid.crs)
        except Exception as exc:  # pyproj CRSError for an unknown area_crs
            raise RecipeError(f"cannot use area CRS {src_crs!r}: {exc}") from exc
    area = shapely.intersection(area, shapely.box(*grid.bounds()))
    area = combine([p for p in flatten(area) if p.geom_type == "Polygon"], 2)
    if area is None or area.is_empty:
        raise RecipeError(f"the area does not overlap grid {grid.name!r} {tuple(grid.bounds())} "
                          f"(grid CRS; area CRS {src_crs or 'the grid CRS'})")
    return area


# -- tiles --------------------------------------------------------------------------------------
def _block_box(grid: Grid, zoom: int, r0: int, r1: int, c0: int, c1: int) -> BaseGeometry:
    a = grid.tile_bounds(zoom, r0, c0)
    b = grid.tile_bounds(zoom, r1 - 1, c1 - 1)
    return shapely.box(*a.union(b))


def _blocks(grid: Grid, geometry: BaseGeometry, zoom: int
            ) -> Iterator[tuple[int, int, int, int, np.ndarray | None]]:
    """(r0, r1, c0, c1, hits): a whole block (hits None) or a leaf with a per-tile hit mask.

    A tile counts when its interior meets the geometry's interior, as in
    `Grid.tiles_in_geometry`.
    """
    if geometry.is_empty:
        return
    geom = shapely.from_wkb(shapely.to_wkb(geometry))  # prepare a private copy (thread safety)
    shapely.prepare(geom)
    rows, cols = grid.tile_range(geom.bounds, zoom)
    if not len(rows) or not len(cols):
        return
    stack = [(rows.start, rows.stop, cols.start, cols.stop)]
    while stack:
        r0, r1, c0, c1 = stack.pop()
        n = (r1 - r0) * (c1 - c0)
        if n <= _LEAF:
            b = np.array([grid.tile_bounds(zoom, r, c) for r in range(r0, r1) for c in range(c0, c1)])
            boxes = shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
            hits = shapely.intersects(geom, boxes) & ~shapely.touches(geom, boxes)
            yield r0, r1, c0, c1, hits.reshape(r1 - r0, c1 - c0)
            continue
        box = _block_box(grid, zoom, r0, r1, c0, c1)
        if not geom.intersects(box) or geom.touches(box):
            continue
        if geom.contains(box):
            yield r0, r1, c0, c1, None
            continue
        if r1 - r0 >= c1 - c0:  # split the longer side; push the second half first (DFS order)
            mid = (r0 + r1) // 2
            stack += [(mid, r1, c0, c1), (r0, mid, c0, c1)]
        else:
            mid = (c0 + c1) // 2
            stack += [(r0, r1, mid, c1), (r0, r1, c0, mid)]


def count_tiles_in_geometry(grid: Grid, geometry: BaseGeometry, zoom: int) -> int:
    """Exact number of tiles `tiles_in_geometry` yields, without listing inside blocks."""
    total = 0
    for r0, r1, c0, c1, hits in _blocks(grid, geometry, zoom):
        total += (r1 - r0) * (c1 - c0) if hits is None else int(hits.sum())
    return total


def tiles_in_geometry(grid: Grid, geometry: BaseGeometry, zoom: int) -> Iterator[Tile]:
    """Tiles whose interior meets the geometry's interior, block by block (spatially close)."""
    for r0, r1, c0, c1, hits in _blocks(grid, geometry, zoom):
        for r in range(r0, r1):
            for c in range(c0, c1):
                if hits is None or hits[r - r0, c - c0]:
                    yield Tile(grid, zoom, r, c)


# -- masking ------------------------------------------------------------------------------------
class AreaMask:
    """Masks raster results outside the area; built once per worker."""

    def __init__(self, area: BaseGeometry) -> None:
        self.area = shapely.from_wkb(shapely.to_wkb(area))  # a private, prepared copy
        shapely.prepare(self.area)

    def outside(self, tile: Tile, buffered: bool = True) -> np.ndarray | None:
        """Boolean (h, w), True outside the area (pixel centres); None if all inside."""
        from rasterio.features import geometry_mask

        bounds = tile.buffered_bounds if buffered else tile.bounds
        shape = tile.buffered_shape if buffered else tile.shape
        box = shapely.box(*bounds)
        if self.area.contains(box):
            return None
        if not self.area.intersects(box):
            return np.ones(shape, dtype=bool)
        part = combine([p for p in flatten(shapely.intersection(self.area, box))
                        if p.geom_type == "Polygon"], 2)
        if part is None:
            return np.ones(shape, dtype=bool)
        return geometry_mask([part], out_shape=shape,
                             transform=tile.buffered_affine if buffered else tile.affine)

    def clip_features(self, tile: Tile, features: list[Any]) -> list[Any]:
        """Vector results cut to the area; features outside it are dropped."""
        box = shapely.box(*tile.buffered_bounds)
        if self.area.contains(box):
            return features
        part = combine([p for p in flatten(shapely.intersection(self.area, box))
                        if p.geom_type == "Polygon"], 2)
        if part is None:
            return []
        out = []
        for feat in features:
            geom = feat if isinstance(feat, BaseGeometry) else (
                feat.get("geometry") if isinstance(feat, Mapping) else None)
            if geom is None:
                if not isinstance(feat, Mapping):
                    out.append(feat)  # not a feature: the writer names the problem
                continue
            if not isinstance(geom, BaseGeometry):
                geom = shapely.geometry.shape(geom)
            geom, _ = repair(geom)
            clipped = None if geom is None else keep_dimension(shapely.intersection(geom, part),
                                                               dimension(geom))
            if clipped is not None:
                out.append(clipped if isinstance(feat, BaseGeometry) else {**feat, "geometry": clipped})
        return out

    def apply(self, tile: Tile, data: Any) -> Any:
        """`data` (2D/3D, buffered or not) with pixels outside the area masked."""
        arr = np.ma.asarray(data)
        if arr.ndim not in (2, 3) or arr.shape[-2:] not in (tile.buffered_shape, tile.shape):
            return data  # the writer reports shape problems
        outside = self.outside(tile, buffered=arr.shape[-2:] == tile.buffered_shape)
        if outside is None:
            return data
        mask = np.ma.getmaskarray(arr) | np.broadcast_to(outside, arr.shape)
        return np.ma.masked_array(np.ma.getdata(arr), mask=mask, fill_value=arr.fill_value)


# -- run-time areas ------------------------------------------------------------------------------
def run_area(recipe_area: BaseGeometry | None, value: Any, crs: str | None, grid: Grid
             ) -> BaseGeometry | None:
    """The area of one run: the recipe's `area`, narrowed by an area given at run time.

    A run-time area (CLI ``--area``: WKT, GeoJSON text or a path relative to the working
    directory) is intersected with the recipe's, like run-time bounds narrow recipe bounds.
    """
    if value is None:
        return recipe_area
    try:
        extra = parse_area(value, crs=crs, grid=grid, base_dir=Path.cwd())
    except RecipeError as exc:
        raise RecipeError(f"--area: {exc}") from exc
    if recipe_area is None:
        return extra
    both = combine([p for p in flatten(shapely.intersection(recipe_area, extra))
                    if p.geom_type == "Polygon"], 2)
    if both is None:
        raise RecipeError("--area does not overlap the recipe's area")
    return both


def clip_to_bounds(area: BaseGeometry, bounds: tuple[float, float, float, float]) -> BaseGeometry | None:
    """The polygonal part of `area` inside `bounds`, or None."""
    return combine([p for p in flatten(shapely.intersection(area, shapely.box(*bounds)))
                    if p.geom_type == "Polygon"], 2)
