"""Process-pool executor: many cores, bounded memory, nothing lost, no crash when memory is short.

- Tasks are pulled lazily and kept to a window of about 2 x workers in flight.
- Workers are started by a forkserver that has already imported rasterio/numpy, ignore
  SIGINT (the parent decides), and build their `TileJob` once.
- By default workers write tiles themselves (fastest, see bench/). When the parent must
  write (single-file output, or `write_in="parent"`), array results come back through
  shared-memory slots reserved with posix_fallocate, not through pickling; writer threads
  in the parent encode them (GDAL releases the GIL). Neighbouring tiles go to one worker in
  runs either way (up to `PARENT_RUN` when the parent writes: a slot each).
- A dead worker (segfault, OOM kill) breaks the pool: it is recreated and the tiles that
  were in flight run again one at a time, so the culprit is found and retried at most
  `retries` times while innocent tiles simply finish.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator, Iterable, Iterator

import numpy as np

from ziggurat.core import interrupts
from ziggurat.core.errors import ExecutorError
from ziggurat.core.grid import TileIndex
from ziggurat.core.tasks import FAILED, WRITTEN, TileOutcome, task_index
from ziggurat.executors.base import Executor
from ziggurat.executors.feeder import Feeder, ParentWriter
from ziggurat.executors.job import RunSpec
from ziggurat.executors.poolprocs import (
    RunningTiles,
    describe_exit,
    exit_code,
    main_not_reimported,
    pool_context,
    sigint_held,
    start_forkserver,
    worker_cache_mb,
    worker_processes,
)
from ziggurat.executors.poolworker import compute_tile, compute_together, init_worker, run_tile, run_together
from ziggurat.executors.shm import SHM_DIR, SlotPool, free_bytes, sweep_stale
from ziggurat.io import Output

log = logging.getLogger(__name__)
#: neighbouring tiles one worker computes together for the parent to write (a result slot each)
PARENT_RUN = 4

WRITE_IN = ("workers", "parent")

@dataclass
class _Task:
    index: Any                 # the task spec as given (a TileIndex or an OverviewTask), opaque here
    run: tuple[Any, ...] = ()  # several specs handed to one worker together (index is the first)
    attempts: int = 0          # worker deaths (or timeouts) while this tile ran alone
    slot: int | None = None
    slots: tuple[int | None, ...] = ()   # a run's result slots (the parent writes), one per spec
    started: float = 0.0       # when it was handed to the pool (monotonic)
    timed_out: bool = False    # it ran longer than the tile timeout


class ProcessExecutor(Executor):
    name = "processes"
    defers_interrupts = True

    #: the most tiles handed to a worker at once (a patch of neighbours, see `plan.order`) when no
    #: tile timeout applies (`PARENT_RUN` when the parent writes); 1 hands them out one by one
    run_tiles = 256

    def __init__(self, workers: int | None = None, *, retries: int = 2, write_in: str = "workers",
                 shm_dir: str | None = None, tile_timeout: float | None = None,
                 run_tiles: int | None = None) -> None:
        super().__init__(workers)
        if run_tiles is not None:
            self.run_tiles = max(1, int(run_tiles))
        if tile_timeout is not None:   # a timeout is per tile
            self.run_tiles = 1
        #: seconds a tile may run; a longer one has its worker killed and is retried like a worker death
        self.tile_timeout = tile_timeout
        if write_in not in WRITE_IN:
            raise ValueError(f"write_in must be one of {WRITE_IN}, got {write_in!r}")
        self.retries = retries
        self.write_in = write_in
        self.writes_in_parent = write_in == "parent"
        self._last_exit: list[int] = []    # exit codes of the workers that died last
        self.shm_dir = Path(shm_dir) if shm_dir else SHM_DIR
        self._pool: ProcessPoolExecutor | None = None
        self._running: RunningTiles | None = None   # the current pool's
        self._lock = threading.Lock()
        self._terminated = False

    # -- pool lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the forkserver now: its imports (~0.8 s of one core) then overlap the engine's
        preparation instead of delaying the first tile."""
        start_forkserver()

    def _new_pool(self, spec: RunSpec, workers: int) -> ProcessPoolExecutor:
        try:
            ctx = pool_context()
            self._running = RunningTiles(ctx, workers)
            return ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker,
                                       initargs=(spec, worker_cache_mb(workers), self._running))
        except OSError as exc:   # its locks are POSIX semaphores, files in /dev/shm
            if exc.errno not in (errno.ENOSPC, errno.ENOMEM, errno.EACCES, errno.EROFS):
                raise
            free, _ = free_bytes(self.shm_dir)
            raise ExecutorError(f"cannot start the processes executor: shared memory {self.shm_dir} is full or "
                                f"not writable ({free:,} bytes free; {exc.strerror}); its locks live there. Free "
                                "space in it, or run with -e threads or -e sequential") from exc

    def running(self) -> dict[TileIndex, float] | None:
        running = self._running
        return None if running is None else running.tiles()

    def _processes(self) -> list[Any]:
        return worker_processes(self._pool)

    def terminate(self) -> None:
        """Stop now: cancel pending work and kill the workers (Ctrl-C, SIGTERM)."""
        with self._lock:
            self._terminated = True
            pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = worker_processes(pool)  # before shutdown(), which drops them
        for p in procs:  # first: a worker still starting must not find the pool's locks gone
            if p.is_alive():
                p.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.join(timeout=0.5)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- running -----------------------------------------------------------------------------
    def map_unordered(self, spec: RunSpec, tasks: Iterable[Any],
                      sink: Output | None = None) -> Generator[TileOutcome, None, None]:
        sweep_stale(self.shm_dir)
        workers = self.workers
        self._terminated = False
        self._pool = self._new_pool(spec, workers)  # before the slots: its locks live in /dev/shm too
        slots: SlotPool | None = None
        writer: ThreadPoolExecutor | None = None
        parent = None
        if sink is not None:
            slots = self._allocate_slots(spec, sink)
            parent = ParentWriter(sink, spec.recipe.grid)
            writer = ThreadPoolExecutor(parent.threads(workers), thread_name_prefix="ziggurat-writer")
        try:
            yield from self._loop(spec, Feeder(tasks), parent, slots, writer)
        except GeneratorExit:
            raise
        except BaseException:
            self.terminate()  # Ctrl-C or an error inside the loop: stop hard
            raise
        finally:
            if writer is not None:
                writer.shutdown(wait=True, cancel_futures=True)
            if not self._terminated:
                self.close()  # in-flight tiles finish (a failure elsewhere stopped the run)
            if slots is not None:
                slots.close()

    def _allocate_slots(self, spec: RunSpec, sink: Output) -> SlotPool | None:
        lo, hi = spec.recipe.zoom_levels
        size = max(sink.result_bytes(z) for z in range(lo, hi + 1))
        runs = PARENT_RUN if self.run_tiles > 1 else 1   # a run holds a slot per tile
        pool = SlotPool.allocate(size, self.window * runs, self.shm_dir, needed=self.window)
        if len(pool) == 0:
            log.warning("no shared memory for result slots: results come back pickled instead")
            pool.close()
            return None
        return pool

    def _loop(self, spec: RunSpec, feeder: Feeder, parent: ParentWriter | None, slots: SlotPool | None,
              writer: ThreadPoolExecutor | None) -> Iterator[TileOutcome]:
        flight = _Flight(self, parent, slots)
        while True:
            interrupts.check()   # a Ctrl-C that came while the engine recorded an outcome
            while flight.suspects and flight.capacity() > 0:
                flight.submit(flight.suspects.pop(0))
            if not flight.suspects:
                for new in self._runs(feeder, flight):
                    flight.submit(new)
            if not flight.computing and not flight.writing:
                if flight.suspects:
                    continue
                feeder.idle()
                return
            with interrupts.safe():
                done, _ = wait([*flight.computing, *flight.writing], timeout=self._next_deadline(flight.computing),
                               return_when=FIRST_COMPLETED)
            if not done:  # a tile ran past the timeout: its worker (with the pool) goes, as if it had died
                flight.suspects.extend(self._timed_out(spec, flight.computing))
                yield from self._exhausted(flight.suspects, slots)
                continue
            for future in done:
                yield from self._finished(spec, flight, future, writer)

    def _finished(self, spec: RunSpec, flight: "_Flight", future: Future[Any],
                  writer: ThreadPoolExecutor | None) -> Iterator[TileOutcome]:
        """The outcomes a finished future gives: a written result, a run's outcomes, or a
        computed tile handed to the parent's writer (its outcome comes when that is done)."""
        parent, slots = flight.parent, flight.slots
        if future in flight.writing:
            task = flight.writing.pop(future)
            self._release(slots, task)
            yield future.result()  # write_prepared never raises: failures are outcomes
            return
        found = flight.computing.pop(future, None)
        if found is None:  # already re-queued by a pool recovery in this batch
            return
        task = found
        try:
            result = future.result()
        except BrokenProcessPool:
            flight.suspects.extend(self._recover(spec, task, flight.computing, flight.slots))
            yield from self._exhausted(flight.suspects, slots)
            return
        if parent is None or writer is None:
            yield from result if task.run else (result,)
            return
        tiles = [(_Task(i, slot=slot), r) for i, slot, r in zip(task.run, task.slots or (None,) * len(task.run),
                                                                  result)] if task.run else [(task, result)]
        for single, computed in tiles:
            yield from self._to_writer(flight, single, computed, writer)

    def _to_writer(self, flight: "_Flight", task: _Task, computed: tuple[TileOutcome, Any],
                   writer: ThreadPoolExecutor) -> Iterator[TileOutcome]:
        """A computed tile to the parent's writer threads; its outcome comes once it is written."""
        parent, slots = flight.parent, flight.slots
        assert parent is not None
        outcome, payload = computed
        if outcome.status != WRITTEN or payload is None:
            self._release(slots, task)
            yield parent.write(outcome, None)
            return
        if isinstance(payload, np.ndarray):
            array = payload
        else:
            assert slots is not None and task.slot is not None
            array = slots.view(task.slot, *payload)
        flight.writing[writer.submit(parent.write, outcome, array)] = task

    def _runs(self, feeder: Feeder, flight: "_Flight") -> Iterator[_Task]:
        """Runs of up to `run_tiles` consecutive specs (the source ends each with RUN_END), at
        most `PARENT_RUN` and the free result slots when the parent writes, while there is room."""
        size = self.run_tiles
        if flight.parent is not None:
            size = min(size, PARENT_RUN)
        for _ in range(flight.capacity()):
            n = size if flight.slots is None else min(size, flight.slots.free)
            specs = list(feeder.take(n)) if n > 0 else []
            if not specs:
                return
            yield _Task(specs[0], tuple(specs)) if len(specs) > 1 else _Task(specs[0])

    @staticmethod
    def _singles(tasks: list[_Task]) -> list[_Task]:
        """Runs split into their tiles, each to rerun alone (which one broke the pool is unknown)."""
        return [single for t in tasks for single in ([_Task(i) for i in t.run] if t.run else [t])]

    def _recover(self, spec: RunSpec, task: _Task, computing: dict[Future[Any], _Task],
                 slots: SlotPool | None) -> list[_Task]:
        """The pool broke: note the exit codes, build a new pool, return the tiles to rerun."""
        codes = sorted({code for code in map(exit_code, self._processes()) if code not in (None, 0)})
        for run in (t for t in (task, *computing.values()) if t.run):
            self._release(slots, run)   # its tiles rerun alone, each with a slot of its own
        lost = self._singles([task, *computing.values()])
        computing.clear()
        if len(lost) == 1:  # it ran alone: the crash is its own
            lost[0].attempts += 1
        self._last_exit = codes
        log.warning("a worker process died (exit codes %s) with %d tile(s) in flight; restarting the "
                    "pool and rerunning them one at a time", codes or "unknown", len(lost))
        self._replace_pool(spec)
        return lost

    def _replace_pool(self, spec: RunSpec) -> None:
        """A new pool; the old one's surviving workers are killed, or its manager thread would
        wait for them at exit (and the run would hang there)."""
        old, self._pool = self._pool, None
        if old is not None:
            procs = worker_processes(old)
            old.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                if p.is_alive():
                    p.kill()
        self._pool = self._new_pool(spec, self.workers)

    def _exhausted(self, suspects: list[_Task], slots: SlotPool | None) -> Iterator[TileOutcome]:
        """The failed outcomes of tiles that used up their retries (taken out of `suspects`)."""
        for t in list(suspects):
            if t.attempts > self.retries:
                suspects.remove(t)
                self._release(slots, t)
                yield self._gave_up(t)

    def _next_deadline(self, computing: dict[Future[Any], _Task]) -> float | None:
        """Seconds until the first tile in flight passes the timeout (None: no timeout)."""
        if self.tile_timeout is None or not computing:
            return None
        first = min(t.started for t in computing.values())
        return max(0.0, first + self.tile_timeout - time.monotonic()) + 0.05

    def _timed_out(self, spec: RunSpec, computing: dict[Future[Any], _Task]) -> list[_Task]:
        """Kill the pool (a running task cannot be cancelled otherwise), count the overdue tiles'
        attempts, and hand back everything in flight to rerun one at a time."""
        assert self.tile_timeout is not None
        now = time.monotonic()
        lost = self._singles(list(computing.values()))
        computing.clear()
        late = [t for t in lost if now - t.started >= self.tile_timeout]
        for t in late:
            t.timed_out = True
            if len(lost) == 1:
                t.attempts += 1
        log.warning("tile(s) %s ran longer than %s s; stopping their worker and rerunning the %d tile(s) in "
                    "flight one at a time", ", ".join(str(task_index(t.index)) for t in late), self.tile_timeout,
                    len(lost))
        self._replace_pool(spec)
        return lost

    def _gave_up(self, task: _Task) -> TileOutcome:
        if task.timed_out:
            msg = (f"TimedOut: the tile ran longer than the tile timeout ({self.tile_timeout} s), alone, "
                   f"{task.attempts} time(s) (raise --tile-timeout or --retries to try more)")
            return TileOutcome(task_index(task.index), FAILED, error=msg, exc_type="TimedOut")
        codes = self._last_exit
        how = ", ".join(describe_exit(c) for c in codes) or "died"
        msg = (f"WorkerDied: the worker process {how} while processing this tile, alone, "
               f"{task.attempts} time(s) (raise --retries to try more)")
        return TileOutcome(task_index(task.index), FAILED, error=msg, exc_type="WorkerDied")

    @staticmethod
    def _release(slots: SlotPool | None, task: _Task) -> None:
        if slots is not None:
            slots.release(task.slot, *task.slots)
        task.slot, task.slots = None, ()


