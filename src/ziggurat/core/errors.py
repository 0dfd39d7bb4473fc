"""Exception hierarchy: one root, user-facing errors also inherit the matching builtin.

    Exception
    ├── ZigguratError                  every failure ziggurat reports (`--debug` shows the causes)
    │   ├── RecipeError   (ValueError)   a recipe key: file, line, key and what was expected
    │   ├── GridError     (ValueError)   a grid definition or tile address
    │   ├── ExecutorError (ValueError)   an unknown executor or its options
    │   ├── InputError    (OSError)      an input cannot be opened or read
    │   ├── OutputError   (OSError)      an output cannot be written or read back
    │   │   ├── StorageError             object storage refused or failed a request
    │   │   └── ProvenanceError          `.ziggurat/` missing, unreadable or not reproducible
    │   ├── ServeError    (OSError)      the preview server cannot start
    │   ├── ProcessLoadError (ImportError) the process module cannot be imported or does not fit
    │   ├── ProcessError  (RuntimeError) a tile failed: zoom/row/col and the traceback
    │   └── ProcessExit   (RuntimeError) a process called sys.exit(): its tile fails
    └── Empty                          not an error: a process's "nothing here"

`Empty` lives here too but deliberately is *not* a `ZigguratError`: it is the normal
"nothing here" signal of a process, not a failure.
"""

from __future__ import annotations

from typing import Any


class ZigguratError(Exception):
    """Root of every error ziggurat raises on purpose."""


class RecipeError(ZigguratError, ValueError):
    """A recipe is invalid; the message names the file, line, key and what was expected."""


class GridError(ZigguratError, ValueError):
    """A grid, zoom level or tile index does not exist."""


class InputError(ZigguratError, OSError):
    """An input cannot be opened or read."""


class OutputError(ZigguratError, OSError):
    """An output cannot be written or conflicts with what is already on disk."""


class StorageError(OutputError):
    """Object storage refused or failed a request; the message names the object (and the tile)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason   # why, without the object (for a message naming the output instead)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.reason))


class ProvenanceError(OutputError):
    """An output's provenance (`.ziggurat/`) is missing, unreadable or cannot be reproduced."""


class ExecutorError(ZigguratError, ValueError):
    """An unknown executor or invalid executor options."""


class ServeError(ZigguratError, OSError):
    """The preview server cannot start (the address is taken, the target cannot be shown)."""


class ProcessLoadError(ZigguratError, ImportError):
    """A process module cannot be found or imported, or its signature does not fit the recipe."""


class ProcessError(ZigguratError, RuntimeError):
    """A process raised on a tile; carries the tile index and the original traceback text."""

    def __init__(self, message: str, tile: tuple[int, int, int] | None = None,
                 traceback: str | None = None, exc_type: str | None = None) -> None:
        super().__init__(message)
        self.tile = tile
        self.traceback = traceback
        self.exc_type = exc_type

    def __reduce__(self) -> tuple[Any, ...]:  # keep attributes across process boundaries
        return (type(self), (str(self), self.tile, self.traceback, self.exc_type))


class ProcessExit(ZigguratError, RuntimeError):
    """A process called sys.exit() or raised KeyboardInterrupt itself: its tile fails, the run goes on."""


class Empty(Exception):
    """Raised (or signalled by returning None) by a process when a tile has no data."""
