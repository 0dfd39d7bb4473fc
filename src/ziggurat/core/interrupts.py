"""Was that a Ctrl-C, or a process raising KeyboardInterrupt itself?

A real SIGINT (or the CLI's SIGTERM) is marked here by whoever handles the signal: the CLI's
handler, or `watch()` around a library run. A KeyboardInterrupt without the mark came from
user code and fails its tile instead of stopping the run. Pool workers ignore SIGINT and
executor threads never receive signals, so there every KeyboardInterrupt is the process's own.

A KeyboardInterrupt raised by a handler lands wherever the main thread is, and where that is
between a lock's acquire and its release (logging's module lock, say) the lock stays taken and
every thread that wants it waits forever: a run stopped by Ctrl-C hung. So while the main thread
runs a pool's loop (`deferred()`), a handler only marks the interrupt, and the loop raises it at
its safe points (`check()`, and inside `safe()`: the wait for the next outcome).
"""

from __future__ import annotations

import functools
import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])
_signalled = threading.Event()
_pending = threading.Event()    # marked while deferred, not raised yet
_state = {"deferred": 0, "safe": False}   # the main thread's (signal handlers run there)


def mark() -> None:
    """A real interrupt arrived (call from a signal handler)."""
    _signalled.set()


def signalled() -> bool:
    """A KeyboardInterrupt here may be the user's: in the main thread, after a marked signal."""
    return threading.current_thread() is threading.main_thread() and _signalled.is_set()


def stop() -> None:
    """From a signal handler, after `mark()`: raise KeyboardInterrupt now, or, inside `deferred()`
    and outside `safe()`, at the loop's next safe point."""
    if _state["deferred"] and not _state["safe"]:
        _pending.set()
        return
    raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """The main thread runs a loop that calls `check()` and waits in `safe()`."""
    _state["deferred"] += 1
    try:
        yield
    finally:
        _state["deferred"] -= 1
        if not _state["deferred"]:
            _pending.clear()


def check() -> None:
    """A safe point: raise the interrupt a handler left pending."""
    if _pending.is_set():
        _pending.clear()
        raise KeyboardInterrupt


@contextmanager
def safe() -> Iterator[None]:
    """A blocking wait in which a handler may raise at once (nothing is half done there)."""
    check()
    _state["safe"] = True
    try:
        yield
    finally:
        _state["safe"] = False


def _marking_handler(signum: int, frame: Any) -> None:
    mark()
    stop()


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


__all__ = ["check", "deferred", "mark", "safe", "signalled", "stop", "watch", "watched"]
