"""`pyramid.grid: {like: dem}`: a TileMatrixSet on a raster's own pixel grid (a mosaic's: its
first file's pixels, covering every member).

The finest zoom has exactly the raster's CRS, pixel size and pixel alignment (its origin is a
pixel corner of the raster), and each coarser zoom doubles the pixel size, so converting or
merging onto it involves no resampling at the finest zoom. The matrix covers the raster's
extent (`bounds` in the mapping to cover more, e.g. the whole collection a file belongs to),
snapped outward to whole pixels and to whole tiles at zoom 0. EPSG:4326 rasters get OGC:CRS84
(the same CRS in lon/lat order, as WorldCRS84Quad), which GDAL reads from a STAC item's TMS.
"""

from __future__ import annotations

import glob
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from ziggurat.recipe.checker import Checker
from ziggurat.recipe.mosaic import is_mosaic
from ziggurat.recipe.yamlload import KeyPath, is_number

#: How close (relative) pixel sizes must be to count as square.
SQUARE_RTOL = 1e-9


def native_tms(path: str, *, tile_size: int = 256, bounds: Sequence[float] | None = None,
               name: str | None = None) -> Any:
    """A morecantile TileMatrixSet whose finest zoom is `path`'s pixel grid."""
    import morecantile
    import rasterio
    from pyproj import CRS as ProjCRS

    with rasterio.open(path) as src:
        if src.crs is None:
            raise ValueError(f"{path} has no CRS")
        t = src.transform
        if t.b or t.d or t.a <= 0 or t.e >= 0:
            raise ValueError(f"{path} is rotated or flipped; a tile grid needs north-up pixels")
        xres, yres = t.a, -t.e
        if not math.isclose(xres, yres, rel_tol=SQUARE_RTOL):
            raise ValueError(f"{path} has non-square pixels ({xres} x {yres}); a TileMatrixSet has one cell size")
        crs = ProjCRS.from_wkt(src.crs.to_wkt())
        if crs.to_epsg() == 4326:  # lon/lat order, as WorldCRS84Quad: GDAL reads the STAC item's TMS so
            crs = ProjCRS.from_user_input("OGC:CRS84")
        left, bottom, right, top = src.bounds if bounds is None else bounds
        ox, oy = t.c, t.f            # the raster's origin: every edge below is on its pixel grid
    res = xres
    left = ox + math.floor((left - ox) / res + 1e-9) * res
    top = oy - math.floor((oy - top) / res + 1e-9) * res
    width = max(1, math.ceil((right - left) / res - 1e-9))
    height = max(1, math.ceil((top - bottom) / res - 1e-9))
    maxzoom = max(0, math.ceil(math.log2(min(width, height) / tile_size))) if min(width, height) > tile_size else 0
    span = tile_size * 2 ** maxzoom                       # pixels of one zoom-0 tile
    sx, sy = math.ceil(width / span), math.ceil(height / span)
    extent = [left, top - sy * span * res, left + sx * span * res, top]
    tms = morecantile.TileMatrixSet.custom(extent, crs, tile_width=tile_size, tile_height=tile_size,
                                           matrix_scale=[sx, sy], minzoom=0, maxzoom=maxzoom,
                                           id=name or "NativeGrid", title=f"native grid of {path}")
    # cell sizes exactly the raster's pixel size times a power of two (custom() divides the extent,
    # which is off in the last bits): the finest zoom's transform is then the raster's own
    data = tms.model_dump(mode="json", exclude_none=True)
    for matrix in data["tileMatrices"]:
        factor = 2 ** (maxzoom - int(matrix["id"]))
        matrix["scaleDenominator"] *= res * factor / matrix["cellSize"]
        matrix["cellSize"] = res * factor
    tms = morecantile.TileMatrixSet.model_validate(data)
    finest = tms.matrix(maxzoom)
    if finest.cellSize != res:
        raise ValueError(f"the native grid of {path} came out at {finest.cellSize}, not {res}")
    return tms


class NativeGridSection(Checker):
    """`pyramid.grid: {like: ...}`; mixed into the recipe builder."""

    def resolve(self, path: str) -> Path:
        raise NotImplementedError

    def native_grid(self, spec: Mapping[str, Any], data: Mapping[str, Any], tile_size: int | None) -> Any:
        """`{like: <input name or raster path>, bounds: [...]}` -> a TileMatrixSet on its pixel grid."""
        key = ("pyramid", "grid")
        self.check_keys(spec, key, ("like", "bounds"))
        like = self.string(spec, key + ("like",), "an input name or a raster path")
        inputs = data.get("input")
        reference = inputs.get(like, like) if isinstance(inputs, Mapping) else like
        bounds = spec.get("bounds")
        if bounds is not None and not (isinstance(bounds, (list, tuple)) and len(bounds) == 4
                                       and all(is_number(v) for v in bounds)):
            raise self.fail(key + ("bounds",), "[west, south, east, north] in the raster's CRS", bounds)
        matches = self.like_files(reference, like, key)
        try:
            if bounds is None and len(matches) > 1:   # a mosaic: the grid covers every member
                bounds = footprint(matches)
            return native_tms(matches[0], tile_size=tile_size or 256, bounds=bounds)
        except Exception as exc:  # rasterio errors, a rotated or non-square raster
            raise self.loc.error(key + ("like",), f"cannot derive a grid from {matches[0]}: {exc}") from exc

    def like_files(self, reference: Any, like: str, key: KeyPath) -> list[str]:
        """The raster files `like` names: one file, or every member of a mosaic (its sources'
        globs and lists, in order; the first sets the pixel grid)."""
        if is_mosaic(reference):
            entries = reference.get("mosaic") if isinstance(reference, Mapping) else reference
            entries = [entries] if isinstance(entries, str) else list(entries or [])
            given = [e.get("path") if isinstance(e, Mapping) else e for e in entries]
        else:
            given = [reference.get("path") if isinstance(reference, Mapping) else reference]
        patterns = [p for p in given if isinstance(p, str)]
        if not patterns or len(patterns) != len(given):
            raise self.fail(key + ("like",), "an input name or a raster path", like)
        matches = [m for p in patterns for m in sorted(glob.glob(str(self.resolve(p)), recursive=True))]
        if not matches:
            raise self.loc.error(key + ("like",), f"no raster to take the grid from: {self.resolve(patterns[0])}")
        return matches


def footprint(paths: Sequence[str]) -> list[float]:
    """[west, south, east, north] of all the rasters together, in the first one's CRS."""
    import rasterio
    from rasterio.warp import transform_bounds

    box: list[float] | None = None
    crs = None
    for path in paths:
        with rasterio.open(path) as src:
            crs = src.crs if crs is None else crs
            b = list(src.bounds) if src.crs == crs else list(transform_bounds(src.crs, crs, *src.bounds))
        box = b if box is None else [min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3])]
    assert box is not None
    return box


__all__ = ["NativeGridSection", "native_tms"]
