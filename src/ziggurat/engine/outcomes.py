"""One path for tile outcomes: each outcome of a run (written, empty, failed, skipped, or an
overview tile blocked by a failed source) is published once, in the order the run sees them,
and everything that keeps count of a run subscribes: the slow-tile watch, the summary, stale-tile
removal (`--overwrite`), the recorder (ledger and checksums), the catalog item and progress."""

from __future__ import annotations

from typing import Protocol, Sequence

from ziggurat.core.grid import Grid
from ziggurat.core.tasks import EMPTY, FAILED, SKIPPED, WRITTEN, TileOutcome
from ziggurat.engine.summary import ProgressCallback, ProgressEvent, RunSummary
from ziggurat.io import Output
from ziggurat.io.storage.store import STATS


class Subscriber(Protocol):
    """Anything that follows a run tile by tile."""

    def outcome(self, outcome: TileOutcome) -> None: ...


class Outcomes:
    """The run's outcomes, handed to each subscriber in turn (the order is the list's)."""

    def __init__(self, subscribers: Sequence[Subscriber]) -> None:
        self.subscribers = tuple(subscribers)

    def publish(self, outcome: TileOutcome) -> None:
        for subscriber in self.subscribers:
            subscriber.outcome(outcome)


class Tally:
    """The summary's counts, what casting changed, and the object-store requests workers made."""

    def __init__(self, summary: RunSummary) -> None:
        self.summary = summary

    def outcome(self, outcome: TileOutcome) -> None:
        summary = self.summary
        if outcome.requests:
            STATS.merge(dict(outcome.requests))
        for key, n in outcome.notes:
            summary.cast[key] = summary.cast.get(key, 0) + n
        if outcome.status == WRITTEN:
            summary.written += 1
            summary.output_tiles += len(outcome.written)
        elif outcome.status == EMPTY:
            summary.empty += 1
        elif outcome.status == FAILED:
            summary.failed.append(outcome)
        elif outcome.status == SKIPPED:
            summary.skipped += 1


class StaleTiles:
    """`--overwrite`: no earlier data stays under a tile this run left empty or wrote fewer tiles of."""

    def __init__(self, output: Output, grid: Grid) -> None:
        self.output, self.grid = output, grid

    def outcome(self, outcome: TileOutcome) -> None:
        if outcome.ran and outcome.status != FAILED:
            self.output.remove_stale(self.grid.tile(*outcome.index), outcome.written)


class Progress:
    """The caller's progress callback: one event per outcome, with the count so far."""

    def __init__(self, callback: ProgressCallback, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0

    def outcome(self, outcome: TileOutcome) -> None:
        self.done += 1
        self.callback(ProgressEvent(self.done, self.total, outcome))


__all__ = ["Outcomes", "Progress", "StaleTiles", "Subscriber", "Tally"]
