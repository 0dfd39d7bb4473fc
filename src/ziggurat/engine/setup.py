"""Opening a run: the executor chosen, the last checks, the lock, the records pulled and begun.

Everything here happens before the first tile, in an order that leaves no trace when a check
refuses the run: the preflight and the bucket check come before anything touches the disk.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

from ziggurat.core.errors import OutputError, RecipeError
from ziggurat.core.formats import Storage
from ziggurat.core.grid import TileIndex
from ziggurat.executors import Executor, get_executor
from ziggurat.io import Output
from ziggurat.io.storage.store import STATS
from ziggurat.plan import Plan, Selection
from ziggurat.plan.parts import Part
from ziggurat.recipe import FrozenDict, Recipe
from ziggurat.records.catalog.index import remove_indexes
from ziggurat.records.ledger import Ledger, ledger_path, provenance_dir, sweep_temporaries
from ziggurat.records.lock import RunLock
from ziggurat.records.part_records import PartRecords, merge_parts
from ziggurat.records.provenance import RunExtent, RunRecorder, begin_run, input_fingerprints
from ziggurat.records.remote import RemoteRecords
from ziggurat.records.remote_lock import RemoteLock

log = logging.getLogger(__name__)
DEFAULT_EXECUTOR = "processes"


@dataclass
class Opened:
    """A run that may start: its recipe (with the input cache), records begun, lock held."""

    recipe: Recipe
    recorder: RunRecorder
    replaced: bool
    lock: RunLock | RemoteLock
    remote: RemoteRecords | PartRecords | None
    part: Part | None = None
    #: part segments the run took over: removed once its own records are safe (records.part_records)
    merged: tuple[str, ...] = ()


def choose_executor(recipe: Recipe, executor: str | Executor | None, workers: int | None, retries: int,
                    write_in: str | None, tile_timeout: float | None) -> Executor:
    """The executor asked for ($ZIGGURAT_EXECUTOR, else the process pool), started at once so
    its workers get ready while the run is prepared."""
    name = executor or os.environ.get("ZIGGURAT_EXECUTOR") or DEFAULT_EXECUTOR
    if tile_timeout is None and recipe.tile_timeout is not None:  # the recipe's, where tiles can be stopped
        if name in ("processes", "dask"):
            tile_timeout = recipe.tile_timeout
        elif isinstance(name, str):  # (an executor object was built with its own timeout)
            log.warning("%s: tile_timeout applies to the processes and dask executors only; %s cannot stop "
                        "a tile", recipe.describe_key("tile_timeout"), name)
    pool = get_executor(name, workers, retries=retries, write_in=write_in, tile_timeout=tile_timeout)
    pool.start()
    return pool


def open_run(recipe: Recipe, output: Output, pool: Executor, run_plan: Plan, sel: Selection, *,
             overwrite: bool, keep_going: bool, accept_process_change: bool = False) -> Opened:
    """Check, lock, pull and begin; on any failure the executor, the output and the lock are
    released again."""
    if sel.part is not None:
        return open_part(recipe, output, pool, run_plan, sel, keep_going=keep_going,
                         accept_process_change=accept_process_change)
    out_cfg = recipe.output
    STATS.take()  # this run's requests from here (the summary and the manifest report them)
    remote = (RemoteRecords(out_cfg.location, out_cfg.storage_options, out_cfg.path)
              if out_cfg.location is not None else None)
    lock: RunLock | RemoteLock = RemoteLock(out_cfg) if out_cfg.remote else RunLock(out_cfg.path)
    try:
        preflight(output, pool, run_plan)  # the last checks, before anything touches the disk
        if remote is not None:
            remote.check(write=True)  # no bucket, no access: one clear error before any tile
        recipe = with_input_cache(recipe)
        input_fingerprints(recipe)  # every input opened and hashed before the output is touched (a
                                    # mosaic may fill its index cache); memoised for begin_run
        lock.acquire()  # one run at a time per output
        if remote is not None:
            remote.pull()  # the bucket's records: a rerun from any machine resumes exactly
        merged = _take_over_parts(recipe, remote)
        replaced = output.prepare(overwrite, narrowed=sel != Selection())
        sweep_temporaries(output.path)  # left by a killed run (writers whose PID is gone)
        output.start_run(run_plan.zooms, run_plan.extent)
        options = {**sel.options(), "overwrite": overwrite, "keep_going": keep_going,
                   "accept_process_change": accept_process_change}
        recorder = begin_run(recipe, output, executor=pool.name, workers=pool.workers, options=options,
                             extent=RunExtent.of(run_plan.zooms, run_plan.extent),
                             replaced=replaced)  # recipe, process source, input fingerprints
        if remote is not None:
            remote.fence = lock.fence   # a run that lost its lock publishes nothing more
            if isinstance(lock, RemoteLock):
                lock.run = recorder.run   # named to a run that loses the lock to this one
            remote.attach(recorder.ledger, resync=replaced or overwrite, run=recorder.run)
            remote.push()
        recorder.adopt_process(accept_process_change, run_plan.zooms)   # published, when remote
    except BaseException:
        pool.close()
        output.finish_run(False)
        lock.release()
        raise
    if replaced:  # the earlier pyramid is gone, so are the indexes describing it
        remove_indexes(output.path)
    return Opened(recipe, recorder, replaced, lock, remote, merged=merged)


def _take_over_parts(recipe: Recipe, remote: RemoteRecords | None) -> tuple[str, ...]:
    """The ending run after `--part`s: their ledgers into the output's (published with its own
    segments on a bucket), so continue mode skips their tiles."""
    config = recipe.output
    if config.storage is Storage.FILE:
        return ()
    keys = tuple(merge_parts(config))
    if keys and remote is not None:
        remote.adopt()
    return keys


def open_part(recipe: Recipe, output: Output, pool: Executor, run_plan: Plan, sel: Selection, *,
              keep_going: bool, accept_process_change: bool = False) -> Opened:
    """A `--part` run: its own lock and records (published under .ziggurat/parts/), never the
    output's ledger; the ending run takes them over."""
    assert sel.part is not None
    part = Part.parse(sel.part)
    if not output.capabilities.tile_files or output.capabilities.writes_in_parent:
        raise RecipeError(f"--part {part}: output {recipe.output.url} is one file written by one process; parts "
                          "need a tiled output (a tile directory or a Zarr store)")
    records = PartRecords(recipe.output, part)
    lock = records.lock()
    STATS.take()
    try:
        preflight(output, pool, run_plan)
        if hasattr(records.store, "check"):
            records.store.check(write=True)  # no bucket, no access: one clear error before any tile
        recipe = with_input_cache(recipe)
        input_fingerprints(recipe)
        lock.acquire()          # one copy of this part at a time; other parts go on
        records.check_main_idle()
        records.pull()          # the output's ledger and this part's own segments
        output.prepare(False, narrowed=True)
        sweep_temporaries(output.path)
        output.start_run(run_plan.zooms, run_plan.extent)
        options = {**sel.options(), "overwrite": False, "keep_going": keep_going,
                   "accept_process_change": accept_process_change}
        recorder = begin_run(recipe, output, executor=pool.name, workers=pool.workers, options=options,
                             extent=RunExtent.of(run_plan.zooms, run_plan.extent), records=records.state)
        records.fence = lock.fence
        records.attach(recorder.ledger)
        recorder.adopt_process(accept_process_change, run_plan.zooms)
    except BaseException:
        pool.close()
        output.finish_run(False)
        lock.release()
        raise
    return Opened(recipe, recorder, False, lock, records, part=part)


