"""Which process tiles a run covers, derived by index arithmetic and streamed lazily.

The area is the recipe's bounds (or, without bounds, the union of its inputs' footprints),
narrowed by bounds given at run time; a single tile or point overrides it. An `area`
polygon (recipe or run time) narrows it further to the tiles meeting the polygon itself.
Nothing here enumerates the whole grid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator, Sequence

from rasterio.crs import CRS
from rasterio.warp import transform, transform_bounds

from ziggurat.core.errors import GridError, RecipeError
from ziggurat.core.grid import Bounds, Grid, Tile, TileIndex
from ziggurat.plan.order import curve as along_curve
from ziggurat.plan.parts import Part, PartCut, cut
from ziggurat.plan.selection import Selection
from ziggurat.recipe import Recipe, parse_zoom_levels
from ziggurat.recipe.area import clip_to_bounds, count_tiles_in_geometry, run_area, tiles_in_geometry


@dataclass(frozen=True)
class Plan:
    """Process tiles per zoom for one run; iterate `tiles()` lazily, count with `count()`."""

    grid: Grid
    zooms: tuple[int, ...]                  # in processing order (highest first, like mapchete)
    bounds: Bounds | None                   # grid CRS; None when `only` is set
    only: tuple[TileIndex, ...] = ()        # explicit tiles (from --tile / --point)
    geometry: Any = None                    # area polygon clipped to `bounds`: only tiles meeting it
    area: Any = None                        # the run's area polygon (grid CRS) rasters are masked to
    part: PartCut | None = None             # --part: only the tiles this part owns

    @property
    def extent(self) -> Bounds | None:
        """The run's area in the grid CRS: its bounds, or the union of its explicit tiles."""
        if self.bounds is not None or not self.only:
            return self.bounds
        return Bounds.union_all(self.grid.tile(*index).bounds for index in self.only)

    def count(self, zoom: int | None = None) -> int:
        if self.only:
            return sum(1 for t in self.only if zoom is None or t.zoom == zoom)
        if self.bounds is None:
            return 0
        zooms = self.zooms if zoom is None else (zoom,)
        if self.part is not None:   # the part's own tiles only: O(part), not O(plan)
            return sum(1 for z in zooms for _ in self._part_tiles(z, False))
        if self.geometry is not None:
            return sum(count_tiles_in_geometry(self.grid, self.geometry, z) for z in zooms)
        return sum(self.grid.count_tiles(self.bounds, z) for z in zooms)

    def tiles(self, curve: bool = False) -> Iterator[Tile]:
        """Every tile, zoom by zoom, in rows; with `curve` along a space-filling curve (see
        `plan.order`), so any stretch of consecutive tiles is a patch of neighbours. A plan with
        an area polygon or explicit tiles stays in rows. Index arithmetic only either way."""
        if self.part is not None and not self.only:
            for zoom in self.zooms:
                yield from self._part_tiles(zoom, curve)
            return
        if curve and not self.only and self.bounds is not None and self.geometry is None:
            for zoom in self.zooms:
                rows, cols = self.grid.tile_range(self.bounds, zoom)
                for row, col in along_curve(rows, cols):
                    yield self.grid.tile(zoom, row, col)
            return
        yield from self._rows()

    def _part_tiles(self, zoom: int, curve: bool) -> Iterator[Tile]:
        assert self.part is not None
        if self.bounds is None:
            return
        if self.geometry is not None:
            yield from (t for t in tiles_in_geometry(self.grid, self.geometry, zoom) if self.part.owns(self.grid, t))
        else:
            yield from self.part.tiles(self.grid, self.bounds, zoom, curve)

    def _rows(self) -> Iterator[Tile]:
        if self.only:
            for index in self.only:
                yield self.grid.tile(*index)
            return
        if self.bounds is None:
            return
        for zoom in self.zooms:
            if self.geometry is not None:
                yield from tiles_in_geometry(self.grid, self.geometry, zoom)
            else:
                yield from self.grid.tiles_in_bounds(self.bounds, zoom)


def _to_grid_crs(bounds: Sequence[float], crs: str | None, grid: Grid) -> Bounds:
    if len(bounds) != 4:
        raise RecipeError(f"bounds must be 4 numbers (west south east north), got {list(bounds)}")
    left, bottom, right, top = map(float, bounds)
    if not (left < right and bottom < top):
        raise RecipeError(f"bounds must satisfy west < east and south < north, got {list(bounds)}")
    if crs:
        try:
            return Bounds(*transform_bounds(CRS.from_user_input(crs), grid.crs, left, bottom, right, top,
                                            densify_pts=21))
        except Exception as exc:
            raise RecipeError(f"cannot transform bounds {list(bounds)} from {crs!r} to the grid CRS: {exc}") from exc
    return Bounds(left, bottom, right, top)


def make_plan(recipe: Recipe, selection: Selection | None = None, *, input_bounds: Iterable[Bounds] = (),
              **narrowing: Any) -> Plan:
    """Resolve a run's `Selection` (or its keyword arguments) against the recipe into a `Plan`.

    `input_bounds` are the footprints of the opened inputs (grid CRS); they bound a recipe
    without `bounds` so a run never spans the whole globe by accident.
    """
    sel = Selection.of(selection, **narrowing)
    plan = _make_plan(recipe, sel, input_bounds)
    return plan if sel.part is None else part_of(recipe, plan, Part.parse(sel.part))


