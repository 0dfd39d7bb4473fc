"""Geometry helpers for areas and vector data: repair, dimensions, reprojection, schema types.

Reprojection is vectorised (one `shapely.transform` call over all geometries) and only the
few geometries that need it take the slow, careful paths:

- geographic sources going to a world-wide projected CRS (Web Mercator) are clipped to that
  CRS's area of use first, so the poles do not become infinite coordinates;
- anything with non-finite results is retried clipped to the target's area of use;
- geographic targets: rings that jump across the antimeridian are unwrapped (a jump is taken
  as a crossing when the source segment's midpoint lands on the short way round), then every
  geometry is split at +-180 and shifted back into [-180, 180].
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache
from typing import Any, Iterable, Sequence

import numpy as np
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

_DIMENSION = {"Point": 0, "MultiPoint": 0, "LineString": 1, "LinearRing": 1, "MultiLineString": 1,
              "Polygon": 2, "MultiPolygon": 2}
_MULTI = {0: shapely.multipoints, 1: shapely.multilinestrings, 2: shapely.multipolygons}
_local = threading.local()


# -- CRS ---------------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def _crs_from_text(text: str) -> pyproj.CRS:
    return pyproj.CRS.from_user_input(text)


def to_pyproj(crs: Any) -> pyproj.CRS:
    """A pyproj CRS from a pyproj/rasterio/fiona CRS, "EPSG:xxxx", WKT or PROJ string."""
    if isinstance(crs, pyproj.CRS):
        return crs
    if isinstance(crs, str):
        return _crs_from_text(crs)
    to_wkt = getattr(crs, "to_wkt", None)
    if to_wkt is not None:
        return _crs_from_text(to_wkt())
    return pyproj.CRS.from_user_input(crs)


@lru_cache(maxsize=256)
def _equal(a: str, b: str) -> bool:
    return a == b or _crs_from_text(a).equals(_crs_from_text(b), ignore_axis_order=True)


def crs_equal(a: Any, b: Any) -> bool:
    """Same CRS up to axis order (EPSG:4326 and OGC:CRS84 are both lon/lat here)."""
    return _equal(to_pyproj(a).srs, to_pyproj(b).srs)


def _transformer(src: pyproj.CRS, dst: pyproj.CRS) -> pyproj.Transformer:
    """One Transformer per thread and CRS pair: they must not be shared between threads."""
    cache = getattr(_local, "transformers", None)
    if cache is None:
        cache = _local.transformers = {}
    key = (src.srs, dst.srs)
    t = cache.get(key)
    if t is None:
        t = cache[key] = pyproj.Transformer.from_crs(src, dst, always_xy=True)
    return t


@lru_cache(maxsize=64)
def _area_of_use_in(src_srs: str, dst_srs: str) -> tuple[float, float, float, float] | None:
    """The target CRS's area of use in source coordinates (None if unknown or not a box)."""
    aou = _crs_from_text(dst_srs).area_of_use
    if aou is None or aou.west > aou.east:
        return None
    src = _crs_from_text(src_srs)
    if src.is_geographic:
        return aou.west, aou.south, aou.east, aou.north
    try:
        t = pyproj.Transformer.from_crs("EPSG:4326", src, always_xy=True)
        out = t.transform_bounds(aou.west, aou.south, aou.east, aou.north, densify_pts=21)
    except pyproj.exceptions.ProjError:
        return None
    return out if all(math.isfinite(v) for v in out) else None


# -- dimensions and repair ----------------------------------------------------------------------
def dimension(geom: BaseGeometry) -> int:
    """0 points, 1 lines, 2 polygons; a collection counts as its highest part."""
    dim = _DIMENSION.get(geom.geom_type)
    if dim is not None:
        return dim
    return max((dimension(g) for g in shapely.get_parts(geom)), default=-1)


def flatten(geom: BaseGeometry) -> list[BaseGeometry]:
    """Single-part, non-empty geometries (multi-geometries and collections taken apart)."""
    if geom.is_empty:
        return []
    if geom.geom_type in ("Point", "LineString", "LinearRing", "Polygon"):
        return [geom]
    return [p for g in shapely.get_parts(geom) for p in flatten(g)]


