"""What every executor shares: pulling task specs a window at a time, and writing in the parent.

The run's task source is lazy and may yield `WAIT` (overview tiles whose sources are still
running); `Feeder` turns it into "up to N tasks now", so executors only decide how many tasks
may be in flight. `ParentWriter` is the parent-side half of a tile for outputs the parent
writes (a single file, or `--write-in parent`): workers return prepared arrays, it writes them.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any, Iterable, Iterator

import numpy as np

from ziggurat.core.grid import Grid
from ziggurat.core.tasks import EMPTY, RUN_END, WAIT, WRITTEN, TileOutcome
from ziggurat.executors.job import write_prepared
from ziggurat.io import Output

_END = object()


class Feeder:
    """Pulls task specs lazily from a run's task source."""

    def __init__(self, tasks: Iterable[Any]) -> None:
        self._it = iter(tasks)
        self.exhausted = False

    def take(self, room: int) -> Iterator[Any]:
        """Up to `room` task specs; fewer when the source is done, has nothing ready (WAIT) or a
        block of neighbours ends (RUN_END, after at least one task)."""
        taken = 0
        while room > 0 and not self.exhausted:
            task = next(self._it, _END)
            if task is _END:
                self.exhausted = True
                return
            if task is WAIT:
                return
            if task is RUN_END:
                if taken:
                    return
                continue
            room -= 1
            taken += 1
            yield task

    def idle(self) -> None:
        """Nothing is in flight: fine when the source is done; a source waiting for nothing is a bug."""
        if not self.exhausted:
            raise RuntimeError("the task source is waiting for results but nothing is in flight")


class ParentWriter:
    """Writes the prepared arrays workers return into an output, serialised when it must be."""

    def __init__(self, sink: Output, grid: Grid) -> None:
        self.sink, self.grid = sink, grid
        self.threadsafe = sink.capabilities.threadsafe_writes
        self._lock: AbstractContextManager[Any] = nullcontext() if self.threadsafe else threading.Lock()

    def threads(self, workers: int) -> int:
        """How many writer threads are useful."""
        return workers if self.threadsafe else 1

    def write(self, outcome: TileOutcome, array: np.ndarray | None) -> TileOutcome:
        """The final outcome of a computed tile; never raises (failures are outcomes)."""
        if outcome.status != WRITTEN or array is None:
            return replace(outcome, status=EMPTY) if outcome.status == WRITTEN else outcome
        with self._lock:
            return write_prepared(self.sink, self.grid.tile(*outcome.index), array, outcome)


__all__ = ["Feeder", "ParentWriter"]
