"""The `ziggurat` command's entry point: the boot safety nets first, the CLI's imports after them.

Ctrl-C and SIGTERM are turned into a clean "Interrupted" (exit 130) even while the command is
still importing its modules. It is the last stage (it imports the CLI); `ziggurat_boot`, the
first, stays free of ziggurat imports so the pool's forkserver can preload it.
"""

from __future__ import annotations

import gc
import signal
import sys
from typing import Any

from ziggurat_boot import EXIT_INTERRUPTED, start_forkserver, uses_the_pool


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """The `ziggurat` command."""
    signal.signal(signal.SIGTERM, _stop)
    try:
        if uses_the_pool(sys.argv[1:]):
            start_forkserver()
        from ziggurat.cli import main as cli

        gc.freeze()   # the modules just imported live as long as the command: no collection walks them
        cli()
    except KeyboardInterrupt:  # while importing, or after the run handed back (it handles its own)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # exiting: a late Ctrl-C keeps rc 130
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.stderr.write("Interrupted.\n")
        sys.exit(EXIT_INTERRUPTED)
    finally:   # the command has ended (click exits with its code): a Ctrl-C while the interpreter
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # shuts down (Python puts the default
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # handlers back) must not turn it into a kill
        # every file is closed: the interpreter's last collections would only walk and free what
        # numpy, GDAL and numba created (0.3 s after a run that loaded kernels); frozen, they are
        # left to the operating system
        gc.freeze()
