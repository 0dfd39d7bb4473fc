"""Dask distributed executor: tiles run on the workers of a Dask cluster, a run of neighbours per task.

- Without a scheduler address a `distributed.LocalCluster` of single-threaded worker
  processes is started (and closed at the end); with one, or with a `distributed.Client`
  the caller owns, the run uses that cluster and leaves it running.
- The run's `RunSpec` reaches every worker once, through a worker plugin (workers that join
  later, e.g. restarted by their nanny or added by an autoscaler, get it too), carrying the
  process module's source: workers need not see the client's folder. Each worker builds its
  `TileJob` once (`daskworker`). Inputs and the output must be where every worker can reach
  them: object storage, or the same path on a shared file system.
- One Dask task is a run of neighbouring tiles along the curve (`plan.order.RunSizer`: guided
  sizes, at most `run_tiles`, at most `RUN_SECONDS` of work): the scheduler's and the client's
  cost per task (about a millisecond each) is shared by the run's tiles, and each task returns
  the run's small outcomes. About 2 x the cluster's threads tasks are in flight, never one graph
  of all tiles. Keys are unique per run, first tile, length and attempt.
- A worker that dies is Dask's business first: it reschedules the tasks that were on it. When
  a task ends in `KilledWorker` (after `distributed.scheduler.allowed-failures`), its tiles may
  be innocent bystanders, so each is resubmitted alone, up to `retries` times, before it is
  reported as a FAILED outcome of type "WorkerDied".
- With a parent-side sink (single-file output) or a tile timeout, tasks are single tiles: arrays
  come back to the client, which writes them; a timeout is kept per tile.
"""

from __future__ import annotations

import logging
import time
import traceback as tb
import uuid
from dataclasses import dataclass
from typing import Any, Generator, Iterable, Iterator

import distributed

from ziggurat.core import interrupts
from ziggurat.core.errors import ExecutorError
from ziggurat.core.grid import TileIndex
from ziggurat.core.tasks import FAILED, TileOutcome, task_index
from ziggurat.executors.base import Executor
from ziggurat.executors.daskworker import (
    KEY_PREFIX,
    TIMEOUT_EVENT,
    IgnoreInterrupt,
    RunPlugin,
    compute_tile,
    executing_keys,
    run_tile,
    run_together,
)
from ziggurat.executors.feeder import Feeder, ParentWriter
from ziggurat.executors.job import RunSpec
from ziggurat.io import Output

log = logging.getLogger(__name__)

_WINDOW_REFRESH = 2.0   # seconds between looks at an external cluster's size (it may autoscale)


# -- client side ---------------------------------------------------------------------------
@dataclass
class _Task:
    spec: Any                  # as the source gave it: a TileIndex or an OverviewTask, opaque here
    attempt: int = 0           # resubmissions after KilledWorker
    run: tuple[Any, ...] = ()  # a run of neighbours handed out as one task (spec is the first)

    def singles(self) -> list["_Task"]:
        """Its tiles, each to run alone (which one killed the workers is unknown)."""
        return [_Task(s, self.attempt + 1) for s in self.run] if self.run else [_Task(self.spec, self.attempt + 1)]

    @property
    def index(self) -> TileIndex:
        return task_index(self.spec)


