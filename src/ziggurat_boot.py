"""Stage 0: what must happen first in a process, before ziggurat (and numpy, GDAL) are imported.

- For the `ziggurat` command (`ziggurat_command.main`): `uses_the_pool` and `start_forkserver`, so
  `ziggurat execute` with the process pool starts the pool's forkserver first and its imports
  (~0.85 s of one core) overlap the command's own instead of delaying the first tile.
- Imported first in the process pool's forkserver (a forkserver preload): Ctrl-C is ignored from
  the start (the parent decides; otherwise a Ctrl-C during the forkserver's imports printed a
  traceback), the forkserver dies with the run (Linux PR_SET_PDEATHSIG), and a worker that
  cannot start because the run is tearing its pool down exits without a traceback.

Standard library only, so it costs nothing to import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

ENV = "ZIGGURAT_RUN_PID"
#: what the pool's forkserver imports before it forks workers (this module first; the last one
#: freezes all of it out of the garbage collector's way)
FORKSERVER_PRELOAD = ["ziggurat_boot", "ziggurat.executors.poolworker", "ziggurat.kernels.warm",
                      "ziggurat.executors.forkready"]
_PR_SET_PDEATHSIG = 1
EXIT_INTERRUPTED = 130


def die_with_parent(parent: int | None = None, sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to kill this process when its parent dies; False where that is not possible.
    A parent that died before the request was made never sends the signal: when `parent` is no
    longer the parent afterwards, exit at once."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid() if parent is None else parent
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        done = libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # orphaned already
        os._exit(0)
    return done


def mark_run() -> None:
    """In the run's process, before the forkserver starts: tell it who its parent is."""
    os.environ[ENV] = str(os.getpid())


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


def pool_context() -> Any:
    """The process pool's multiprocessing context (forkserver, with its preloads)."""
    import multiprocessing

    mark_run()  # the forkserver (started from here) dies with this process
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
    return ctx


def start_forkserver() -> None:
    """The forkserver, started (not waited for): it imports the workers' modules meanwhile."""
    from multiprocessing import forkserver

    with main_not_reimported(), sigint_held():
        pool_context()
        forkserver.ensure_running()


def uses_the_pool(args: list[str], environ: Any = os.environ) -> bool:
    """Whether these `ziggurat` arguments run tiles in the process pool: `execute` with the
    default executor (or `-e processes`), not asking for help or a Dask cluster. A wrong guess
    costs an idle forkserver (or, the other way, the ~0.85 s this saves)."""
    if not args or args[0] != "execute" or "-h" in args or "--help" in args:
        return False
    executor = environ.get("ZIGGURAT_EXECUTOR") or "processes"
    for i, arg in enumerate(args):
        if arg in ("-e", "--executor") and i + 1 < len(args):
            executor = args[i + 1]
        elif arg.startswith("--executor="):
            executor = arg.split("=", 1)[1]
        elif arg.startswith("-e") and len(arg) > 2 and not arg.startswith("--"):
            executor = arg[2:]
        elif arg == "--dask-scheduler" or arg.startswith("--dask-scheduler="):
            return False
    return executor == "processes"


def _quiet_teardown_hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """In the forkserver's children: a worker that finds the pool's locks gone (the run stops
    while it starts) exits quietly; anything else is reported as usual."""
    if kind is FileNotFoundError and tb is not None:
        while tb.tb_next is not None:
            tb = tb.tb_next
        if tb.tb_frame.f_code.co_filename.endswith(os.path.join("multiprocessing", "synchronize.py")):
            return
    sys.__excepthook__(kind, value, tb)


_run = os.environ.get(ENV)
# the forkserver runs as `python -c ...`, started by the run (or orphaned if the run died meanwhile)
if _run and _run.isdigit() and sys.argv[:1] == ["-c"] and os.getppid() in (int(_run), 1):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.excepthook = _quiet_teardown_hook
    die_with_parent(int(_run))
