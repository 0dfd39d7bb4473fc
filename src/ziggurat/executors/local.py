"""In-process executors: sequential (debuggable, no concurrency) and threads.

Threads share one `TileJob`: inputs keep one dataset handle per thread, output tiles go to
distinct files, and GDAL releases the GIL while reading, warping and encoding.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from itertools import islice
from typing import Iterable, Iterator

from ziggurat.executors.base import Executor
from ziggurat.grid import TileIndex
from ziggurat.job import RunSpec, TileJob, TileOutcome


class SequentialExecutor(Executor):
    name = "sequential"

    def __init__(self, workers: int | None = None) -> None:
        super().__init__(1)

    def map_unordered(self, spec: RunSpec, tasks: Iterable[TileIndex]) -> Iterator[TileOutcome]:
        job = TileJob(spec)
        try:
            for index in tasks:
                yield job.run(index)
        finally:
            job.close()


class ThreadExecutor(Executor):
    name = "threads"

    def map_unordered(self, spec: RunSpec, tasks: Iterable[TileIndex]) -> Iterator[TileOutcome]:
        job = TileJob(spec)
        it = iter(tasks)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ziggurat")
        pending: set[Future[TileOutcome]] = set()
        try:
            pending = {pool.submit(job.run, index) for index in islice(it, self.window)}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    for index in islice(it, 1):
                        pending.add(pool.submit(job.run, index))
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            job.close()
