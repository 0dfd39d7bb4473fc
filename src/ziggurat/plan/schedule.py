"""A dependency-aware task source for runs with `baselevels`.

Zooms inside ``[baselevels.min, baselevels.max]`` run the process (`TileIndex` tasks); zooms
below are built from their children, zooms above from their parent (`OverviewTask`s). The
source is a generator the executor pulls lazily; the engine reports every outcome through
`finished()` before the executor pulls again, and the generator yields `WAIT` when nothing is
ready until tasks in flight finish.

Order: a depth-first walk of the plan's quadtree from its coarsest zoom, so the tiles of the
finest lower zoom's children come out together and a lower tile becomes ready (and is handed
out before any further baselevel tile) as soon as its last child finishes; a higher tile is
ready as soon as its parent finishes. Pending state is the walk's path plus what is in flight
(a count per open lower tile), never the whole plan. Tiles the ledger has are skipped (the
`is_done` callback decides) and nothing waits for them; tiles outside the run's area are not
sources of dependencies, their existing output is used as it is. Dependents of a failed tile
are not built: they come back from `take_blocked()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterator

from ziggurat.errors import RecipeError
from ziggurat.tasks import HIGHER, LOWER, WAIT, OverviewTask
from ziggurat.grid import Bounds, Tile, TileIndex
from ziggurat.plan.tiles import Plan

PROCESS = "process"


def baselevel_range(recipe: Any) -> tuple[int, int] | None:
    """(min, max) zooms that run the process, or None without `baselevels`."""
    levels = recipe.baselevels
    if not levels:
        return None
    lo, hi = recipe.zoom_levels
    return int(levels.get("min", lo)), int(levels.get("max", hi))


class Schedule:
    """Task source of one run; iterate it once, call `finished()` for every outcome."""

    def __init__(self, plan: Plan, baselevels: tuple[int, int],
                 is_done: Callable[[Tile], bool] = lambda tile: False) -> None:
        self.plan = plan
        self.grid = plan.grid
        self.bmin, self.bmax = baselevels
        self.lo, self.hi = min(plan.zooms), max(plan.zooms)
        self.is_done = is_done
        self._ready: list[Any] = []                      # a stack: depth first, bounded
        self._waiting: dict[TileIndex, int] = {}         # open lower tile -> unfinished children
        self._poisoned: set[TileIndex] = set()           # lower tiles with a failed child
        self._dep_parent: dict[TileIndex, TileIndex] = {}  # scheduled child -> waiting lower tile
        self._blocked: list[TileIndex] = []
        self.outstanding = 0                             # handed out, not finished
        self._geometry = plan.geometry
        if self._geometry is not None:
            import shapely

            shapely.prepare(self._geometry)

    def kind(self, zoom: int) -> str:
        if zoom < self.bmin:
            return LOWER
        if zoom > self.bmax:
            return HIGHER
        return PROCESS

    def task(self, tile: Tile) -> Any:
        kind = self.kind(tile.zoom)
        return tile.index if kind == PROCESS else OverviewTask(*tile.index, kind)

    # -- the generator ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        walker = self._walk_all()
        while True:
            if self._ready:
                self.outstanding += 1
                yield self._ready.pop()
                continue
            task = next(walker, None)
            if task is not None:
                self.outstanding += 1
                yield task
                continue
            if self._ready:  # the walk's last steps released held lower tiles
                continue
            if self.outstanding:
                yield WAIT
                continue
            return

    def _walk_all(self) -> Iterator[Any]:
        if self.plan.only:  # explicit tiles: no dependencies, sources taken from the output
            for index in self.plan.only:
                tile = self.grid.tile(*index)
                if not self.is_done(tile):
                    yield self.task(tile)
            return
        for root in replace(self.plan, zooms=(self.lo,)).tiles():
            yield from self._walk(root, None)

    def _walk(self, tile: Tile, waiting_parent: TileIndex | None) -> Iterator[Any]:
        kind = self.kind(tile.zoom)
        if kind == HIGHER:  # a root above the baselevels: its parent is not part of this run
            self._start_higher(tile)
            return
        index = tile.index
        done = self.is_done(tile)
        if not done and waiting_parent is not None:
            self._dep_parent[index] = waiting_parent
            self._waiting[waiting_parent] += 1
        if kind == LOWER:
            if not done:
                self._waiting[index] = 1  # held open while its children are walked
            for child in self.children(tile):
                yield from self._walk(child, None if done else index)
            if not done:
                self._child_finished(index, True)  # release the hold
            return
        if not done:
            yield index
        elif tile.zoom < self.hi and self.kind(tile.zoom + 1) == HIGHER:
            self._after_done(tile)
        if tile.zoom < self.hi and self.kind(tile.zoom + 1) == PROCESS:
            for child in self.children(tile):
                yield from self._walk(child, None)

    # -- completions --------------------------------------------------------------------------
    def finished(self, index: Any, ok: bool) -> None:
        """The engine saw the outcome of a task this source handed out."""
        index = TileIndex(*index[:3])
        self.outstanding -= 1
        parent = self._dep_parent.pop(index, None)
        if parent is not None:
            self._child_finished(parent, ok)
        if index.zoom < self.hi and self.kind(index.zoom + 1) == HIGHER:
            tile = self.grid.tile(*index)
            if ok:
                self._after_done(tile)
            else:
                self._block_descendants(tile)

    def take_blocked(self) -> list[TileIndex]:
        """Tiles not built because a tile they are made from failed (since the last call)."""
        out, self._blocked = self._blocked, []
        return out

    def _child_finished(self, index: TileIndex, ok: bool) -> None:
        if not ok:
            self._poisoned.add(index)
        self._waiting[index] -= 1
        if self._waiting[index]:
            return
        del self._waiting[index]
        if index in self._poisoned:
            self._poisoned.discard(index)
            self._blocked.append(index)
            parent = self._dep_parent.pop(index, None)
            if parent is not None:
                self._child_finished(parent, False)
            return
        self._ready.append(OverviewTask(*index, LOWER))

    def _after_done(self, tile: Tile) -> None:
        for child in self.children(tile):
            self._start_higher(child)

    def _start_higher(self, tile: Tile) -> None:
        if self.is_done(tile):
            if tile.zoom < self.hi:
                self._after_done(tile)
        else:
            self._ready.append(OverviewTask(*tile.index, HIGHER))

    def _block_descendants(self, tile: Tile) -> None:
        for child in self.children(tile):
            self._blocked.append(child.index)
            self._block_descendants(child)

    # -- the plan's quadtree ------------------------------------------------------------------
    def children(self, tile: Tile) -> list[Tile]:
        """Plan tiles one zoom up inside `tile` (each has exactly one parent, even on grids
        whose matrices do not double: a child belongs to the tile holding its centre)."""
        zoom = tile.zoom + 1
        if zoom > self.hi or self.plan.bounds is None:
            return []
        box = tile.bounds.intersection(self.plan.bounds)
        if box is None:
            return []
        out = []
        for child in self.grid.tiles_in_bounds(box, zoom):
            cb = child.bounds
            if self.grid.tile_at((cb.left + cb.right) / 2, (cb.bottom + cb.top) / 2, tile.zoom).index \
                    != tile.index:
                continue
            if self._geometry is not None and not self._meets_area(cb):
                continue
            out.append(child)
        return out

    def _meets_area(self, b: Bounds) -> bool:
        import shapely

        box = shapely.box(*b)
        return bool(shapely.intersects(self._geometry, box) and not shapely.touches(self._geometry, box))


def make_schedule(recipe: Any, plan: Plan, output: Any, is_done: Callable[[Tile], bool]) -> Schedule | None:
    """A `Schedule` for a recipe with baselevels (None without); refuses outputs that cannot
    be read back (vector tiles, a single file)."""
    levels = baselevel_range(recipe)
    if levels is None:
        return None
    if any(z < levels[0] or z > levels[1] for z in plan.zooms) and (
            getattr(output, "is_vector", False) or getattr(output, "writes_in_parent", False)):
        raise RecipeError(f"{recipe.describe_key('baselevels')}: overview zooms need a raster tile "
                          f"directory output, not {output!r}")
    return Schedule(plan, levels, is_done)




# -- `ziggurat plan`: what a run would do, by index arithmetic only ----------------------------
@dataclass
class ZoomPlan:
    zoom: int
    kind: str                 # "process", "lower" or "higher" (an overview zoom)
    process_tiles: int
    output_tiles: int
    recorded: int             # process tiles the ledger already has (written or empty)
    estimated_bytes: int
    estimate_basis: str       # "mean of N written tiles" or "uncompressed"


@dataclass
class PlanReport:
    output: str
    zooms: list[ZoomPlan] = field(default_factory=list)

    @property
    def process_tiles(self) -> int:
        return sum(z.process_tiles for z in self.zooms)

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "process_tiles": self.process_tiles,
                "zooms": [asdict(z) for z in self.zooms]}

    def describe(self) -> str:
        lines = [f"{'zoom':>4} {'kind':<8} {'process':>12} {'output':>12} {'recorded':>10} "
                 f"{'est. size':>10}  basis"]
        for z in self.zooms:
            lines.append(f"{z.zoom:>4} {z.kind:<8} {z.process_tiles:>12,} {z.output_tiles:>12,} "
                         f"{z.recorded:>10,} {_human(z.estimated_bytes):>10}  {z.estimate_basis} (estimate)")
        lines.append(f"{self.process_tiles:,} process tiles -> {self.output}")
        return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


_SIZE_SAMPLE = 64


def plan_report(recipe: Any, plan: Plan, output: Any) -> PlanReport:
    """Tile counts per zoom (never enumerating tiles), what the ledger has, estimated size."""
    from ziggurat.records.ledger import Ledger, ledger_path
    from ziggurat.records.tile_records import output_root

    levels = baselevel_range(recipe) or (min(plan.zooms), max(plan.zooms))
    kinds = Schedule(plan, levels) if plan.zooms else None
    ledger = Ledger(output.path, create=False) if ledger_path(output.path).is_file() else None
    report = PlanReport(str(output.path))
    try:
        for zoom in sorted(plan.zooms):
            count = plan.count(zoom)
            ratio = (plan.grid.metatiling // recipe.output.metatiling) ** 2
            if plan.only or plan.bounds is None:
                out_count = count * ratio
            elif plan.geometry is None:
                out_count = recipe.output_grid.count_tiles(plan.bounds, zoom)
            else:
                out_count = count * ratio  # an upper bound: edge metatiles may be clipped
            recorded = 0
            if ledger is not None and plan.bounds is not None and not plan.only:
                rows, cols = plan.grid.tile_range(plan.bounds, zoom)
                recorded = min(count, ledger.count_done_in(zoom, rows, cols))
            size, basis = _estimate(ledger, output, recipe, zoom, output_root(output.path))
            report.zooms.append(ZoomPlan(zoom, kinds.kind(zoom) if kinds else PROCESS, count, out_count,
                                         recorded, int(size * out_count), basis))
    finally:
        if ledger is not None:
            ledger.close()
    return report


def _estimate(ledger: Any, output: Any, recipe: Any, zoom: int, root: Any) -> tuple[float, str]:
    """Bytes per output tile: the mean of written tiles of the zoom, else uncompressed."""
    import os

    if ledger is not None:
        sizes = []
        for p in ledger.written_paths(zoom, _SIZE_SAMPLE):
            try:
                sizes.append(os.path.getsize(os.path.join(root, p)))
            except OSError:
                pass
        if sizes:
            return sum(sizes) / len(sizes), f"mean of {len(sizes)} written tiles"
    h, w = recipe.output_grid.max_tile_shape(zoom)
    itemsize = getattr(getattr(output, "dtype", None), "itemsize", 4)
    return float(getattr(output, "bands", 1) * h * w * itemsize), "uncompressed"


__all__ = ["PROCESS", "PlanReport", "Schedule", "ZoomPlan", "baselevel_range", "make_schedule",
           "plan_report"]