class DaskExecutor(Executor):
    """Runs tiles on a Dask cluster.

    `DaskExecutor(workers)` starts a LocalCluster of `workers` single-threaded processes;
    `DaskExecutor(scheduler="tcp://host:8786")` connects to a running cluster;
    `DaskExecutor(client=client)` uses a `distributed.Client` the caller owns (never closed
    here, so the executor can serve several runs). Connecting happens at construction, so
    `dashboard_link` and `workers` are known before the run starts. Pass the object to
    `engine.execute(..., executor=...)`, which closes it at the end (a LocalCluster or client
    it created goes away with it). `cluster_options` go to `distributed.LocalCluster`.
    """

    name = "dask"
    defers_interrupts = True
    #: the most tiles one task carries (see the module docstring); 1 with a tile timeout
    run_tiles = 256

    def __init__(self, workers: int | None = None, *, scheduler: str | None = None,
                 client: distributed.Client | None = None, retries: int = 2, tile_timeout: float | None = None,
                 dashboard_address: str | None = ":8787", **cluster_options: Any) -> None:
        super().__init__(workers)
        if scheduler is not None and client is not None:
            raise ExecutorError("give either a Dask scheduler address or a client, not both")
        self.retries = retries
        if tile_timeout is not None:
            self.run_tiles = 1
        #: a tile running longer takes its worker process with it (rerun elsewhere by the
        #: scheduler), then is reported as TimedOut
        self.tile_timeout = tile_timeout
        self._cluster: distributed.LocalCluster | None = None
        self._owns_client = client is None
        self._pending: dict[distributed.Future, _Task] = {}
        self._terminated = False
        self._closed = False
        self._threads_seen = 0.0
        if client is not None:
            self.client = client
        elif scheduler is not None:
            try:
                self.client = distributed.Client(scheduler, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ExecutorError(f"cannot connect to the Dask scheduler at {scheduler}: {exc}") from exc
        else:
            # our own cluster's processes share the terminal: tile errors come back as outcomes, and
            # a worker busy with a run when Ctrl-C shuts the cluster down must not print its
            # failed heartbeat's traceback (pass silence_logs=logging.WARNING to see them)
            cluster_options.setdefault("silence_logs", logging.CRITICAL)
            self._cluster = distributed.LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True,
                dashboard_address=dashboard_address, **cluster_options)
            self.client = distributed.Client(self._cluster, set_as_default=False)
            self.client.register_plugin(IgnoreInterrupt())
        if self._cluster is None:
            self.workers = self._cluster_threads() or self.workers

    @property
    def dashboard_link(self) -> str | None:
        """The cluster's dashboard URL, or None without one (it needs bokeh)."""
        try:
            info = self.client.scheduler_info(n_workers=0)
        except OSError:
            return None
        if "dashboard" not in info.get("services", {}):
            return None
        return self.client.dashboard_link or None

    @property
    def window(self) -> int:
        """2 x the cluster's threads; an external cluster is looked at again now and then."""
        if self._cluster is None and time.monotonic() - self._threads_seen > _WINDOW_REFRESH:
            self.workers = self._cluster_threads() or self.workers
        return 2 * self.workers

    def _cluster_threads(self) -> int:
        self._threads_seen = time.monotonic()
        try:
            return int(self.client.scheduler_info(n_workers=0).get("total_threads", 0))
        except OSError:
            return 0

    # -- lifecycle ---------------------------------------------------------------------------
    def terminate(self) -> None:
        """Ctrl-C: cancel this run's tasks on the cluster; a LocalCluster of ours is shut down."""
        self._terminated = True
        futures = list(self._pending)
        self._pending = {}
        if futures:
            try:
                self.client.cancel(futures, force=True)
            except Exception as exc:  # the scheduler may already be gone
                log.debug("cancelling tasks failed: %s", exc)
        if self._cluster is not None:
            self.close()  # kills the worker processes, so no tile is written after we return

    def close(self) -> None:
        """Close the client and LocalCluster this executor created; a caller's client stays open."""
        if self._closed or not self._owns_client:
            return
        self._closed = True
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    # -- running -----------------------------------------------------------------------------
    def map_unordered(self, spec: RunSpec, tasks: Iterable[Any],
                      sink: Output | None = None) -> Generator[TileOutcome, None, None]:
        if self._closed:
            raise ExecutorError("this Dask executor is closed")
        run_id = uuid.uuid4().hex[:12]
        plugin = RunPlugin(run_id, spec.shipped())
        try:
            self.client.register_plugin(plugin)
        except Exception as exc:
            raise ExecutorError(f"cannot set up the run on the Dask workers ({type(exc).__name__}: "
                                f"{exc}); ziggurat and the process's dependencies must be installed "
                                "on every worker") from exc
        self._terminated = False
        self._pending = {}
        try:
            parent = None if sink is None else ParentWriter(sink, spec.recipe.grid)
            yield from self._loop(run_id, Feeder(tasks), parent)
        except GeneratorExit:
            if not self._terminated:
                self._drain()  # a failure elsewhere: cancel what waits, let running tiles finish
            raise
        except BaseException:
            self.terminate()  # Ctrl-C or an error inside the loop: stop now
            raise
        finally:
            self._pending = {}
            if not self._closed:
                try:
                    self.client.unregister_worker_plugin(plugin.name)
                except Exception as exc:
                    log.debug("removing the worker plugin failed: %s", exc)

    def _loop(self, run_id: str, feeder: Feeder, parent: ParentWriter | None) -> Iterator[TileOutcome]:
        pending = self._pending
        # results are fetched by the client's event loop thread as tasks finish, not one blocking
        # round trip per task here; errors come back as values
        completed = distributed.as_completed(loop=self.client.loop, with_results=True, raise_errors=False)
        suspects: list[_Task] = []   # their task ended in KilledWorker: each tile reruns alone
        size = self.run_tiles if parent is None else 1

        def submit(task: _Task) -> None:
            z, r, c = task.index
            key = f"{KEY_PREFIX}-{run_id}-{z}-{r}-{c}-{len(task.run) or 1}-{task.attempt}"
            future: distributed.Future
            if task.run:
                future = self.client.submit(run_together, run_id, task.run, pure=False, key=key)
            elif parent is not None:
                future = self.client.submit(compute_tile, run_id, task.spec, pure=False, key=key)
            else:
                extra = () if self.tile_timeout is None else (self.tile_timeout,)
                future = self.client.submit(run_tile, run_id, task.spec, *extra, pure=False, key=key)
            pending[future] = task
            completed.add(future)

        def fill() -> None:
            if suspects or any(t.attempt for t in pending.values()):  # a suspect runs alone
                if suspects and not pending:
                    submit(suspects.pop(0))
                return
            for _ in range(self.window - len(pending)):
                specs = tuple(feeder.take(size))   # a run of neighbours: the source ends it
                if not specs:
                    return
                submit(_Task(specs[0], run=specs) if len(specs) > 1 else _Task(specs[0]))

        fill()
        while pending:
            interrupts.check()   # a Ctrl-C that came while the engine recorded an outcome
            with interrupts.safe():
                future, result = next(completed)
            task = pending.pop(future)
            outcomes = self._outcomes(future, result, task, parent)
            future.release()
            if outcomes is None:
                suspects.extend(task.singles())
            else:
                yield from outcomes
            fill()
        feeder.idle()

    def _outcomes(self, future: distributed.Future, result: Any, task: _Task,
                  parent: ParentWriter | None) -> list[TileOutcome] | None:
        """The outcomes of a finished task (one per tile of its run); None to rerun its tiles alone."""
        if task.run and future.status == "finished":
            return list(result)
        if task.run and future.status != "finished":
            outcome = self._outcome(future, result, task, parent)
            if outcome is None:
                return None
            return [TileOutcome(task_index(spec), outcome.status, error=outcome.error, exc_type=outcome.exc_type,
                                traceback=outcome.traceback) for spec in task.run]
        outcome = self._outcome(future, result, task, parent)
        return None if outcome is None else [outcome]

    def _outcome(self, future: distributed.Future, result: Any, task: _Task,
                 parent: ParentWriter | None) -> TileOutcome | None:
        """The tile's outcome from a finished future; None to resubmit it."""
        if future.status == "finished":
            return result if parent is None else parent.write(*result)  # single file: the client writes
        if future.status == "cancelled":
            return TileOutcome(task.index, FAILED, exc_type="CancelledError",
                               error="CancelledError: the task was cancelled on the Dask cluster "
                                     "(scheduler restarted, or lost connection)")
        try:
            exc = result if isinstance(result, BaseException) else future.exception()
            trace = "".join(tb.format_exception(type(exc), exc, future.traceback()))
        except Exception as err:  # the error itself did not survive the trip
            exc, trace = err, tb.format_exc()
        if isinstance(exc, distributed.KilledWorker):
            if self.tile_timeout is not None and self._timed_out(str(future.key)):
                return TileOutcome(task.index, FAILED, exc_type="TimedOut", traceback=trace,
                                   error=f"TimedOut: the tile ran longer than the tile timeout ({self.tile_timeout} s) "
                                         f"on {exc.allowed_failures + 1} Dask worker(s); each was restarted")
            if task.run and self.retries:
                log.warning("a run of %d tiles from %s: Dask workers kept dying while running it; rerunning "
                            "its tiles one at a time", len(task.run), task.index)
                return None
            if task.attempt < self.retries:
                log.warning("tile %s: Dask workers kept dying while running it; rerunning it alone "
                            "(%d/%d)", task.index, task.attempt + 1, self.retries)
                return None
            return TileOutcome(task.index, FAILED, exc_type="WorkerDied", traceback=trace,
                               error=f"WorkerDied: {exc.allowed_failures + 1} Dask worker(s) died while "
                                     f"running this tile, {task.attempt + 1} time(s) submitted "
                                     "(see distributed.scheduler.allowed-failures and --retries)")
        return TileOutcome(task.index, FAILED, error=f"{type(exc).__name__}: {exc}",
                           exc_type=type(exc).__name__, traceback=trace)

    def _timed_out(self, key: str) -> bool:
        try:
            events = self.client.get_events(TIMEOUT_EVENT)
        except Exception as exc:
            log.debug("cannot read the timeout events: %s", exc)
            return False
        return any(isinstance(msg, dict) and msg.get("key") == key for _, msg in events)

    def _drain(self) -> None:
        """Cancel queued tasks of this run; wait for the ones workers are running."""
        futures = {f.key: f for f in self._pending}
        if not futures:
            return
        try:
            running = self.client.run(executing_keys, list(futures))
            keep = {k for keys in running.values() for k in keys}
        except Exception as exc:
            log.debug("asking the workers what they run failed: %s", exc)
            keep = set()
        cancel = [f for k, f in futures.items() if k not in keep]
        if cancel:
            self.client.cancel(cancel)
        for _ in distributed.as_completed([futures[k] for k in keep], loop=self.client.loop):
            pass  # (distributed.wait would need a default client)
