"""What flows between the stages of a run: task specs, their outcomes and the WAIT signal.

Plain, picklable values with no dependency beyond the grid: the plan produces task specs
(a `TileIndex` runs the process, an `OverviewTask` resamples output tiles), executors carry
them to workers, and every task comes back as one `TileOutcome` (failures as data, so an
exception that cannot be pickled never breaks a run).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Union

from ziggurat.core.grid import TileIndex


class Status(StrEnum):
    """A process tile's outcome; the values are what the ledger stores."""

    WRITTEN = "written"
    EMPTY = "empty"
    SKIPPED = "skipped"
    FAILED = "failed"


WRITTEN, EMPTY, SKIPPED, FAILED = Status.WRITTEN, Status.EMPTY, Status.SKIPPED, Status.FAILED

#: Where an overview tile's pixels come from: its children (lower) or its parent (higher).
LOWER, HIGHER = "lower", "higher"


class OverviewTask(NamedTuple):
    """The task spec of an overview tile; `source` is "lower" (from children) or "higher"."""

    zoom: int
    row: int
    col: int
    source: str

    def __str__(self) -> str:
        return f"(zoom {self.zoom}, row {self.row}, col {self.col}, overview from {self.source} zoom)"


#: A task spec: what an executor hands to a worker (small and picklable).
Task = Union[TileIndex, OverviewTask]


def task_index(task: Any) -> TileIndex:
    """The tile a task spec (a `TileIndex` or an `OverviewTask`) is about."""
    return TileIndex(int(task[0]), int(task[1]), int(task[2]))


class _Wait:
    """Yielded by a task source that has nothing ready until running tasks finish
    (overview tiles wait for their children): the executor stops pulling and waits."""

    def __repr__(self) -> str:
        return "WAIT"


WAIT = _Wait()


class _RunEnd:
    """Yielded by a task source between blocks of neighbouring tiles: a run handed to one worker
    ends here (the next one starts at once; nothing waits)."""

    def __repr__(self) -> str:
        return "RUN_END"


RUN_END = _RunEnd()


@dataclass(frozen=True)
class TileOutcome:
    index: TileIndex
    status: Status
    written: tuple[TileIndex, ...] = ()
    seconds: float = 0.0
    error: str | None = None          # "ExcType: message"
    exc_type: str | None = None
    traceback: str | None = None
    checksums: tuple[str, ...] = ()   # SHA-256 of each `written` tile file, same order (provenance)
    requests: tuple[tuple[str, int], ...] = ()  # object-store requests the worker made since its last outcome
    notes: tuple[tuple[str, int], ...] = ()     # what casting changed: ("clipped", n), ("nodata", n)

    @property
    def ran(self) -> bool:
        """The task ran in this run (not skipped as done before, not blocked by a failed source)."""
        return self.status != SKIPPED and self.exc_type != SOURCE_FAILED


#: `exc_type` of an overview tile not built because a tile it is made from failed
SOURCE_FAILED = "SourceFailed"


def skipped_outcome(index: TileIndex) -> TileOutcome:
    """A tile continue mode skipped: the ledger has it, made with this run's key."""
    return TileOutcome(TileIndex(*index), SKIPPED)


def blocked_outcome(index: TileIndex) -> TileOutcome:
    """An overview tile that was not built: a tile it is made from failed."""
    return TileOutcome(TileIndex(*index), FAILED, error="not built: a tile it is made from failed",
                       exc_type=SOURCE_FAILED)


def failed_outcome(index: TileIndex, exc: BaseException, start: float | None = None) -> TileOutcome:
    """A FAILED outcome carrying the exception as text, so it survives any process boundary."""
    seconds = time.perf_counter() - start if start is not None else 0.0
    return TileOutcome(TileIndex(*index), FAILED, seconds=seconds, error=f"{type(exc).__name__}: {exc}",
                       exc_type=type(exc).__name__,
                       traceback="".join(traceback.format_exception(exc)))


__all__ = ["EMPTY", "FAILED", "HIGHER", "LOWER", "SKIPPED", "SOURCE_FAILED", "WAIT", "WRITTEN", "OverviewTask",
           "Status", "Task", "TileOutcome", "blocked_outcome", "failed_outcome", "skipped_outcome", "task_index"]
