"""numba, set up once: compiled kernels are cached on disk outside the install (site-packages may
be read-only, and a checkout must stay clean), so a pool of workers compiles each kernel once."""

from __future__ import annotations

import os
from typing import Any, Callable

_CACHE_ENV = "NUMBA_CACHE_DIR"


def cache_dir() -> str:
    """$NUMBA_CACHE_DIR, else $ZIGGURAT_STATE_DIR/numba, else the user's cache folder."""
    given = os.environ.get(_CACHE_ENV)
    if given:
        return given
    state = os.environ.get("ZIGGURAT_STATE_DIR")
    if state:
        return os.path.join(os.path.abspath(os.path.expanduser(state)), "numba")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "ziggurat", "numba")


os.environ.setdefault(_CACHE_ENV, cache_dir())

import numba  # noqa: E402  (after the cache folder is set)
from numba.core import config as _config  # noqa: E402

if not getattr(_config, "CACHE_DIR", ""):   # numba was imported before us: its config was read already
    setattr(_config, "CACHE_DIR", cache_dir())  # noqa: B010  (not in numba's type hints)


def kernel(func: Callable[..., Any]) -> Callable[..., Any]:
    """A compiled kernel: nopython, releases the GIL (threads run kernels in parallel), cached on
    disk, no fast-math (results stay bit-identical to the numpy reference). numpy's error model:
    a division by zero gives inf or NaN as in numpy instead of a test per division that raises,
    which is what lets the compiler run division and square root on several values at once."""
    return numba.njit(cache=True, nogil=True, error_model="numpy")(func)


@kernel
def sort_head(buf, n):  # type: ignore[no-untyped-def]
    """Sort `buf[:n]` in place, by insertion: the buffers are small (a window, a pixel's scenes)."""
    for i in range(1, n):
        v = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v


__all__ = ["cache_dir", "kernel", "sort_head"]
