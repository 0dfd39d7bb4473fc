"""The executor interface: run tile task specs, yield outcomes as they finish.

Executors pull task specs lazily from an iterator with a bounded window of tasks in flight,
so memory does not grow with the number of tiles and the first tile starts at once.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Generator, Iterable

from ziggurat.executors.job import RunSpec
from ziggurat.io import Output
from ziggurat.tasks import Task, TileOutcome, _Wait


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Executor(ABC):
    """Runs tiles of one run; `map_unordered` may be called once per run."""

    name: str = "executor"
    #: workers only compute and the parent writes every tile (`sink` is the output)
    writes_in_parent: bool = False
    #: consecutive tasks handed to one worker at once; above 1 the engine orders a run's tiles in
    #: 2D blocks of about that many, so a worker's tiles are neighbours (see `run_block`)
    run_tiles: int = 1

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or default_workers())

    @property
    def dashboard_link(self) -> str | None:
        """Where to watch the run (a cluster's dashboard), if the executor has such a page."""
        return None

    @property
    def window(self) -> int:
        """How many tasks may be in flight at once."""
        return 2 * self.workers

    @abstractmethod
    def map_unordered(self, spec: RunSpec, tasks: Iterable[Task | _Wait],
                      sink: Output | None = None) -> Generator[TileOutcome, None, None]:
        """Yield one outcome per task, in completion order.

        `tasks` is pulled lazily and may yield `WAIT`. Without a `sink` workers write their
        tiles; with one, workers only compute and the parent writes through
        `sink.write_prepared(tile, array)`. Closing the generator early (the engine stops on
        a failure) cancels pending tasks and lets in-flight ones finish.
        """

    def start(self) -> None:  # noqa: B027  (optional: only executors with slow-starting workers)
        """Begin starting workers now, while the engine prepares the run (the pool's forkserver
        imports its modules meanwhile); the run itself still begins in `map_unordered`."""

    def terminate(self) -> None:  # noqa: B027  (optional: most executors have nothing to stop)
        """Stop at once (Ctrl-C): in-process executors can only stop handing out work."""

    def close(self) -> None:  # noqa: B027  (optional: most executors hold nothing)
        """Release workers; safe to call twice."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_block(run_tiles: int) -> tuple[int, int] | None:
    """(rows, cols) of the tile blocks that runs of `run_tiles` cover: 32 -> 4 x 8, 8 -> 2 x 4;
    None for 1 (row by row)."""
    if run_tiles <= 1:
        return None
    rows = 1
    while rows * rows * 4 <= run_tiles:
        rows *= 2
    return rows, max(1, run_tiles // rows)
