"""Was that a Ctrl-C, or a process raising KeyboardInterrupt itself?

A real SIGINT (or the CLI's SIGTERM) is marked here by whoever handles the signal: the CLI's
handler, or `watch()` around a library run. A KeyboardInterrupt without the mark came from
user code and fails its tile instead of stopping the run. Pool workers ignore SIGINT and
executor threads never receive signals, so there every KeyboardInterrupt is the process's own.
"""

from __future__ import annotations

import functools
import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])
_signalled = threading.Event()


def mark() -> None:
    """A real interrupt arrived (call from a signal handler)."""
    _signalled.set()


def signalled() -> bool:
    """A KeyboardInterrupt here may be the user's: in the main thread, after a marked signal."""
    return threading.current_thread() is threading.main_thread() and _signalled.is_set()


def _marking_handler(signum: int, frame: Any) -> None:
    mark()
    raise KeyboardInterrupt


@contextmanager
def watch() -> Iterator[None]:
    """For the length of a run: Python's default SIGINT handler also marks the interrupt."""
    _signalled.clear()
    installed = False
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _marking_handler)
        installed = True
    try:
        yield
    finally:
        if installed and signal.getsignal(signal.SIGINT) is _marking_handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def watched(func: F) -> F:
    """`watch()` around every call of `func` (the engine's run)."""
    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        with watch():
            return func(*args, **kwargs)

    return cast(F, run)


__all__ = ["mark", "signalled", "watch", "watched"]
