"""Running a recipe: load, check, plan, execute, summarise.

`execute()` is the one library call behind `ziggurat execute`; everything the CLI does is
reachable from Python. Progress is reported through a callback, never printed.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, Callable, Iterator

from ziggurat.core import interrupts
from ziggurat.core.errors import InputError, ProcessError, RecipeError
from ziggurat.core.grid import Bounds, Tile, TileIndex
from ziggurat.core.tasks import FAILED, RUN_END, WAIT, TileOutcome, blocked_outcome, skipped_outcome, task_index
from ziggurat.engine.outcomes import Outcomes, Progress, StaleTiles, Subscriber, Tally
from ziggurat.engine.setup import Opened, choose_executor, failed_only, open_run
from ziggurat.engine.slowtiles import SlowTileWatch
from ziggurat.engine.summary import ProgressCallback, ProgressEvent, RunSummary
from ziggurat.executors import Executor
from ziggurat.executors.job import RunSpec
from ziggurat.io import Output, open_input, open_output
from ziggurat.io.storage.store import STATS
from ziggurat.plan import Plan, Selection, make_plan
from ziggurat.plan.order import RunSizer
from ziggurat.plan.schedule import make_source
from ziggurat.process.call import check_signature
from ziggurat.process.load import ProcessRef, load_process, probe_import
from ziggurat.recipe import Recipe, load_recipe
from ziggurat.records.catalog.stac import RunItem
from ziggurat.records.ledger import sweep_temporaries
from ziggurat.records.lock import RunLock
from ziggurat.records.part_records import drop_merged
from ziggurat.records.provenance import changed_inputs

log = logging.getLogger(__name__)


def process_error(recipe: Recipe, outcome: TileOutcome) -> ProcessError:
    """The error a failed tile stops a run with: names the recipe, the process and the tile."""
    where = recipe.path or "<recipe>"
    what = f"process {recipe.process!r} failed on tile {outcome.index}"
    if outcome.exc_type in ("OutputError", "StorageError"):   # the output refused the bytes, not the process
        what = f"writing tile {outcome.index} to {recipe.output.url} failed"
    elif outcome.exc_type == "CancelledError":   # the cluster lost the task, not the process
        what = f"the Dask cluster dropped tile {outcome.index}"
    return ProcessError(f"{where}: {what}: {outcome.error}",
                        tile=(outcome.index.zoom, outcome.index.row, outcome.index.col), traceback=outcome.traceback,
                        exc_type=outcome.exc_type)


def load(recipe: Recipe | str | os.PathLike[str]) -> Recipe:
    """A recipe object from a path (validated) or as given."""
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def prepare(recipe: Recipe) -> None:
    """Checks that need the process module, done once before any tile runs."""
    ref = ProcessRef.of(recipe)
    probe_import(ref)   # a module that kills or hangs the interpreter at import, found in a child
    check_signature(load_process(ref), recipe)


def _input_bounds(recipe: Recipe) -> list[Bounds | None]:
    """Each input's footprint in the grid CRS (None: it has none, e.g. a remote raster)."""
    out = []
    for cfg in recipe.inputs.values():
        inp = open_input(cfg, recipe.grid)
        try:
            out.append(inp.bounds)
        finally:
            inp.close()
    return out


def input_footprint(recipe: Recipe) -> Bounds | None:
    """Union of the inputs' footprints (grid CRS); None when an input has none (or no inputs)."""
    boxes = _input_bounds(recipe)
    return None if not boxes or None in boxes else Bounds.union_all(b for b in boxes if b is not None)


def data_extent(recipe: Recipe, run_plan: Plan) -> Bounds | None:
    """Where a run can write data (grid CRS): its tiles, within the inputs' footprints and the
    area rasters are masked to. The STAC item clips its tile extents to it; an input that cannot
    be opened here leaves the extents unclipped (the tiles reading it report the error)."""
    try:
        extent = input_footprint(recipe)
    except InputError:
        extent = None
    if run_plan.area is not None:
        area = Bounds(*run_plan.area.bounds)
        extent = area if extent is None else extent.intersection(area)
    return extent


def plan(recipe: Recipe, selection: Selection | None = None, **narrowing: Any) -> Plan:
    """Tiles a run would process, with inputs bounding a recipe that has no `bounds`."""
    sel = Selection.of(selection, **narrowing)
    input_bounds: list[Bounds] = []
    # mapchete's process area is its bounds within the inputs' footprints; ziggurat's bounds are the area
    unbounded = recipe.bounds is None or recipe.is_mapchete
    if unbounded and sel.tile is None and sel.point is None \
            and recipe.area is None and sel.area is None:  # an area bounds the run too
        input_bounds = [b for b in _input_bounds(recipe) if b is not None]
    return make_plan(recipe, sel, input_bounds=input_bounds)


