"""In-process executors: sequential (debuggable, no concurrency) and threads.

Threads share one `TileJob`: inputs keep one dataset handle per thread, output tiles go to
distinct files, and GDAL releases the GIL while reading, warping and encoding.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Generator, Iterable

from ziggurat.core import interrupts
from ziggurat.core.grid import TileIndex
from ziggurat.core.tasks import TileOutcome, task_index
from ziggurat.executors.base import Executor
from ziggurat.executors.feeder import Feeder, ParentWriter
from ziggurat.executors.heap import keep_freed_memory
from ziggurat.executors.job import RunSpec, TileJob
from ziggurat.io import Output


def _runner(job: TileJob, spec: RunSpec, sink: Output | None) -> Callable[[Any], TileOutcome]:
    """`job.run`, or compute + write through the parent-side sink (single-file output)."""
    if sink is None:
        return job.run
    writer = ParentWriter(sink, spec.recipe.grid)

    def run(task: Any) -> TileOutcome:
        return writer.write(*job.compute(task))

    return run


class SequentialExecutor(Executor):
    name = "sequential"

    def __init__(self, workers: int | None = None) -> None:
        super().__init__(1)

    def map_unordered(self, spec: RunSpec, tasks: Iterable[Any], sink: Output | None = None
                      ) -> Generator[TileOutcome, None, None]:
        keep_freed_memory()   # tiles reuse the memory earlier tiles freed (see heap.py)
        job = TileJob(spec)
        run = _runner(job, spec, sink)
        feeder = Feeder(tasks)
        try:
            while True:
                batch = list(feeder.take(1))
                if not batch:  # nothing runs in the background: the source must not wait
                    feeder.idle()
                    return
                yield run(batch[0])
        finally:
            job.close()


class ThreadExecutor(Executor):
    name = "threads"
    #: each thread has its own dataset handles, and so its own cached source blocks: a thread gets
    #: runs of neighbouring tiles, like a pool worker
    run_tiles = 256

    def __init__(self, workers: int | None = None) -> None:
        super().__init__(workers)
        self._started: dict[int, tuple[TileIndex, float]] = {}   # thread -> its tile, since when

    def running(self) -> dict[TileIndex, float]:
        return dict(list(self._started.values()))   # a snapshot: other threads change it

    def map_unordered(self, spec: RunSpec, tasks: Iterable[Any], sink: Output | None = None
                      ) -> Generator[TileOutcome, None, None]:
        keep_freed_memory()   # tiles reuse the memory earlier tiles freed (see heap.py)
        job = TileJob(spec)
        run = _runner(job, spec, sink)
        feeder = Feeder(tasks)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ziggurat")
        pending: set[Future[list[TileOutcome]]] = set()

        def run_all(tasks: list[Any]) -> list[TileOutcome]:
            me, out = threading.get_ident(), []
            try:
                for task in tasks:
                    self._started[me] = (task_index(task), time.monotonic())
                    out.append(run(task))
            finally:
                self._started.pop(me, None)
            return out

        def fill() -> None:
            while len(pending) < self.window:
                tasks = list(feeder.take(self.run_tiles))   # a run of neighbours (the source ends it)
                if not tasks:
                    return
                pending.add(pool.submit(run_all, tasks))

        try:
            fill()
            while pending:
                done, still = wait(pending, return_when=FIRST_COMPLETED)
                pending.clear()
                pending.update(still)
                for future in done:
                    yield from future.result()
                    fill()
                if not pending:
                    fill()
            feeder.idle()
        finally:
            for future in pending:
                future.cancel()
            if interrupts.signalled():
                # Ctrl-C: a tile that never returns must not hold the run (a thread cannot be
                # stopped); its inputs stay open for it, the CLI exits without joining it
                pool.shutdown(wait=False, cancel_futures=True)
            else:
                pool.shutdown(wait=True, cancel_futures=True)
                job.close()