def combine(parts: Sequence[BaseGeometry], dim: int) -> BaseGeometry | None:
    """One geometry from single parts of one dimension: the part itself, or a valid multi."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    multi = _MULTI[dim](list(parts))
    if dim == 2 and not multi.is_valid:  # touching or overlapping parts
        return shapely.union_all(list(parts))
    return multi


def keep_dimension(geom: BaseGeometry | None, dim: int) -> BaseGeometry | None:
    """The parts of `geom` with dimension `dim` (e.g. polygons of a clipped collection)."""
    if geom is None or geom.is_empty:
        return None
    if _DIMENSION.get(geom.geom_type) == dim:
        return geom
    return combine([p for p in flatten(geom) if _DIMENSION.get(p.geom_type) == dim], dim)


def repair(geom: BaseGeometry | None) -> tuple[BaseGeometry | None, str | None]:
    """(geometry, why it was invalid); geometry None when nothing of its dimension is left.

    Polygons use make_valid's "structure" method, which keeps areas as areas and drops
    collapsed parts instead of returning stray lines and points.
    """
    if geom is None or geom.is_empty:
        return None, "empty geometry"
    if geom.is_valid:
        return geom, None
    reason = shapely.is_valid_reason(geom)
    dim = dimension(geom)
    try:
        fixed = (shapely.make_valid(geom, method="structure", keep_collapsed=False) if dim == 2
                 else shapely.make_valid(geom))
    except shapely.errors.GEOSException as exc:  # pragma: no cover - GEOS refuses rarely
        return None, f"{reason}; repair failed: {exc}"
    return keep_dimension(fixed, dim), reason


# -- antimeridian -------------------------------------------------------------------------------
def _shift_x(geom: BaseGeometry, dx: float) -> BaseGeometry:
    return shapely.transform(geom, lambda xy: xy + np.array([dx, 0.0]))


def wrap_longitudes(geom: BaseGeometry) -> BaseGeometry | None:
    """Split a lon/lat geometry at the antimeridian and shift the pieces into [-180, 180]."""
    if geom.is_empty:
        return geom
    minx, miny, maxx, maxy = geom.bounds
    if minx >= -180.0 and maxx <= 180.0:
        return geom
    dim = dimension(geom)
    if dim == 0:
        return shapely.transform(geom, lambda xy: np.column_stack(
            [np.where(np.abs(xy[:, 0]) <= 180.0, xy[:, 0], (xy[:, 0] + 180.0) % 360.0 - 180.0),
             xy[:, 1]]))
    parts: list[BaseGeometry] = []
    for k in range(math.floor((minx + 180.0) / 360.0), math.floor((maxx + 180.0) / 360.0) + 1):
        frame = shapely.box(-180.0 + 360.0 * k, miny - 1.0, 180.0 + 360.0 * k, maxy + 1.0)
        piece = keep_dimension(shapely.intersection(geom, frame), dim)
        if piece is not None:
            parts += flatten(_shift_x(piece, -360.0 * k) if k else piece)
    return combine(parts, dim)


def _crosses(x0: float, x1: float, mid: float) -> bool:
    """A segment whose ends are > 180 degrees apart: does it cross the antimeridian?"""
    x1u = x0 + ((x1 - x0 + 180.0) % 360.0 - 180.0)
    midu = x0 + ((mid - x0 + 180.0) % 360.0 - 180.0)
    lo, hi = min(x0, x1u), max(x0, x1u)
    return lo - 1e-9 <= midu <= hi + 1e-9


def _unwrap(src_geom: BaseGeometry, dst_geom: BaseGeometry, t: pyproj.Transformer) -> BaseGeometry:
    """Make longitudes continuous along every ring/line of a projected-to-lon/lat result."""
    if dimension(dst_geom) < 1 or dst_geom.geom_type == "GeometryCollection":
        return dst_geom
    kind, coords, offsets = shapely.to_ragged_array([dst_geom])
    _, src_coords, _ = shapely.to_ragged_array([src_geom])
    x = coords[:, 0].copy()
    seqs = offsets[0]
    for a, b in zip(seqs[:-1], seqs[1:]):
        jumps = np.nonzero(np.abs(np.diff(x[a:b])) > 180.0)[0]
        for j in jumps:
            i = a + j
            mx, my = (src_coords[i] + src_coords[i + 1]) / 2.0
            mid = t.transform(mx, my)[0]
            if math.isfinite(mid) and _crosses(x[i], x[i + 1], mid):
                x[i + 1:b] -= 360.0 * round((x[i + 1] - x[i]) / 360.0)
    if dimension(dst_geom) == 2:  # holes follow their shell into its 360-degree frame
        rings = offsets[1]
        for r0, r1 in zip(rings[:-1], rings[1:]):
            shell = x[seqs[r0]:seqs[r0 + 1]].mean()
            for r in range(r0 + 1, r1):
                ring = slice(seqs[r], seqs[r + 1])
                x[ring] += 360.0 * round((shell - x[ring].mean()) / 360.0)
    coords = coords.copy()
    coords[:, 0] = x
    return shapely.from_ragged_array(kind, coords, offsets)[0]


# -- reprojection -------------------------------------------------------------------------------
def _wrap_where_needed(geoms: np.ndarray) -> np.ndarray:
    b = shapely.bounds(geoms)
    idx = np.nonzero((b[:, 0] < -180.0) | (b[:, 2] > 180.0))[0]
    for i in idx:
        geoms[i] = wrap_longitudes(geoms[i])
    return geoms


def _apply(geoms: np.ndarray, t: pyproj.Transformer) -> np.ndarray:
    def func(xy: np.ndarray) -> np.ndarray:
        x, y = t.transform(xy[:, 0], xy[:, 1], errcheck=False)
        return np.column_stack([x, y])

    return shapely.transform(geoms, func)


def reproject(geoms: Iterable[BaseGeometry | None], src_crs: Any, dst_crs: Any) -> np.ndarray:
    """Geometries from one CRS to another (an object array; None stays None).

    A geometry that cannot be represented in the target CRS at all comes back empty.
    """
    items = list(geoms)
    arr = np.empty(len(items), dtype=object)  # filled, not np.array(items): keeps it 1D
    arr[:] = items
    present = np.array([g is not None and not g.is_empty for g in arr], dtype=bool)
    if not present.any():
        return arr
    src, dst = to_pyproj(src_crs), to_pyproj(dst_crs)
    work = arr[present]
    if crs_equal(src, dst):
        arr[present] = _wrap_where_needed(work) if dst.is_geographic else work
        return arr
    if src.is_geographic:
        work = _wrap_where_needed(work)
    region = _area_of_use_in(src.srs, dst.srs)
    if region is not None and src.is_geographic and not dst.is_geographic and \
            region[0] <= -180.0 and region[2] >= 180.0:
        b = shapely.bounds(work)
        outside = np.nonzero((b[:, 1] < region[1]) | (b[:, 3] > region[3]))[0]
        for i in outside:
            clipped = shapely.intersection(work[i], shapely.box(*region))
            work[i] = keep_dimension(clipped, dimension(work[i])) or shapely.GeometryCollection()
    t = _transformer(src, dst)
    out = _apply(work, t)
    b = shapely.bounds(out)
    bad = np.nonzero(~np.isfinite(b).all(axis=1) & ~shapely.is_empty(out))[0]
    for i in bad:  # retry inside the target's area of use, else give up on this geometry
        clipped = shapely.intersection(work[i], shapely.box(*region)) if region is not None else None
        again = _apply(np.array([clipped], dtype=object), t)[0] if clipped is not None else None
        ok = again is not None and all(math.isfinite(v) for v in again.bounds) and not again.is_empty
        out[i] = again if ok else shapely.GeometryCollection()
    if dst.is_geographic:
        b = shapely.bounds(out)
        cand = np.nonzero((b[:, 0] < -180.0) | (b[:, 2] > 180.0) | (b[:, 2] - b[:, 0] > 180.0))[0]
        for i in cand:
            geom = out[i] if src.is_geographic else _unwrap(work[i], out[i], t)
            out[i] = wrap_longitudes(geom)
    arr[present] = out
    return arr


def reproject_one(geom: BaseGeometry, src_crs: Any, dst_crs: Any) -> BaseGeometry:
    return reproject([geom], src_crs, dst_crs)[0]


# -- writing to a schema ---------------------------------------------------------------------------
_MULTI_TYPES = ("MultiPoint", "MultiLineString", "MultiPolygon")


def conform(geom: BaseGeometry, geometry_type: str) -> list[BaseGeometry]:
    """The geometries to write for a schema's geometry type (maybe none, maybe several)."""
    if geometry_type == "Unknown":
        return [] if geom.is_empty else [geom]
    dim = _DIMENSION[geometry_type]
    parts = [p for p in flatten(geom) if dimension(p) == dim]
    if not parts:
        return []
    if geometry_type in _MULTI_TYPES:
        multi = combine(parts, dim)
        if multi is not None and multi.geom_type != geometry_type:  # one part: promote
            multi = {0: shapely.multipoints, 1: shapely.multilinestrings,
                     2: shapely.multipolygons}[dim]([multi])
        return [multi] if multi is not None else []
    return parts


def tidy_clipped_lines(part: BaseGeometry, b: Sequence[float]) -> BaseGeometry | None:
    """Lines already clipped to a tile, made to meet their neighbours' pieces end to end.

    GEOS splits a line where it touches the clip edge and comes back; those pieces are
    merged again. A stretch running exactly along the right or bottom edge belongs to the
    neighbour (half-open tiles, as for points), so it is not written twice.
    """
    left, bottom, right, top = b
    minx, miny, maxx, maxy = part.bounds
    if maxx >= right or miny <= bottom:
        edges = shapely.MultiLineString([[(right, top), (right, bottom)], [(left, bottom), (right, bottom)]])
        if part.relate_pattern(edges, "1********"):
            part = keep_dimension(shapely.difference(part, edges), 1)
            if part is None:
                return None
    return shapely.line_merge(part) if part.geom_type == "MultiLineString" else part
