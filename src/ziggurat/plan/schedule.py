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

from dataclasses import replace
from typing import Any, Callable, Iterator, Union

from ziggurat.core.grid import Bounds, Tile, TileIndex
from ziggurat.core.tasks import HIGHER, LOWER, RUN_END, WAIT, OverviewTask
from ziggurat.plan.order import RunSizer
from ziggurat.plan.tiles import Plan
from ziggurat.recipe import Recipe

PROCESS = "process"


def baselevel_range(recipe: Recipe) -> tuple[int, int] | None:
    """(min, max) zooms that run the process, or None without `baselevels`."""
    return recipe.baselevel_range


class Schedule:
    """Task source of one run; iterate it once, call `finished()` for every outcome."""

    def __init__(self, plan: Plan, baselevels: tuple[int, int],
                 is_done: Callable[[Tile], bool] = lambda tile: False,
                 on_skip: Callable[[Tile], None] = lambda tile: None, runs: RunSizer | None = None) -> None:
        self.plan = plan
        self.runs = runs   # cuts the walk (depth first: neighbours together) into runs
        self.grid = plan.grid
        self.bmin, self.bmax = baselevels
        self.lo, self.hi = min(plan.zooms), max(plan.zooms)
        self.is_done = is_done
        self.on_skip = on_skip
        self._ready: list[Any] = []                      # a stack: depth first, bounded
        self._waiting: dict[TileIndex, int] = {}         # open lower tile -> unfinished children
        self._poisoned: set[TileIndex] = set()           # lower tiles with a failed child
        self._held_done: set[TileIndex] = set()          # open lower tiles done before: skipped
                                                         # unless a child of theirs is (re)built
        self._built: set[TileIndex] = set()              # open lower tiles with a (re)built child
        self._dep_parent: dict[TileIndex, TileIndex] = {}  # scheduled child -> waiting lower tile
        self._blocked: list[TileIndex] = []
        #: tiles below a higher zoom whose 3x3 neighbourhood is not finished yet -> [unfinished
        #: neighbours, one of them (re)built, the tile itself failed]: a higher tile reads its
        #: parent's neighbours too (no seams), so it waits for them (the wavefront of the walk)
        self._hood: dict[TileIndex, list[Any]] = {}
        self.outstanding = 0                             # handed out, not finished
        self._geometry = plan.geometry
        if self._geometry is not None:
            import shapely

            shapely.prepare(self._geometry)

    def _skip(self, tile: Tile) -> bool:
        """True for a tile done before (continue mode), which is reported as skipped."""
        if not self.is_done(tile):
            return False
        self.on_skip(tile)
        return True

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
            task = self._ready.pop() if self._ready else next(walker, None)
            if task is not None:
                self.outstanding += 1
                yield task
                if self.runs is not None:
                    self.runs.took()
                    if self.runs.handed():
                        yield RUN_END
                continue
            if self._ready:  # the walk's last steps released held lower tiles
                continue
            if self.outstanding:
                yield WAIT
                continue
            if self._hood:  # neighbourhoods with a neighbour the walk never reached: all is done
                self._release_all()
                continue
            return

    def _walk_all(self) -> Iterator[Any]:
        if self.plan.only:  # explicit tiles: no dependencies, sources taken from the output
            for index in self.plan.only:
                tile = self.grid.tile(*index)
                if not self._skip(tile):
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
        if kind == LOWER:  # decided once its children are: a (re)built child rebuilds it
            if self.is_done(tile):
                self._held_done.add(index)
            if waiting_parent is not None:
                self._dep_parent[index] = waiting_parent
                self._waiting[waiting_parent] += 1
            self._waiting[index] = 1  # held open while its children are walked
            for child in self.children(tile):
                yield from self._walk(child, index)
            self._child_finished(index, True, built=False)  # release the hold
            return
        done = self._skip(tile)
        if not done and waiting_parent is not None:
            self._dep_parent[index] = waiting_parent
            self._waiting[waiting_parent] += 1
        if not done:
            yield index
        elif tile.zoom < self.hi and self.kind(tile.zoom + 1) == HIGHER:
            self._source_done(tile, rebuilt=False)
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
            self._child_finished(parent, ok, built=True)
        if index.zoom < self.hi and self.kind(index.zoom + 1) == HIGHER:
            tile = self.grid.tile(*index)
            if not ok:
                self._block_descendants(tile)
            self._source_done(tile, rebuilt=True, failed=not ok)

    def take_blocked(self) -> list[TileIndex]:
        """Tiles not built because a tile they are made from failed (since the last call)."""
        out, self._blocked = self._blocked, []
        return out

    def _child_finished(self, index: TileIndex, ok: bool, built: bool) -> None:
        """A source of open lower tile `index` finished; `built`: it was (re)made, not skipped."""
        if not ok:
            self._poisoned.add(index)
        if built:
            self._built.add(index)
        self._waiting[index] -= 1
        if self._waiting[index]:
            return
        del self._waiting[index]
        was_done, rebuilt = index in self._held_done, index in self._built
        self._held_done.discard(index)
        self._built.discard(index)
        if index in self._poisoned:
            self._poisoned.discard(index)
            self._blocked.append(index)
            parent = self._dep_parent.pop(index, None)
            if parent is not None:
                self._child_finished(parent, False, built=False)
            return
        if was_done and not rebuilt:  # nothing under it changed: keep it
            self.on_skip(self.grid.tile(*index))
            parent = self._dep_parent.pop(index, None)
            if parent is not None:
                self._child_finished(parent, True, built=False)
            return
        self._ready.append(OverviewTask(*index, LOWER))

    def _after_done(self, tile: Tile, rebuilt: bool) -> None:
        for child in self.children(tile):
            self._start_higher(child, rebuilt)

    def _source_done(self, tile: Tile, rebuilt: bool, failed: bool = False) -> None:
        """A source of higher tiles finished: each tile of its neighbourhood whose own neighbourhood
        is now complete releases its children (rebuilt if any neighbour was)."""
        for near in self._neighbourhood(tile):
            state = self._hood.get(near.index)
            if state is None:
                state = self._hood[near.index] = [len(self._neighbourhood(near)), False, False]
            state[0] -= 1
            state[1] = state[1] or rebuilt
            state[2] = state[2] or (failed and near.index == tile.index)
            if state[0] <= 0:
                del self._hood[near.index]
                if not state[2]:   # a failed tile's children are blocked already
                    self._after_done(near, state[1])

    def _release_all(self) -> None:
        for index in sorted(self._hood):
            remaining, rebuilt, failed = self._hood.pop(index)
            if not failed:
                self._after_done(self.grid.tile(*index), rebuilt)

    def _neighbourhood(self, tile: Tile) -> list[Tile]:
        """The tile and its 8 neighbours that are part of the run (the walk reaches them)."""
        rows, cols = self.grid.matrix_shape(tile.zoom)
        out = []
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                row, col = tile.row + dr, tile.col + dc
                if not (0 <= row < rows and 0 <= col < cols):
                    continue
                near = tile if dr == dc == 0 else self.grid.tile(tile.zoom, row, col)
                if near is not tile and not self._in_run(near):
                    continue
                out.append(near)
        return out

    def _in_run(self, tile: Tile) -> bool:
        if self.plan.bounds is None:
            return False
        box = tile.bounds.intersection(self.plan.bounds)
        return box is not None and (self._geometry is None or self._meets_area(tile.bounds))

    def _start_higher(self, tile: Tile, parent_rebuilt: bool = False) -> None:
        """A higher tile whose parent's neighbourhood is done: kept if it is done and none of those
        tiles was rebuilt."""
        if not parent_rebuilt and self._skip(tile):
            if tile.zoom < self.hi:
                self._source_done(tile, rebuilt=False)
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


