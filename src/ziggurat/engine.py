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
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ziggurat.errors import ProcessError
from ziggurat.executors import WAIT, Executor, get_executor
from ziggurat.grid import TileIndex
from ziggurat.io import open_input, open_output
from ziggurat.executors.job import RunSpec
from ziggurat.tasks import EMPTY, FAILED, SKIPPED, WRITTEN, TileOutcome, task_index
from ziggurat.records.ledger import sweep_temporaries
from ziggurat.plan import Plan, make_plan
from ziggurat.process import ProcessRef, check_signature, load_process
from ziggurat.records.provenance import begin_run
from ziggurat.recipe import Recipe, load_recipe
from ziggurat.plan.schedule import PlanReport, make_schedule, plan_report
from ziggurat.records.stac import RunItem

log = logging.getLogger(__name__)
DEFAULT_EXECUTOR = "processes"


@dataclass(frozen=True)
class ProgressEvent:
    done: int
    total: int
    outcome: TileOutcome


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class RunSummary:
    recipe: Recipe
    output_path: Path
    executor: str
    workers: int
    total: int = 0
    written: int = 0                 # process tiles that wrote data
    output_tiles: int = 0            # output tiles written (a metatile writes several)
    empty: int = 0
    skipped: int = 0
    failed: list[TileOutcome] = field(default_factory=list)
    seconds: float = 0.0
    stac_item: Path | None = None    # the STAC item describing the output, if any
    vrts: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        """The summary the CLI prints: one line, then where the STAC item (and VRTs) are."""
        parts = [f"{self.output_tiles} tiles written", f"{self.empty} empty", f"{self.skipped} skipped"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        text = f"{', '.join(parts)} in {self.seconds:.2f} s -> {self.output_path}"
        if self.stac_item is not None:
            text += f"\nSTAC item: {self.stac_item}"
        if self.vrts:
            text += f"\nVRTs: {', '.join(str(p) for p in self.vrts)}"
        return text


def process_error(recipe: Recipe, outcome: TileOutcome) -> ProcessError:
    """The error a failed tile stops a run with: names the recipe, the process and the tile."""
    where = recipe.path or "<recipe>"
    return ProcessError(f"{where}: process {recipe.process!r} failed on tile {outcome.index}: {outcome.error}",
                        tile=tuple(outcome.index), traceback=outcome.traceback, exc_type=outcome.exc_type)


def load(recipe: Recipe | str | os.PathLike[str]) -> Recipe:
    """A recipe object from a path (validated) or as given."""
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def prepare(recipe: Recipe) -> None:
    """Checks that need the process module, done once before any tile runs."""
    check_signature(load_process(ProcessRef(recipe.process, str(recipe.base_dir))), recipe)


def plan(recipe: Recipe, **overrides: Any) -> Plan:
    """Tiles a run would process, with inputs bounding a recipe that has no `bounds`."""
    input_bounds = []
    if recipe.bounds is None and overrides.get("tile") is None and overrides.get("point") is None \
            and recipe.area is None and overrides.get("area") is None:  # an area bounds the run too
        for cfg in recipe.inputs.values():
            inp = open_input(cfg, recipe.grid)
            try:
                input_bounds.append(inp.bounds)
            finally:
                close = getattr(inp, "close", None)
                if close:
                    close()
    return make_plan(recipe, input_bounds=input_bounds, **overrides)


def dry_run(recipe: Recipe | str | os.PathLike[str], **overrides: Any) -> PlanReport:
    """`ziggurat plan`: tiles per zoom, what the ledger has, estimated size; runs nothing."""
    recipe = load(recipe)
    return plan_report(recipe, plan(recipe, **overrides), open_output(recipe.output, recipe.grid))


def execute(recipe: Recipe | str | os.PathLike[str], *, zoom: Any = None,
            bounds: Sequence[float] | None = None, bounds_crs: str | None = None,
            tile: Sequence[int] | None = None, point: Sequence[float] | None = None,
            point_crs: str | None = None, area: Any = None, area_crs: str | None = None,
            overwrite: bool = False, executor: str | Executor | None = None, workers: int | None = None,
            retries: int = 2, write_in: str | None = None, keep_going: bool = False,
            progress: ProgressCallback | None = None, vrt: bool = False) -> RunSummary:
    """Run a recipe over its zoom levels and area (optionally narrowed), writing tiles.

    Default mode continues: process tiles whose output tiles all exist are skipped.
    A failing tile stops the run (tiles already in flight finish first) with a
    `ProcessError` naming the tile; with `keep_going` all other tiles still run and the
    failures are listed in the summary. `executor` defaults to $ZIGGURAT_EXECUTOR or
    "processes"; `retries` is how often a tile whose worker died is tried again; `write_in`
    ("workers" or "parent") chooses who encodes tiles with the process pool. `area` (WKT,
    GeoJSON or a vector file path, in `area_crs`) narrows the recipe's area: only tiles
    meeting the polygon run, and raster results are masked to it.
    """
    recipe = load(recipe)
    prepare(recipe)
    run_plan = plan(recipe, zoom=zoom, bounds=bounds, bounds_crs=bounds_crs, tile=tile,
                    point=point, point_crs=point_crs, area=area, area_crs=area_crs)
    if run_plan.area is not recipe.area:  # workers mask raster results to the run's area
        recipe = replace(recipe, area=run_plan.area)
    output = open_output(recipe.output, recipe.grid)
    run_item = RunItem(recipe, output)  # checks the recipe's stac settings; tracks tile extents
    output.prepare(overwrite)
    sweep_temporaries(output.path)  # left by a killed run (writers whose PID is gone)
    pool = get_executor(executor or os.environ.get("ZIGGURAT_EXECUTOR") or DEFAULT_EXECUTOR, workers,
                        retries=retries, write_in=write_in)
    start_run = getattr(output, "start_run", None)
    if start_run is not None:
        start_run(run_plan)
    recorder = begin_run(recipe, output, executor=pool.name, workers=pool.workers, options=dict(
        zoom=zoom, bounds=bounds, bounds_crs=bounds_crs, tile=tile, point=point, point_crs=point_crs,
        area=area, area_crs=area_crs,
        overwrite=overwrite, keep_going=keep_going))  # recipe, process source, input fingerprints
    run = _Run(recipe, run_plan, output, pool, recorder, run_item, overwrite, keep_going, progress)
    return run.go(vrt)


@dataclass
class _Run:
    """One run's moving parts, after setup: feeds the executor, records every outcome."""

    recipe: Recipe
    plan: Plan
    output: Any
    pool: Executor
    recorder: Any                   # provenance.RunRecorder: ledger, checksums, manifest
    item: RunItem
    overwrite: bool
    keep_going: bool
    progress: ProgressCallback | None
    summary: RunSummary = field(init=False)
    in_flight: set[TileIndex] = field(default_factory=set)
    done: int = 0

    def __post_init__(self) -> None:
        self.summary = RunSummary(self.recipe, self.output.path, self.pool.name, self.pool.workers,
                                  total=self.plan.count())
        self.schedule = make_schedule(self.recipe, self.plan, self.output, self.done_before)  # baselevels

    def report(self, outcome: TileOutcome) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(ProgressEvent(self.done, self.summary.total, outcome))

    def done_before(self, tile: Any) -> bool:
        """Continue mode: the ledger (or, for an output without one, the files) has the tile."""
        if self.overwrite or not self.recorder.is_done(tile):
            return False
        self.summary.skipped += 1
        self.item.skipped(tile)
        self.report(TileOutcome(tile.index, SKIPPED))
        return True

    def tasks(self) -> Iterator[Any]:
        """Task specs, lazily; with baselevels the schedule yields WAIT until sources finish."""
        if self.schedule is not None:
            for task in self.schedule:
                if task is not WAIT:
                    self.in_flight.add(task_index(task))
                yield task
            return
        for tile in self.plan.tiles():
            if not self.done_before(tile):
                self.in_flight.add(tile.index)
                yield tile.index

    def record(self, outcome: TileOutcome) -> None:
        """Everything an outcome updates, before the executor pulls the next task."""
        self.in_flight.discard(outcome.index)
        _record(self.summary, outcome, self.output, self.overwrite)
        self.recorder.add(outcome)  # ledger and tile checksums
        self.item.written(outcome.written)
        self.report(outcome)
        if self.schedule is not None:  # dependents of this tile may now be ready
            self.schedule.finished(outcome.index, outcome.status != FAILED)
            for index in self.schedule.take_blocked():
                blocked = TileOutcome(index, FAILED, error="not built: a tile it is made from failed",
                                      exc_type="SourceFailed")
                _record(self.summary, blocked, self.output, self.overwrite)
                self.report(blocked)
        if outcome.status == FAILED and not self.keep_going:
            raise process_error(self.recipe, outcome)

    def go(self, vrt: bool) -> RunSummary:
        start = time.perf_counter()
        finished = False
        parent_writes = (getattr(self.output, "writes_in_parent", False)
                         or getattr(self.pool, "write_in", "") == "parent")
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
            finished = True
            self.summary.stac_item = self.item.finish()
            if vrt:
                self.summary.vrts = self.item.write_vrts()
        finally:
            self._finish(finished, start)
        return self.summary

    def _finish(self, finished: bool, start: float) -> None:
        try:
            finish_run = getattr(self.output, "finish_run", None)
            if finish_run is not None:  # single file: rename into place, or drop the temporary
                finish_run(finished and (self.keep_going or not self.summary.failed))
        finally:  # recorded even when finishing the output itself failed
            self.summary.seconds = time.perf_counter() - start
            self.recorder.finish(self.summary, None if finished else sys.exc_info()[1],
                                 pending=self.in_flight)
            sweep_temporaries(self.output.path, keep_own=False)  # every writer of this run has stopped


def _record(summary: RunSummary, outcome: TileOutcome, output: Any, overwrite: bool) -> None:
    if outcome.status == WRITTEN:
        summary.written += 1
        summary.output_tiles += len(outcome.written)
    elif outcome.status == EMPTY:
        summary.empty += 1
    elif outcome.status == FAILED:
        summary.failed.append(outcome)
        return
    if overwrite and not getattr(output, "writes_in_parent", False):  # a single file is replaced whole
        _remove_stale(summary.recipe, output, outcome)


def _remove_stale(recipe: Recipe, output: Any, outcome: TileOutcome) -> None:
    """With --overwrite, output tiles this run left empty must not keep an earlier run's data."""
    written = set(outcome.written)
    for out_tile in output.output_tiles(recipe.grid.tile(*outcome.index)):
        if out_tile.index not in written:
            output.tile_path(out_tile).unlink(missing_ok=True)


__all__ = ["ProcessError", "ProgressEvent", "RunSummary", "dry_run", "execute", "load", "plan", "prepare"]
