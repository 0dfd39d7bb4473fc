"""Freed memory stays in the heap of a process that runs tiles.

A tile's arrays (a 258 x 258 float64 temporary is 0.5 MB) are above glibc's mmap threshold, or
land at the top of the heap that glibc trims after every free: each tile then faults its pages
in afresh (~900 minor page faults per hillshade tile, a quarter of its CPU time as system time
on these machines). Raising the thresholds lets the next tile reuse the memory the previous one
freed. Peak RSS does not change (the heap never holds more than the largest tile needed at
once); the memory is handed back when the process ends, not between tiles.

Not for dask workers: distributed manages their memory (it sets MALLOC_TRIM_THRESHOLD_ low on
purpose, so a worker's memory use can be watched and spilled).
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2 ** 20   # arrays above this (a whole 4096 x 4096 float64 band) still map
TRIM_THRESHOLD = 128 * 2 ** 20  # free memory at the heap's top beyond this goes back to the OS

_done = False


def keep_freed_memory() -> bool:
    """Set the thresholds once per process (glibc only; elsewhere nothing changes). True if set."""
    global _done
    if _done:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and \
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError) as exc:   # no mallopt in this C library
        log.debug("mallopt unavailable: %s", exc)
        return False
    _done = ok
    return ok


__all__ = ["keep_freed_memory"]
