"""ziggurat: a tile-pyramid processing engine for geospatial rasters and vectors.

The curated Python API: everything the documentation's examples use imports from here. The run and the
checks (`execute`, `dry_run`, `verify`, `reproduce`, `status`) load on first use, so a worker
importing `ziggurat.core` does not pay for the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ziggurat.core.errors import (
    Empty,
    ExecutorError,
    GridError,
    InputError,
    OutputError,
    ProcessError,
    ProcessLoadError,
    ProvenanceError,
    RecipeError,
    StorageError,
    ZigguratError,
)
from ziggurat.core.grid import Bounds, Grid, Tile, TileIndex
from ziggurat.core.version import __version__

if TYPE_CHECKING:
    from ziggurat.audit.checks import reproduce, status, verify
    from ziggurat.audit.report import dry_run
    from ziggurat.engine.run import execute
    from ziggurat.engine.summary import RunSummary
    from ziggurat.plan.selection import Selection
    from ziggurat.recipe import Recipe, load_recipe

#: name -> the module that defines it, imported on first access
_LAZY = {"execute": "ziggurat.engine.run", "RunSummary": "ziggurat.engine.summary",
         "dry_run": "ziggurat.audit.report", "verify": "ziggurat.audit.checks",
         "reproduce": "ziggurat.audit.checks", "status": "ziggurat.audit.checks",
         "Selection": "ziggurat.plan.selection", "Recipe": "ziggurat.recipe", "load_recipe": "ziggurat.recipe"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ziggurat' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Bounds", "Empty", "ExecutorError", "Grid", "GridError", "InputError", "OutputError", "ProcessError",
    "ProcessLoadError", "ProvenanceError", "Recipe", "RecipeError", "RunSummary", "Selection", "StorageError", "Tile",
    "TileIndex", "ZigguratError", "__version__", "dry_run", "execute", "load_recipe", "reproduce", "status",
    "verify",
]