def part_of(recipe: Recipe, plan: Plan, part: Part) -> Plan:
    """The plan narrowed to one part: its tiles at the part zoom and above, up to the top
    baselevel (higher zooms read their parents' neighbours, across part borders)."""
    if plan.only:
        raise RecipeError("--part cuts a run's area into parts; it cannot be combined with --tile or --point")
    levels = recipe.baselevel_range
    top = max(plan.zooms) if levels is None else min(max(plan.zooms), levels[1])
    if plan.bounds is None or top < min(plan.zooms):   # nothing a part could own: all is the ending run's
        return replace(plan, part=PartCut(part, max(plan.zooms), ()))
    the_cut = cut(plan.grid, plan.bounds, top, part, plan.geometry)
    zooms = tuple(z for z in plan.zooms if the_cut.zoom <= z <= top)
    return replace(plan, zooms=zooms, part=the_cut)


def _make_plan(recipe: Recipe, sel: Selection, input_bounds: Iterable[Bounds]) -> Plan:
    zoom, bounds, bounds_crs, tile = sel.zoom, sel.bounds, sel.bounds_crs, sel.tile
    point, point_crs, area, area_crs = sel.point, sel.point_crs, sel.area, sel.area_crs
    grid = recipe.grid
    the_area = run_area(recipe.area, area, area_crs, grid)
    if tile is not None:
        if len(tile) != 3:
            raise RecipeError(f"a tile is ZOOM ROW COL, got {list(tile)}")
        index = TileIndex(*map(int, tile))
        grid.tile(*index)  # raises GridError for an index outside the grid
        return Plan(grid, (index.zoom,), None, (index,), area=the_area)

    zooms = _zooms(recipe, zoom)

    if point is not None:
        x, y = map(float, point)
        if point_crs:
            xs, ys = transform(CRS.from_user_input(point_crs), grid.crs, [x], [y])
            x, y = xs[0], ys[0]
        try:
            only = tuple(grid.tile_at(x, y, z).index for z in zooms)
        except GridError as exc:
            raise RecipeError(str(exc)) from exc
        return Plan(grid, zooms, None, only, area=the_area)

    input_bounds = list(input_bounds)
    area = recipe.bounds
    footprint = Bounds.union_all(input_bounds)
    if area is not None and recipe.is_mapchete and footprint is not None:
        area = area.intersection(footprint)   # mapchete: bounds within the inputs
        if area is None:
            return Plan(grid, zooms, None, (), area=the_area)
    if area is None and the_area is not None:
        area = Bounds(*the_area.bounds)
    if area is None:
        area = Bounds.union_all(input_bounds)
    if area is None:
        area = grid.bounds()
    if bounds is not None:
        area = area.intersection(_to_grid_crs(bounds, bounds_crs, grid))
    if area is not None:
        area = area.intersection(grid.bounds())
    if area is not None:
        _check_size(recipe, area, zooms)
    geometry = None
    if the_area is not None and area is not None:
        geometry = clip_to_bounds(the_area, area)
        area = None if geometry is None else area.intersection(geometry.bounds)
    elif area is not None and recipe.bounds is None and len(input_bounds) > 1:
        geometry = _footprints(input_bounds, area)   # only tiles some input reaches (masks nothing)
        if geometry is not None:
            area = area.intersection(geometry.bounds)
    return Plan(grid, zooms, area, geometry=geometry, area=the_area)


def _footprints(boxes: list[Bounds], area: Bounds) -> Any:
    """The union of the inputs' footprints within `area`, where it is not one rectangle (inputs far
    apart: the tiles between them read nothing), as mapchete's process area is; else None."""
    import shapely

    union = shapely.union_all([shapely.box(*b) for b in boxes])
    if union.area >= shapely.box(*area).area * (1 - 1e-9):
        return None
    return clip_to_bounds(union, area)


def _zooms(recipe: Recipe, zoom: Any) -> tuple[int, ...]:
    """The run's zooms, finest first: the recipe's, narrowed by `zoom`."""
    lo, hi = recipe.zoom_levels
    if zoom is not None:
        zlo, zhi = parse_zoom_levels(zoom)
        if zlo < lo or zhi > hi:
            raise RecipeError(f"zoom {zlo}..{zhi} is outside the recipe's zoom_levels {lo}..{hi}")
        lo, hi = zlo, zhi
    return tuple(range(hi, lo - 1, -1))


#: process tiles one zoom may have: a billion files is past any real pyramid (a global 30 m
#: layer is ~3e7 tiles), and beyond it even counting the tiles meeting an area takes minutes
MAX_TILES_PER_ZOOM = 1_000_000_000


def _check_size(recipe: Recipe, area: Bounds, zooms: Sequence[int]) -> None:
    """Refuse a zoom with more tiles than any run can write, before anything counts them."""
    for zoom in zooms:
        count = recipe.grid.count_tiles(area, zoom)   # index arithmetic on the bounds: instant
        if count > MAX_TILES_PER_ZOOM:
            raise RecipeError(f"{recipe.describe_key('zoom_levels')}: zoom {zoom} has {count:.2g} tiles in the "
                              f"run's area (more than {MAX_TILES_PER_ZOOM:,}; one file per tile): lower "
                              "zoom_levels or narrow the area")