class PlanSource:
    """Task source of a run without baselevels: the plan's tiles minus those done before; with a
    `RunSizer`, along the plan's curve with `RUN_END` where each run handed to one worker ends."""

    def __init__(self, plan: Plan, is_done: Callable[[Tile], bool], on_skip: Callable[[Tile], None],
                 runs: RunSizer | None = None) -> None:
        self.plan, self.is_done, self.on_skip, self.runs = plan, is_done, on_skip, runs

    def __iter__(self) -> Iterator[Any]:
        runs = self.runs
        for tile in self.plan.tiles(curve=runs is not None):
            if runs is not None:
                runs.took()
            if self.is_done(tile):
                self.on_skip(tile)
                continue
            yield tile.index
            if runs is not None and runs.handed():   # this run is full: the next starts after it
                yield RUN_END

    def finished(self, index: Any, ok: bool) -> None:
        """Nothing depends on another tile."""

    def take_blocked(self) -> list[TileIndex]:
        return []


TaskSource = Union[Schedule, PlanSource]


def make_source(recipe: Recipe, plan: Plan, is_done: Callable[[Tile], bool],
                on_skip: Callable[[Tile], None], runs: RunSizer | None = None) -> TaskSource:
    """The one task source of a run: dependency-aware with `baselevels`, else the plan's tiles
    (cut into `runs` of neighbours when the executor hands out runs of tiles). `is_done` (no side
    effects) says which tiles continue mode skips; each is handed to `on_skip`."""
    levels = baselevel_range(recipe)
    if levels is None:
        return PlanSource(plan, is_done, on_skip, runs)
    return Schedule(plan, levels, is_done, on_skip, runs)


__all__ = ["PROCESS", "PlanSource", "Schedule", "TaskSource", "baselevel_range", "make_source"]
