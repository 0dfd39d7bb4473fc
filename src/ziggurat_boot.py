"""What must happen first in a process, before ziggurat (and numpy, GDAL) are imported.

- `main()`, the `ziggurat` command: Ctrl-C and SIGTERM are turned into a clean "Interrupted"
  (exit 130) even while the command is still importing its modules.
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
from typing import Any

ENV = "ZIGGURAT_RUN_PID"
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


def _quiet_teardown_hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """In the forkserver's children: a worker that finds the pool's locks gone (the run stops
    while it starts) exits quietly; anything else is reported as usual."""
    if kind is FileNotFoundError and tb is not None:
        while tb.tb_next is not None:
            tb = tb.tb_next
        if tb.tb_frame.f_code.co_filename.endswith(os.path.join("multiprocessing", "synchronize.py")):
            return
    sys.__excepthook__(kind, value, tb)


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """The `ziggurat` command."""
    signal.signal(signal.SIGTERM, _stop)
    try:
        from ziggurat.cli import main as cli

        cli()
    except KeyboardInterrupt:  # while importing, or after the run handed back (it handles its own)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # exiting: a late Ctrl-C keeps rc 130
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.stderr.write("Interrupted.\n")
        sys.exit(EXIT_INTERRUPTED)


_run = os.environ.get(ENV)
# the forkserver runs as `python -c ...`, started by the run (or orphaned if the run died meanwhile)
if _run and _run.isdigit() and sys.argv[:1] == ["-c"] and os.getppid() in (int(_run), 1):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.excepthook = _quiet_teardown_hook
    die_with_parent(int(_run))
