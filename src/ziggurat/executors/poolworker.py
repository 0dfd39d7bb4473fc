"""The process pool's worker side: what runs in each worker process, module state built once.

The parent hands the pool these module-level functions (picklable by name); `init_worker`
builds the worker's `TileJob` once, then tiles run by index, alone or in runs of neighbours.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np

import ziggurat_boot  # stdlib only: also the forkserver's first import
from ziggurat.core.grid import TileIndex
from ziggurat.core.tasks import TileOutcome, failed_outcome, task_index
from ziggurat.executors.heap import keep_freed_memory
from ziggurat.executors.job import RunSpec, TileJob
from ziggurat.executors.poolprocs import RunningTiles
from ziggurat.executors.shm import SlotSpec, SlotWriter

_job: TileJob | None = None
_init_error: BaseException | None = None
_running: RunningTiles | None = None
_slot_writers: dict[tuple[str, ...], SlotWriter] = {}


def init_worker(spec: RunSpec, cache_mb: int | None = None, running: RunningTiles | None = None) -> None:
    """Build the worker's job; an error (an input it cannot open) is kept and reported as every
    tile's outcome: raising here would break the pool and look like a dying worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    if cache_mb is not None:   # read by GDAL when its block cache is first used, which is after this
        os.environ["GDAL_CACHEMAX"] = f"{cache_mb}MB"
    ziggurat_boot.die_with_parent()  # the forkserver: it dies with the run, and so do its workers
    keep_freed_memory()   # tiles reuse the memory earlier tiles freed (see heap.py)
    global _job, _init_error, _running
    if running is not None:
        running.claim()
        _running = running
    try:
        _job = TileJob(spec)
    except Exception as exc:
        _init_error = exc


def run_tile(index: TileIndex) -> TileOutcome:
    if _job is None:
        return failed_outcome(task_index(index), _init_error or RuntimeError("the worker has no job"))
    if _running is not None:
        _running.started(task_index(index))
    try:
        return _job.run(index)
    finally:
        if _running is not None:
            _running.idle()


def run_together(indices: tuple[Any, ...]) -> list[TileOutcome]:
    """A run of neighbouring tiles in one worker: the source blocks they share are decoded once
    (GDAL's block cache is per process)."""
    return [run_tile(index) for index in indices]


def compute_tile(index: TileIndex, slot: int | None, slots: SlotSpec | None
                  ) -> tuple[TileOutcome, Any]:
    """Compute without writing; the array goes into a slot (or, without one, back pickled)."""
    if _job is None:
        return failed_outcome(task_index(index), _init_error or RuntimeError("the worker has no job")), None
    if _running is not None:
        _running.started(task_index(index))
    try:
        outcome, array = _job.compute(index)
    finally:
        if _running is not None:
            _running.idle()
    if array is None:
        return outcome, None
    if slot is None or slots is None:
        return outcome, array
    writer = _slot_writers.get(slots.names)
    if writer is None:
        writer = _slot_writers[slots.names] = SlotWriter(slots)
    writer.write(slot, np.ascontiguousarray(array))
    return outcome, (array.shape, array.dtype.str)


def compute_together(indices: tuple[Any, ...], slots_of: tuple[int | None, ...], slots: SlotSpec | None
                     ) -> list[tuple[TileOutcome, Any]]:
    """A run of neighbouring tiles computed in one worker for the parent to write, each result in
    its own slot: the source blocks the tiles share are decoded once."""
    return [compute_tile(index, slot, slots) for index, slot in zip(indices, slots_of)]


__all__ = ["compute_together", "compute_tile", "init_worker", "run_tile", "run_together"]
