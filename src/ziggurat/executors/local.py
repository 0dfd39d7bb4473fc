"""In-process executors: sequential (debuggable, no concurrency) and threads.

Threads share one `TileJob`: inputs keep one dataset handle per thread, output tiles go to
distinct files, and GDAL releases the GIL while reading, warping and encoding.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from typing import Any, Callable, Iterable, Iterator

from ziggurat.executors.base import Executor
from ziggurat.grid import TileIndex
from ziggurat.executors.job import RunSpec, TileJob, write_prepared
from ziggurat.tasks import WAIT, WRITTEN, TileOutcome, task_index


def _runner(job: TileJob, spec: RunSpec, sink: Any) -> Callable[[TileIndex], TileOutcome]:
    """`job.run`, or compute + write through the parent-side sink (single-file output)."""
    if sink is None:
        return job.run
    lock = nullcontext() if getattr(sink, "threadsafe_writes", True) else threading.Lock()

    def run(index: TileIndex) -> TileOutcome:
        outcome, array = job.compute(index)
        if array is None or outcome.status != WRITTEN:
            return outcome
        with lock:
            return write_prepared(sink, spec.recipe.grid.tile(*task_index(index)), array, outcome)

    return run


class SequentialExecutor(Executor):
    name = "sequential"

    def __init__(self, workers: int | None = None) -> None:
        super().__init__(1)

    def map_unordered(self, spec: RunSpec, tasks: Iterable[Any], sink: Any = None
                      ) -> Iterator[TileOutcome]:
        job = TileJob(spec)
        run = _runner(job, spec, sink)
        try:
            for index in tasks:
                if index is WAIT:  # nothing runs in the background: the source must not wait
                    raise RuntimeError("the task source is waiting but nothing is in flight")
                yield run(index)
        finally:
            job.close()


class ThreadExecutor(Executor):
    name = "threads"

    def map_unordered(self, spec: RunSpec, tasks: Iterable[Any], sink: Any = None
                      ) -> Iterator[TileOutcome]:
        job = TileJob(spec)
        run = _runner(job, spec, sink)
        it = iter(tasks)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ziggurat")
        pending: set[Future[TileOutcome]] = set()
        exhausted = False

        def fill() -> None:
            nonlocal exhausted
            while not exhausted and len(pending) < self.window:
                index = next(it, None)
                if index is None:
                    exhausted = True
                elif index is WAIT:
                    return
                else:
                    pending.add(pool.submit(run, index))

        try:
            fill()
            while pending:
                done, pending_left = wait(pending, return_when=FIRST_COMPLETED)
                pending.clear()
                pending.update(pending_left)
                for future in done:
                    yield future.result()
                    fill()
                if not pending:
                    fill()
                    if not pending and not exhausted:
                        raise RuntimeError("the task source is waiting but nothing is in flight")
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            job.close()
