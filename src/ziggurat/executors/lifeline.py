"""Pool processes die with the run: kill -9 of the parent leaves no forkserver and no worker.

Linux's PR_SET_PDEATHSIG asks the kernel to send a signal to a process when its parent dies.
The forkserver (a child of the run's process) sets it when this module is imported there as a
forkserver preload: it recognises itself by `ZIGGURAT_RUN_PID`, the run's PID, set before the
forkserver starts. Pool workers (children of the forkserver) set it when they start. Elsewhere
(macOS, the run's own process) importing this module does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

ENV = "ZIGGURAT_RUN_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None, sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to kill this process when its parent dies; False where that is not possible.

    A parent that died before the request was made never sends the signal: when `parent` (the
    PID this process was started by) is no longer the parent afterwards, exit at once."""
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


_run = os.environ.get(ENV)
# the forkserver runs as `python -c ...`, started by the run (or orphaned if the run died meanwhile)
if _run and _run.isdigit() and sys.argv[:1] == ["-c"] and os.getppid() in (int(_run), 1):
    die_with_parent(int(_run))