class _Flight:
    """What one pool run has in flight: tasks computing, results the parent is writing, and the
    tasks that were in flight when a worker died (rerun one at a time)."""

    def __init__(self, executor: ProcessExecutor, parent: ParentWriter | None, slots: SlotPool | None) -> None:
        self.executor, self.parent, self.slots = executor, parent, slots
        self.computing: dict[Future[Any], _Task] = {}
        self.writing: dict[Future[Any], _Task] = {}
        self.suspects: list[_Task] = []

    def capacity(self) -> int:
        if self.suspects:
            return 1 - len(self.computing)
        if self.slots is None:   # results pickled: those waiting for the writer count too
            return self.executor.window - len(self.computing) - len(self.writing)
        # tiles waiting for the writer hold slots, which bound them
        return min(self.executor.window - len(self.computing), self.slots.free)

    def submit(self, task: _Task) -> None:
        pool, slots = self.executor._pool, self.slots
        assert pool is not None
        future: Future[Any]
        try:
            # workers (and the forkserver) start inside submit(); Ctrl-C is held back meanwhile, so
            # the forkserver starts with it blocked (it ignores it once running) and never
            # prints a traceback from its imports
            with main_not_reimported(), sigint_held():
                if task.run and self.parent is not None:
                    if slots is not None and not task.slots:
                        task.slots = tuple(slots.acquire() for _ in task.run)
                    future = pool.submit(compute_together, task.run, task.slots or (None,) * len(task.run),
                                         slots.spec if slots is not None else None)
                elif task.run:
                    future = pool.submit(run_together, task.run)
                elif self.parent is None:
                    future = pool.submit(run_tile, task.index)
                else:
                    if slots is not None and task.slot is None:
                        task.slot = slots.acquire()
                    future = pool.submit(compute_tile, task.index, task.slot,
                                         slots.spec if slots is not None else None)
        except BrokenProcessPool as exc:  # a worker died since the last look: recover as for a result
            future = Future()
            future.set_exception(exc)
        task.started = time.monotonic()
        self.computing[future] = task
