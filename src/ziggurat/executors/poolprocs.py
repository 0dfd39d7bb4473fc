"""The process pool's plumbing: starting workers cleanly, and looking at the ones that died."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from concurrent.futures.process import ProcessPoolExecutor
from typing import Any

from ziggurat.core.grid import TileIndex

# (stdlib only, and the forkserver's first import: the `ziggurat` command starts the forkserver
# from there, before it imports anything heavy)
from ziggurat_boot import main_not_reimported, pool_context, sigint_held, start_forkserver


class RunningTiles:
    """Which tile each worker is running, and since when, in shared memory the parent reads: a
    worker given a run of tiles starts each after the one before, and only the running one may
    be named as slow. One slot of (zoom, row, col, start) per worker, claimed at its start."""

    def __init__(self, ctx: mp.context.BaseContext, workers: int) -> None:
        self.workers = workers
        self._slots = ctx.Array("d", 4 * workers, lock=False)  # start 0: idle
        self._next = ctx.Value("i", 0)
        self._slot = -1   # this worker's (set in the worker by `claim`)

    def claim(self) -> None:
        """In a worker, once: take the next slot."""
        with self._next.get_lock():
            self._slot = self._next.value % self.workers
            self._next.value += 1

    def started(self, index: Any) -> None:
        """In a worker: `index` (zoom, row, col, ...) starts now."""
        if self._slot >= 0:   # idle first: a read in between sees no tile, or the old one with
            i = 4 * self._slot  # a later start (never a new tile with an old start)
            self._slots[i + 3] = 0.0
            self._slots[i:i + 3] = [float(v) for v in index[:3]]
            self._slots[i + 3] = time.monotonic()   # system-wide on Linux: the parent's clock too

    def idle(self) -> None:
        if self._slot >= 0:
            self._slots[4 * self._slot + 3] = 0.0

    def tiles(self) -> dict[TileIndex, float]:
        """In the parent: the running tiles and their start times (a slot being written is at
        worst read with its old tile, which the watch then ignores: it is no longer out)."""
        values = list(self._slots)
        return {TileIndex(int(values[i]), int(values[i + 1]), int(values[i + 2])): values[i + 3]
                for i in range(0, len(values), 4) if values[i + 3] > 0}


def worker_processes(pool: ProcessPoolExecutor | None) -> list[Any]:
    """The pool's worker processes: concurrent.futures keeps them (privately) in `_processes`,
    set to None once the pool shuts down; exit codes and a hard stop need them."""
    if pool is None:
        return []
    return list((pool._processes or {}).values())


def exit_code(process: Any) -> int | None:
    """A dead worker's exit code; the pool may not have reaped it yet when we look."""
    if process.exitcode is None and not process.is_alive():
        process.join(timeout=0.5)
    return process.exitcode


def describe_exit(code: int) -> str:
    if code == 255:  # what multiprocessing's forkserver reports when it has no status to give
        return "died without an exit status"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def worker_cache_mb(workers: int, total_mb: int | None = None) -> int | None:
    """GDAL's block cache per worker: its default share of the machine (5 % of RAM) divided among
    the workers (each process has its own cache: 768 workers with GDAL's default would ask for
    38 x the RAM), at least 64 MB: most of the float32 source blocks a run of 256 tiles at the
    source's resolution reads with their neighbours (~80 MB; along the curve, the least recently
    used are those the run has left behind). None when GDAL_CACHEMAX is set: the user's value wins."""
    if os.environ.get("GDAL_CACHEMAX"):
        return None
    if total_mb is None:
        try:
            total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 ** 20
        except (ValueError, OSError, AttributeError):
            return None
    return max(64, int(total_mb * 0.05 / max(1, workers)))


__all__ = ["RunningTiles", "describe_exit", "exit_code", "main_not_reimported", "pool_context", "sigint_held",
           "start_forkserver", "worker_cache_mb", "worker_processes"]
