"""Stage 11, the command line (click): thin commands over the library (see ziggurat.cli.commands)."""

from ziggurat.cli import commands as _commands  # noqa: F401  (registers the commands on `main`)
from ziggurat.cli.app import EXIT_ERROR, EXIT_INTERRUPTED, main

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "main"]