def failed_only(recipe: Recipe, run_plan: Plan) -> Plan:
    """The plan's zooms, narrowed to the tiles the output's ledger records as failed."""
    failed: list[TileIndex] = []
    if ledger_path(recipe.output.path).is_file():
        with Ledger(recipe.output.path, create=False) as ledger:
            failed = [index for index, _ in ledger.failed_tiles() if index.zoom in run_plan.zooms]
    return replace(run_plan, bounds=None, geometry=None, only=tuple(failed))


def with_input_cache(recipe: Recipe) -> Recipe:
    """Inputs may keep what they learn about their files (a mosaic's index) in the output's
    provenance folder, so the next run and every worker reuse it."""
    cache = str(provenance_dir(recipe.output.path) / "cache")
    return replace(recipe, inputs=FrozenDict({name: replace(cfg, cache_dir=cache)
                                              for name, cfg in recipe.inputs.items()}))


def preflight(output: Output, pool: Executor, run_plan: Plan) -> None:
    """Checks that need the output with the executor or the run's plan."""
    output.check_run(run_plan.zooms, run_plan.extent)
    if pool.writes_in_parent and not output.capabilities.parent_writes:
        raise OutputError(f"output {output.path}: {output.format} tiles are written by the workers; "
                          "parent-side writing (--write-in parent) is for raster outputs")


__all__ = ["DEFAULT_EXECUTOR", "Opened", "choose_executor", "failed_only", "open_part", "open_run", "preflight",
           "with_input_cache"]