@interrupts.watched
def execute(recipe: Recipe | str | os.PathLike[str], selection: Selection | None = None, *,
            overwrite: bool = False, executor: str | Executor | None = None, workers: int | None = None,
            retries: int = 2, write_in: str | None = None, keep_going: bool = False,
            retry_failed: bool = False, tile_timeout: float | None = None,
            progress: ProgressCallback | None = None, vrt: bool = False, quicklook: bool = True,
            accept_process_change: bool = False, **narrowing: Any) -> RunSummary:
    """Run a recipe over its zoom levels and area, narrowed by a `Selection` (or its keyword
    arguments: zoom, bounds, bounds_crs, tile, point, point_crs, area, area_crs), writing tiles.

    Tiles the ledger records as written or empty are skipped (continue mode) unless `overwrite`.
    A failing tile stops the run with a `ProcessError` naming it, unless `keep_going`.
    `executor`: $ZIGGURAT_EXECUTOR or "processes"; `retries`: tries of a tile whose worker died;
    `write_in`: "workers" or "parent" encode the tiles (process pool); `retry_failed`: only the
    tiles the ledger records as failed; `tile_timeout`: seconds before a tile's worker is replaced
    and the tile retried, then failed ("TimedOut"); `quicklook` False: no `.ziggurat/quicklook.png`;
    `accept_process_change`: tiles made by an earlier version of the process count as done (the
    change is declared harmless; recorded with who and when). A change in comments, docstrings or
    formatting needs no such declaration: tiles are keyed by the process's code.
    """
    sel = Selection.of(selection, **narrowing)
    if sel.part is not None and (overwrite or retry_failed):
        raise RecipeError(f"--part {sel.part}: parts resume and never overwrite; --overwrite and --retry-failed "
                          "go with a plain run (which also ends the parts' job)")
    recipe = load(recipe)
    prepare(recipe)
    run_plan = failed_only(recipe, plan(recipe, sel)) if retry_failed else plan(recipe, sel)
    if run_plan.area is not recipe.area:  # workers mask raster results to the run's area
        recipe = replace(recipe, area=run_plan.area)
    output = open_output(recipe.output, recipe.grid)
    whole = run_plan if sel == Selection() and not retry_failed else plan(recipe)
    output.set_extent(list(recipe.zooms), whole.extent)   # a store sized once is sized for the recipe
    pool = choose_executor(recipe, executor, workers, retries, write_in, tile_timeout)
    opened = open_run(recipe, output, pool, run_plan, sel, overwrite=overwrite, keep_going=keep_going,
                      accept_process_change=accept_process_change)
    item = RunItem(opened.recipe, output, opened.replaced, data_extent(opened.recipe, run_plan))
    item.with_quicklook = quicklook
    run = _Run(opened, run_plan, output, pool, item, overwrite, keep_going, progress)
    return run.go(vrt)


def _call_all(hooks: list[Callable[[], None]]) -> None:
    for hook in hooks:
        hook()


