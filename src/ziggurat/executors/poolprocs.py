"""The process pool's plumbing: starting workers cleanly, and looking at the ones that died."""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import threading
from concurrent.futures.process import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import forkserver
from typing import Any, Iterator

import ziggurat_boot  # stdlib only: also the forkserver's first import


@contextmanager
def main_not_reimported() -> Iterator[None]:
    """Start workers without re-importing the caller's `__main__`.

    forkserver/spawn children normally re-run the main script so that functions defined
    there can be unpickled; ours live in ziggurat modules, and re-running a user's script
    that calls `execute()` at top level (no `if __name__ == "__main__"` guard) would make
    every worker crash at start.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


@contextmanager
def sigint_held() -> Iterator[None]:
    """Block SIGINT in this thread for the block; a Ctrl-C that came meanwhile arrives after it."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def pool_context() -> mp.context.BaseContext:
    ziggurat_boot.mark_run()  # the forkserver (started from here) dies with this process
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["ziggurat_boot", "ziggurat.executors.job"])
    return ctx


def start_forkserver() -> None:
    """The forkserver, started (not waited for): it imports the workers' modules meanwhile."""
    with main_not_reimported(), sigint_held():
        pool_context()
        forkserver.ensure_running()


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


__all__ = ["describe_exit", "exit_code", "main_not_reimported", "pool_context", "sigint_held", "worker_processes"]
