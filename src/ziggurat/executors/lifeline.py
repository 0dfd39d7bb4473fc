"""Pool processes die with the run: see `ziggurat_boot` (imported first in the forkserver, so it
runs before ziggurat's own imports); this module gives the rest of ziggurat its functions."""

from __future__ import annotations

from ziggurat_boot import ENV, die_with_parent, mark_run

__all__ = ["ENV", "die_with_parent", "mark_run"]
