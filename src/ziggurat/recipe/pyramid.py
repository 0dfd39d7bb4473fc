"""The recipe's `pyramid:`, `zoom_levels` and `bounds`: a grid by name, a TileMatrixSet file,
mapchete's grid mapping or a raster's own pixel grid (`native_grid`), and the run's bounds in it."""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

from ziggurat.core.errors import GridError, RecipeError
from ziggurat.core.grid import METATILING_VALUES, Bounds, Grid
from ziggurat.recipe.native_grid import NativeGridSection
from ziggurat.recipe.yamlload import found, is_int, is_number

PYRAMID_KEYS = ("grid", "metatiling", "pixelbuffer", "tile_size")
_ZOOM_FORMS = "a zoom level (5), 'min,max' ('3,8'), a list [3, 8] or a mapping {min: 3, max: 8}"


def parse_zoom_levels(value: Any) -> tuple[int, int]:
    """Every zoom form mapchete accepts -> (min, max); shared by recipes and the CLI."""
    def bad() -> RecipeError:
        return RecipeError(f"expected {_ZOOM_FORMS} with zoom levels >= 0; found {found(value)}")

    items: list[Any] = [value]
    if isinstance(value, str):
        items = [int(p) if p.strip().isdecimal() else None for p in value.split(",")]
    elif isinstance(value, Mapping):
        items = [value.get("min"), value.get("max")] if set(value) == {"min", "max"} else []
    elif isinstance(value, (list, tuple)):
        items = list(value)
    if not 1 <= len(items) <= 2 or not all(is_int(v) and v >= 0 for v in items):
        raise bad()
    return int(min(items)), int(max(items))


class PyramidSection(NativeGridSection):
    """Validation of `pyramid:`, `zoom_levels` and `bounds`; mixed into the recipe builder."""

    def grid(self, data: Mapping[str, Any]) -> Grid:
        pyramid = self.mapping(data, ("pyramid",), "a mapping with at least 'grid'", required=True) or {}
        self.check_keys(pyramid, ("pyramid",), PYRAMID_KEYS)
        key = ("pyramid", "grid")
        metatiling = self.integer(pyramid, ("pyramid", "metatiling"), 1, choices=METATILING_VALUES)
        pixelbuffer = self.integer(pyramid, ("pyramid", "pixelbuffer"), 0, minimum=0)
        tile_size = self.integer(pyramid, ("pyramid", "tile_size"), None, minimum=1)
        if isinstance(pyramid.get("grid"), Mapping) and "like" in pyramid["grid"]:  # a raster's own pixel grid
            return Grid(self.native_grid(pyramid["grid"], data, tile_size), f"like:{pyramid['grid'].get('like')}",
                        metatiling, pixelbuffer, tile_size)
        if isinstance(pyramid.get("grid"), Mapping):  # mapchete's {shape, bounds, proj|epsg|srs}
            from ziggurat.core.mapchete_grid import grid_from_mapchete

            try:
                return grid_from_mapchete({"grid": pyramid["grid"], "metatiling": metatiling,
                                           "pixelbuffer": pixelbuffer, "tile_size": tile_size or 256})
            except GridError as exc:
                raise self.loc.error(key, str(exc)) from exc
        name = self.string(pyramid, key, "a grid name (geodetic, mercator, a morecantile id), the path "
                                         "of a TileMatrixSet JSON file, {like: <input or raster>} or "
                                         "mapchete's {shape, bounds, epsg|proj|srs}")
        try:
            if name.lower().endswith(".json") or "/" in name or os.sep in name:
                return Grid(self.custom_tms(name), name, metatiling, pixelbuffer, tile_size)
            return Grid.from_name(name, metatiling=metatiling, pixelbuffer=pixelbuffer, tile_size=tile_size)
        except GridError as exc:
            raise self.loc.error(key, str(exc)) from exc

    def custom_tms(self, name: str) -> Any:
        import morecantile

        resolved = self.resolve(name)
        try:
            text = resolved.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise self.loc.error(("pyramid", "grid"), f"expected a TileMatrixSet JSON file, {name!r} is not text "
                                                      f"({resolved})") from exc
        except OSError as exc:
            raise self.loc.error(("pyramid", "grid"), f"cannot read TileMatrixSet file {name!r} "
                                                      f"({resolved}): {exc.strerror or exc}") from exc
        try:
            return morecantile.TileMatrixSet.model_validate_json(text)
        except Exception as exc:  # pydantic ValidationError and friends
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise self.loc.error(("pyramid", "grid"), f"expected a TileMatrixSet JSON file, {name!r} "
                                                      f"is not one: {first}") from exc

    def zoom_levels(self, data: Mapping[str, Any], grid: Grid) -> tuple[int, int]:
        value = self.required(data, ("zoom_levels",), _ZOOM_FORMS)
        try:
            lo, hi = parse_zoom_levels(value)
        except RecipeError as exc:
            raise self.loc.error(("zoom_levels",), str(exc)) from exc
        if lo < grid.minzoom or hi > grid.maxzoom:
            raise self.loc.error(("zoom_levels",), f"expected zoom levels within grid {grid.name!r} "
                                                   f"({grid.minzoom}..{grid.maxzoom}), found {lo}..{hi}")
        return lo, hi

    def bounds(self, data: Mapping[str, Any], grid: Grid) -> tuple[Bounds | None, str | None]:
        from rasterio.crs import CRS
        from rasterio.errors import CRSError
        from rasterio.warp import transform_bounds

        crs_name = data.get("bounds_crs")
        crs = None
        if crs_name is not None:
            if not isinstance(crs_name, str):
                raise self.fail(("bounds_crs",), "a CRS string like 'EPSG:3857'", crs_name)
            try:
                crs = CRS.from_user_input(crs_name)
            except CRSError as exc:
                raise self.loc.error(("bounds_crs",), f"expected a valid CRS, found {crs_name!r} ({exc})") from exc
        value = data.get("bounds")
        if value is None:
            return None, crs_name
        expected = "[west, south, east, north] (4 numbers)"
        try:  # a "W,S,E,N" string too, e.g. from ${BOUNDS}
            nums = [float(v) for v in value.split(",")] if isinstance(value, str) else list(value)
        except (TypeError, ValueError) as exc:
            raise self.fail(("bounds",), expected, value) from exc
        if len(nums) != 4 or not all(is_number(v) and math.isfinite(v) for v in nums):
            raise self.fail(("bounds",), expected, value)
        west, south, east, north = (float(v) for v in nums)
        if not (west < east and south < north):
            raise self.fail(("bounds",), f"{expected} with west < east and south < north", value)
        if crs is not None and crs != grid.crs:
            try:
                west, south, east, north = transform_bounds(crs, grid.crs, west, south, east, north,
                                                            densify_pts=21)
            except Exception:  # rasterio/PROJ errors for impossible transformations
                west = math.nan
            if not all(map(math.isfinite, (west, south, east, north))):
                raise self.loc.error(("bounds",), f"cannot transform bounds from {crs_name} to the grid "
                                                  "CRS (outside the area of use of either CRS?)")
        gb = grid.bounds()
        if west >= gb.right or east <= gb.left or south >= gb.top or north <= gb.bottom:
            raise self.loc.error(("bounds",), f"expected bounds overlapping grid {grid.name!r} {tuple(gb)}, "
                                              f"found {(west, south, east, north)} (grid CRS)")
        return Bounds(west, south, east, north), crs_name


__all__ = ["PYRAMID_KEYS", "PyramidSection", "parse_zoom_levels"]
