"""Running a recipe: load, check, plan, execute, summarise.

`execute()` is the one library call behind `ziggurat execute`; everything the CLI does is
reachable from Python. Progress is reported through a callback, never printed.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from ziggurat.core import interrupts
from ziggurat.core.errors import InputError, OutputError, ProcessError
from ziggurat.core.grid import Bounds, Tile, TileIndex
from ziggurat.core.tasks import EMPTY, FAILED, RUN_END, SKIPPED, WAIT, WRITTEN, TileOutcome, task_index
from ziggurat.engine.slowtiles import SlowTileWatch
from ziggurat.engine.summary import ProgressCallback, ProgressEvent, RunSummary
from ziggurat.executors import Executor, get_executor
from ziggurat.executors.job import RunSpec
from ziggurat.io import Output, open_input, open_output
from ziggurat.io.storage.store import STATS
from ziggurat.plan import Plan, Selection, make_plan
from ziggurat.plan.order import RunSizer
from ziggurat.plan.schedule import make_source
from ziggurat.process.call import check_signature
from ziggurat.process.load import ProcessRef, load_process, probe_import
from ziggurat.recipe import FrozenDict, Recipe, load_recipe
from ziggurat.records.catalog.index import remove_indexes
from ziggurat.records.catalog.stac import RunItem
from ziggurat.records.ledger import Ledger, ledger_path, provenance_dir, sweep_temporaries
from ziggurat.records.lock import RunLock
from ziggurat.records.provenance import RunExtent, RunRecorder, begin_run, changed_inputs, input_fingerprints
from ziggurat.records.remote import RemoteLock, RemoteRecords

log = logging.getLogger(__name__)
DEFAULT_EXECUTOR = "processes"


def process_error(recipe: Recipe, outcome: TileOutcome) -> ProcessError:
    """The error a failed tile stops a run with: names the recipe, the process and the tile."""
    where = recipe.path or "<recipe>"
    what = f"process {recipe.process!r} failed on tile {outcome.index}"
    if outcome.exc_type in ("OutputError", "StorageError"):   # the output refused the bytes, not the process
        what = f"writing tile {outcome.index} to {recipe.output.url} failed"
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
            **narrowing: Any) -> RunSummary:
    """Run a recipe over its zoom levels and area, narrowed by a `Selection` (or its keyword
    arguments: zoom, bounds, bounds_crs, tile, point, point_crs, area, area_crs), writing tiles.

    Default mode continues: tiles the ledger records as written or empty are skipped.
    A failing tile stops the run (tiles already in flight finish first) with a
    `ProcessError` naming the tile; with `keep_going` all other tiles still run and the
    failures are listed in the summary. `executor` defaults to $ZIGGURAT_EXECUTOR or
    "processes"; `retries` is how often a tile whose worker died is tried again; `write_in`
    ("workers" or "parent") chooses who encodes tiles with the process pool. An `area`
    narrows the recipe's area: only tiles meeting the polygon run, and raster results are
    masked to it. `retry_failed` runs exactly the tiles the ledger records as failed (a dead-letter
    list), of the selected zooms. `tile_timeout` (seconds, processes executor) stops a tile that
    runs longer: its worker is replaced and the tile retried like a dying worker, then reported as
    failed ("TimedOut"). `quicklook` False skips `.ziggurat/quicklook.png` (the preview server's
    one-tile runs).
    """
    sel = Selection.of(selection, **narrowing)
    recipe = load(recipe)
    prepare(recipe)
    run_plan = plan(recipe, sel)
    if retry_failed:
        run_plan = _failed_only(recipe, run_plan)
    if run_plan.area is not recipe.area:  # workers mask raster results to the run's area
        recipe = replace(recipe, area=run_plan.area)
    output = open_output(recipe.output, recipe.grid)
    whole = run_plan if sel == Selection() and not retry_failed else plan(recipe)
    output.set_extent(list(recipe.zooms), whole.extent)   # a store sized once is sized for the recipe
    name = executor or os.environ.get("ZIGGURAT_EXECUTOR") or DEFAULT_EXECUTOR
    if tile_timeout is None and recipe.tile_timeout is not None:  # the recipe's, where tiles can be stopped
        if name in ("processes", "dask"):
            tile_timeout = recipe.tile_timeout
        elif isinstance(name, str):  # (an executor object was built with its own timeout)
            log.warning("%s: tile_timeout applies to the processes and dask executors only; %s cannot stop "
                        "a tile", recipe.describe_key("tile_timeout"), name)
    pool = get_executor(name, workers, retries=retries, write_in=write_in, tile_timeout=tile_timeout)
    pool.start()   # workers get ready while the run is prepared
    out_cfg = recipe.output
    STATS.take()  # this run's requests from here (the summary and the manifest report them)
    remote = (RemoteRecords(out_cfg.location, out_cfg.storage_options, out_cfg.path)
              if out_cfg.location is not None else None)
    lock: RunLock | RemoteLock = RemoteLock(recipe.output) if recipe.output.remote else RunLock(recipe.output.path)
    try:
        _preflight(output, pool, run_plan)  # the last checks, before anything touches the disk
        if remote is not None:
            remote.check(write=True)  # no bucket, no access: one clear error before any tile
        recipe = _with_input_cache(recipe)
        input_fingerprints(recipe)  # every input opened and hashed before the output is touched (a
                                    # mosaic may fill its index cache); memoised for begin_run
        lock.acquire()  # one run at a time per output
        if remote is not None:
            remote.pull()  # the bucket's records: a rerun from any machine resumes exactly
        replaced = output.prepare(overwrite, narrowed=sel != Selection())
        sweep_temporaries(output.path)  # left by a killed run (writers whose PID is gone)
        output.start_run(run_plan.zooms, run_plan.extent)
        options = {**sel.options(), "overwrite": overwrite, "keep_going": keep_going}
        recorder = begin_run(recipe, output, executor=pool.name, workers=pool.workers, options=options,
                             extent=RunExtent.of(run_plan.zooms, run_plan.extent),
                             replaced=replaced)  # recipe, process source, input fingerprints
        if remote is not None:
            remote.attach(recorder.ledger, resync=replaced or overwrite)
            remote.push()
    except BaseException:
        pool.close()
        output.finish_run(False)
        lock.release()
        raise
    if replaced:  # the earlier pyramid is gone, so are the indexes describing it
        remove_indexes(output.path)
    item = RunItem(recipe, output, replaced, data_extent(recipe, run_plan))
    item.with_quicklook = quicklook
    run = _Run(recipe, run_plan, output, pool, recorder, item, overwrite, keep_going, progress, lock, remote)
    return run.go(vrt)


def _failed_only(recipe: Recipe, run_plan: Plan) -> Plan:
    """The plan's zooms, narrowed to the tiles the output's ledger records as failed."""
    failed: list[TileIndex] = []
    if ledger_path(recipe.output.path).is_file():
        with Ledger(recipe.output.path, create=False) as ledger:
            failed = [index for index, _ in ledger.failed_tiles() if index.zoom in run_plan.zooms]
    return replace(run_plan, bounds=None, geometry=None, only=tuple(failed))


def _with_input_cache(recipe: Recipe) -> Recipe:
    """Inputs may keep what they learn about their files (a mosaic's index) in the output's
    provenance folder, so the next run and every worker reuse it."""
    cache = str(provenance_dir(recipe.output.path) / "cache")
    return replace(recipe, inputs=FrozenDict({name: replace(cfg, cache_dir=cache)
                                              for name, cfg in recipe.inputs.items()}))


def _preflight(output: Output, pool: Executor, run_plan: Plan) -> None:
    """Checks that need the output with the executor or the run's plan."""
    output.check_run(run_plan.zooms, run_plan.extent)
    if pool.writes_in_parent and not output.capabilities.parent_writes:
        raise OutputError(f"output {output.path}: {output.format} tiles are written by the workers; "
                          "parent-side writing (--write-in parent) is for raster outputs")


@dataclass
class _Run:
    """One run's moving parts, after setup: feeds the executor, records every outcome."""

    recipe: Recipe
    plan: Plan
    output: Output
    pool: Executor
    recorder: RunRecorder           # ledger, checksums, manifest
    item: RunItem
    overwrite: bool
    keep_going: bool
    progress: ProgressCallback | None
    lock: RunLock | RemoteLock
    remote: RemoteRecords | None = None   # publishes the records of an output on object storage
    summary: RunSummary = field(init=False)
    in_flight: set[TileIndex] = field(default_factory=set)
    watch: SlowTileWatch = field(init=False)   # names tiles that run far longer than the others
    done: int = 0

    def __post_init__(self) -> None:
        self.summary = RunSummary(self.recipe, self.output.path, self.pool.name, self.pool.workers,
                                  total=self.plan.count())
        self.watch = SlowTileWatch(self.pool.workers, self.pool.window, self.pool.running)
        is_done = (lambda tile: False) if self.overwrite else self.recorder.is_done
        runs = None   # runs of neighbours, sized as the run goes (guided, and by tile time)
        if self.pool.run_tiles > 1:
            runs = RunSizer(self.pool.workers, self.pool.run_tiles, self.summary.total, self.watch.median)
        self.source = make_source(self.recipe, self.plan, is_done, self.skipped, runs)

    def report(self, outcome: TileOutcome) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(ProgressEvent(self.done, self.summary.total, outcome))

    def skipped(self, tile: Tile) -> None:
        """Continue mode skipped a tile the ledger (or, for an output without one, the files) has."""
        self.summary.skipped += 1
        self.recorder.skipped(tile)
        self.item.skipped(tile)
        self.report(TileOutcome(tile.index, SKIPPED))

    def tasks(self) -> Iterator[Any]:
        """Task specs, lazily, from the run's one source (WAIT while overview sources run)."""
        for task in self.source:
            if task is not WAIT and task is not RUN_END:
                self.in_flight.add(task_index(task))
                self.watch.out(task_index(task))
            yield task

    def record(self, outcome: TileOutcome) -> None:
        """Everything an outcome updates, before the executor pulls the next task."""
        self.in_flight.discard(outcome.index)
        self.watch.back(outcome.index, outcome.seconds)
        if outcome.requests:
            STATS.merge(dict(outcome.requests))
        for key, n in outcome.notes:
            self.summary.cast[key] = self.summary.cast.get(key, 0) + n
        self.count(outcome)
        if self.overwrite and outcome.status != FAILED:  # no earlier data under tiles left empty
            self.output.remove_stale(self.recipe.grid.tile(*outcome.index), outcome.written)
        self.recorder.add(outcome)  # ledger and tile checksums
        self.item.written(outcome.written)
        self.report(outcome)
        self.source.finished(outcome.index, outcome.status != FAILED)  # dependents may be ready
        for index in self.source.take_blocked():
            blocked = TileOutcome(index, FAILED, error="not built: a tile it is made from failed",
                                  exc_type="SourceFailed")
            self.count(blocked)
            self.report(blocked)
        if outcome.status == FAILED and not self.keep_going:
            raise process_error(self.recipe, outcome)

    def count(self, outcome: TileOutcome) -> None:
        summary = self.summary
        if outcome.status == WRITTEN:
            summary.written += 1
            summary.output_tiles += len(outcome.written)
        elif outcome.status == EMPTY:
            summary.empty += 1
        elif outcome.status == FAILED:
            summary.failed.append(outcome)

    def go(self, vrt: bool) -> RunSummary:
        start = time.perf_counter()
        finished = False
        parent_writes = self.output.capabilities.writes_in_parent or self.pool.writes_in_parent
        self.watch.start()
        try:
            with self.pool:
                outcomes = self.pool.map_unordered(RunSpec(self.recipe, self.overwrite), self.tasks(),
                                                   sink=self.output if parent_writes else None)
                try:
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
            if finished:
                item = self.item.finish_file()
                if item is not None:
                    self.summary.stac_item, self.summary.quicklook = item, self.item.quicklook(item)
                self.summary.stac_collection = self.item.collection
        finally:  # recorded even when finishing the output itself failed
            try:
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
            finally:
                self.lock.release()


__all__ = ["ProcessError", "ProgressEvent", "RunSummary", "Selection", "execute", "load", "plan",
           "prepare", "process_error"]