class _Run:
    """One run after setup: feeds the executor, publishes every outcome, finishes the records."""

    def __init__(self, opened: Opened, run_plan: Plan, output: Output, pool: Executor, item: RunItem,
                 overwrite: bool, keep_going: bool, progress: ProgressCallback | None) -> None:
        self.recipe, self.recorder, self.lock, self.remote = opened.recipe, opened.recorder, opened.lock, opened.remote
        self.part, self.merged = opened.part, opened.merged
        self.plan, self.output, self.pool, self.item = run_plan, output, pool, item
        self.overwrite, self.keep_going = overwrite, keep_going
        self.summary = RunSummary(self.recipe, output.path, pool.name, pool.workers, total=run_plan.count())
        self.in_flight: set[TileIndex] = set()
        self.watch = SlowTileWatch(pool.workers, pool.window, pool.running)   # names tiles far slower than others
        subscribers: list[Subscriber] = [self.watch, Tally(self.summary)]
        hooks: list[Callable[[], None]] = []   # before each ledger commit
        if overwrite:
            subscribers.append(StaleTiles(output, self.recipe.grid))
            # stale objects go in bulk deletes, each before the commit that records them as gone
            hooks.append(output.flush_removals)
            self.recorder.ledger.hold = output.removals_waiting
        if isinstance(self.lock, RunLock):   # a run whose lock was taken over records nothing more
            hooks.append(self.lock.fence)
        if hooks:
            self.recorder.ledger.before_commit = lambda: _call_all(hooks)
        subscribers += [self.recorder, item]
        if progress is not None:
            subscribers.append(Progress(progress, self.summary.total))
        self.outcomes = Outcomes(subscribers)
        is_done = (lambda tile: False) if overwrite else self.recorder.is_done
        runs = None   # runs of neighbours, sized as the run goes (guided, and by tile time)
        if pool.run_tiles > 1:
            runs = RunSizer(pool.workers, pool.run_tiles, self.summary.total, self.watch.median, learn=True)
        self.source = make_source(self.recipe, run_plan, is_done, self.skipped, runs)

    def skipped(self, tile: Tile) -> None:
        """Continue mode skipped a tile the ledger (or, for an output without one, the files) has."""
        self.outcomes.publish(skipped_outcome(tile.index))

    def tasks(self) -> Iterator[Any]:
        """Task specs, lazily, from the run's one source (WAIT while overview sources run)."""
        for task in self.source:
            if task is not WAIT and task is not RUN_END:
                self.in_flight.add(task_index(task))
                self.watch.out(task_index(task))
            yield task

    def record(self, outcome: TileOutcome) -> None:
        """An outcome to every subscriber, then to the task source (dependents may be ready),
        before the executor pulls the next task."""
        self.in_flight.discard(outcome.index)
        self.outcomes.publish(outcome)
        self.source.finished(outcome.index, outcome.status != FAILED)
        for index in self.source.take_blocked():
            self.outcomes.publish(blocked_outcome(index))
        if outcome.status == FAILED and not self.keep_going:
            raise process_error(self.recipe, outcome)

    def go(self, vrt: bool) -> RunSummary:
        start = time.perf_counter()
        finished = False
        parent_writes = self.output.capabilities.writes_in_parent or self.pool.writes_in_parent
        self.watch.start()
        try:
            with self.pool:
                spec = RunSpec(self.recipe, self.overwrite, self.output.series_extends)
                outcomes = self.pool.map_unordered(spec, self.tasks(),
                                                   sink=self.output if parent_writes else None)
                try:
                    # a Ctrl-C raised wherever the main thread is may leave a lock taken: the pool
                    # raises it at its safe points (core.interrupts)
                    with interrupts.deferred() if self.pool.defers_interrupts else nullcontext():
                        for outcome in outcomes:
                            self.record(outcome)
                except KeyboardInterrupt:  # also SIGTERM, via the CLI: stop now
                    self.pool.terminate()  # their temporary files are swept below
                    raise
                finally:
                    outcomes.close()  # cancels what is pending, waits for what is in flight
            changed = changed_inputs(self.recipe, self.recorder.manifest)
            if changed:  # tiles may mix old and new data: not a result (the next run rebuilds them)
                raise InputError(f"{'inputs' if len(changed) > 1 else 'input'} changed during the run: "
                                 f"{'; '.join(changed)}; rerun to rebuild the tiles made from them")
            finished = True
            if self.part is None:   # a part's tiles are described by the ending run
                self.summary.stac_item = self.item.finish()
                self.summary.quicklook = self.item.quicklook(self.summary.stac_item)
                self.summary.stac_collection = self.item.collection
                if vrt:
                    self.summary.vrts = self.item.write_vrts()
        finally:
            self.watch.stop()
            self._finish(finished, start)
        return self.summary

    def _finish(self, finished: bool, start: float) -> None:
        try:  # a single file is renamed into place, or its temporary dropped
            self.output.finish_run(finished and (self.keep_going or not self.summary.failed))
            if finished and self.part is None:
                item = self.item.finish_file()
                if item is not None:
                    self.summary.stac_item, self.summary.quicklook = item, self.item.quicklook(item)
                self.summary.stac_collection = self.item.collection
        finally:  # recorded even when finishing the output itself failed
            try:
                self.output.flush_removals()   # before the summary counts the requests, and the ledger's last commit
                self.summary.seconds = time.perf_counter() - start
                self.summary.stale = dict(self.recorder.stale)
                self.summary.requests = STATS.by_store()
                for line in self.summary.cast_warnings():   # once per run, not per tile
                    log.warning("%s", line)
                self.recorder.finish(self.summary, None if finished else sys.exc_info()[1],
                                     pending=self.in_flight)
                sweep_temporaries(self.output.path, keep_own=False)  # every writer of this run has stopped
                if self.remote is not None:  # the ledger's last segment, the manifest, the STAC item
                    self.remote.finish()
                if self.merged and finished:   # the parts' rows are in this run's records now
                    drop_merged(self.recipe.output, list(self.merged))
            finally:
                self.lock.release()


__all__ = ["ProcessError", "ProgressEvent", "RunSummary", "Selection", "execute", "load", "plan",
           "prepare", "process_error"]
