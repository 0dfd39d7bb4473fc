"""The Dask executor's worker side: what runs inside `dask worker` processes, module state built once.

The run's `RunSpec` (with the process module's source, so workers need not see the client's
files) reaches every worker through a worker plugin, also workers that join mid-run; each worker
builds its `TileJob` once. Tasks carry a run id and task specs (one tile, or a run of
neighbours) and return small `TileOutcome` records; errors come back as data.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import distributed
from distributed.diagnostics.plugin import WorkerPlugin

from ziggurat.core.errors import ExecutorError
from ziggurat.core.tasks import TileOutcome, failed_outcome, task_index
from ziggurat.executors.job import RunSpec, TileJob

KEY_PREFIX = "ziggurat"
TIMEOUT_EVENT = f"{KEY_PREFIX}-timeout"

_specs: dict[str, RunSpec] = {}
_jobs: dict[str, TileJob] = {}
_jobs_lock = threading.Lock()


class RunPlugin(WorkerPlugin):
    """Hands one run's spec to every worker, including workers that join mid-run."""

    def __init__(self, run_id: str, spec: RunSpec) -> None:
        self.run_id = run_id
        self.spec = spec
        self.name = f"{KEY_PREFIX}-{run_id}"

    def setup(self, worker: Any) -> None:
        _specs[self.run_id] = self.spec

    def teardown(self, worker: Any) -> None:
        _specs.pop(self.run_id, None)
        with _jobs_lock:
            job = _jobs.pop(self.run_id, None)
        if job is not None:
            job.close()


class IgnoreInterrupt(WorkerPlugin):
    """Workers of our own LocalCluster share the terminal's process group: Ctrl-C is the
    client's business (it cancels and shuts the cluster down), not a traceback per worker."""

    name = f"{KEY_PREFIX}-ignore-sigint"

    def setup(self, worker: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _job(run_id: str) -> TileJob:
    """This worker's `TileJob` for the run, built on first use (a worker may have many threads)."""
    job = _jobs.get(run_id)
    if job is None:
        with _jobs_lock:
            job = _jobs.get(run_id)
            if job is None:
                spec = _specs.get(run_id)
                if spec is None:
                    raise ExecutorError(f"this worker has no spec for run {run_id} (the ziggurat "
                                        "worker plugin was not set up here)")
                job = _jobs[run_id] = TileJob(spec)
    return job


def _time_out(worker: Any, key: str, seconds: float) -> None:
    """A tile ran past the tile timeout: a thread cannot be stopped, so this worker process
    goes (its nanny starts a new one; the scheduler reruns the task elsewhere). The event tells
    the client that the deaths were timeouts, not crashes."""
    try:
        worker.log_event(TIMEOUT_EVENT, {"key": key, "seconds": seconds})
        time.sleep(0.5)  # the event travels on the worker's batched stream
    finally:
        os.kill(os.getpid(), signal.SIGKILL)


def run_tile(run_id: str, task: Any, timeout: float | None = None) -> TileOutcome:
    """Run and write one tile (a `TileIndex` or an `OverviewTask`) on a worker; never raises:
    errors come back as data, so exceptions that cannot be pickled are no problem."""
    start = time.perf_counter()
    try:
        job = _job(run_id)
    except Exception as exc:  # e.g. an input path this worker cannot see
        return failed_outcome(task_index(task), exc, start)
    if timeout is None:
        return job.run(task)
    worker = distributed.get_worker()
    watchdog = threading.Timer(timeout, _time_out, (worker, worker.get_current_task(), timeout))
    watchdog.daemon = True
    watchdog.start()
    try:
        return job.run(task)
    finally:
        watchdog.cancel()


def run_together(run_id: str, tasks: tuple[Any, ...]) -> list[TileOutcome]:
    """A run of neighbouring tiles as one Dask task: one scheduler round trip for all of them, and
    the source blocks they share decoded once. One small outcome per tile comes back."""
    return [run_tile(run_id, task) for task in tasks]


def compute_tile(run_id: str, task: Any) -> tuple[TileOutcome, Any]:
    """Run one tile without writing: the prepared array goes back to the client's sink."""
    start = time.perf_counter()
    try:
        job = _job(run_id)
    except Exception as exc:
        return failed_outcome(task_index(task), exc, start), None
    return job.compute(task)


def executing_keys(keys: list[str], dask_worker: Any = None) -> list[str]:
    """Which of `keys` this worker is running right now (not merely holding in its queue)."""
    tasks = dask_worker.state.tasks
    return [k for k in keys if k in tasks and tasks[k].state in ("executing", "long-running")]


__all__ = ["KEY_PREFIX", "TIMEOUT_EVENT", "IgnoreInterrupt", "RunPlugin", "compute_tile", "executing_keys",
           "run_tile", "run_together"]
