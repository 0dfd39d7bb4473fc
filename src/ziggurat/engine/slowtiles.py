"""Naming tiles that run far longer than the others, while the run goes on.

A hung or pathological tile otherwise shows only as a progress bar that stops. A daemon thread
of the engine looks at the tiles handed to the executor every `CHECK_SECONDS`; one that has been
running for more than `FACTOR` x the median tile time and at least `MIN_SECONDS` is logged once,
by zoom/row/col. Running since the executor says it started (`Executor.running`: a worker given
a run of tiles starts each after the one before, so the tiles queued behind a hung one are not
named with it); where the executor cannot tell, since it was handed out, plus the time it may
have waited in the executor's window.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from typing import Callable

from ziggurat.core.grid import TileIndex
from ziggurat.core.tasks import TileOutcome

log = logging.getLogger("ziggurat.engine.run")

FACTOR = 10.0
MIN_SECONDS = 60.0
CHECK_SECONDS = 5.0


class SlowTileWatch:
    """Started by the engine with the executor's window; `out`/`back` as tiles go and return."""

    def __init__(self, workers: int, window: int,
                 running: Callable[[], dict[TileIndex, float] | None] = lambda: None) -> None:
        self._queue_factor = max(window / max(workers, 1) - 1, 0)  # medians a tile may wait to start
        self._running = running   # the executor's `running`: which tiles have started, and when
        self._lock = threading.Lock()
        self._out: dict[TileIndex, float] = {}
        self._times: deque[float] = deque(maxlen=501)
        self._named: set[TileIndex] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ziggurat-slow-tiles", daemon=True)

    def start(self) -> "SlowTileWatch":
        self._thread.start()
        return self

    def out(self, index: TileIndex) -> None:
        with self._lock:
            self._out[index] = time.monotonic()

    def outcome(self, outcome: TileOutcome) -> None:
        """A subscriber of the run's outcomes: a tile that ran is back (skipped ones never left)."""
        if outcome.ran:
            self.back(outcome.index, outcome.seconds)

    def back(self, index: TileIndex, seconds: float) -> None:
        with self._lock:
            self._out.pop(index, None)
            if seconds > 0:
                self._times.append(seconds)

    def median(self) -> float | None:
        """The median seconds of the tiles back so far (None before there are 5)."""
        with self._lock:
            return statistics.median(self._times) if len(self._times) >= 5 else None

    def check(self) -> list[TileIndex]:
        """Log and return the tiles that became slow since the last check."""
        now = time.monotonic()
        with self._lock:
            if len(self._times) < 5:
                return []
            median = statistics.median(self._times)
            started = self._running()
            if started is None:   # out = running, but for the wait in the executor's window
                limit = max(FACTOR * median + self._queue_factor * median, MIN_SECONDS)
                since = self._out
            else:                 # only tiles that have started, from when they did
                limit = max(FACTOR * median, MIN_SECONDS)
                since = {i: t for i, t in started.items() if i in self._out}
            slow = [(i, now - t) for i, t in since.items() if now - t > limit and i not in self._named]
            self._named.update(i for i, _ in slow)
        for index, seconds in slow:
            log.warning("tile %s has been running for %.0f s, %.0f x the median tile time (%.2f s)",
                        " ".join(map(str, index[:3])), seconds, seconds / median if median else 0, median)
        return [i for i, _ in slow]

    def _watch(self) -> None:
        while not self._stop.wait(CHECK_SECONDS):
            self.check()

    def stop(self) -> None:
        self._stop.set()


__all__ = ["SlowTileWatch"]
