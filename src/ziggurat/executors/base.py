"""The executor interface: run tile task specs, yield outcomes as they finish.

Executors pull task specs lazily from an iterator with a bounded window of tasks in flight,
so memory does not grow with the number of tiles and the first tile starts at once.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Generator, Iterable

from ziggurat.core.grid import TileIndex
from ziggurat.core.tasks import Task, TileOutcome, _Wait
from ziggurat.executors.job import RunSpec
from ziggurat.io import Output


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
    #: its loop runs in the main thread with `core.interrupts.deferred()` semantics: it calls
    #: `interrupts.check()` and waits in `interrupts.safe()` (tiles never run in the main thread)
    defers_interrupts: bool = False
    #: the most consecutive tasks handed to one worker at once; above 1 the engine orders the
    #: plan's tiles along a space-filling curve and cuts it into runs of neighbours of at most
    #: that many (`plan.order.RunSizer`), ending each with `RUN_END`
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

    def running(self) -> dict[TileIndex, float] | None:
        """The tiles running right now, each with when it started (`time.monotonic()`), where the
        executor can tell; None where it cannot (a tile then counts as running from when it was
        handed out). Workers given runs of tiles start each only when the one before is done."""
        return None

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

