"""The `mapchete` names a process may import, for when mapchete is not installed.

Process files say ``from mapchete import RasterInput, Empty`` or ``from mapchete.errors import
MapcheteNodataTile``; only those names (mapped onto ziggurat's types) are provided, as modules
marked `__ziggurat_shim__`. When the real mapchete is importable it is left alone: its
`MapcheteNodataTile` then counts as Empty (see `ziggurat.process.load`).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

from ziggurat.core.errors import Empty
from ziggurat.process.compat import types
from ziggurat.process.compat.mp import MapcheteProcess

_ALL: dict[str, dict[str, Any]] = {
    "mapchete": {"Empty": Empty, "MapcheteNodataTile": Empty, "MapcheteProcess": MapcheteProcess,
                 "RasterInput": types.RasterInput, "VectorInput": types.VectorInput,
                 "RasterInputGroup": list, "VectorInputGroup": list, **types.SPECIAL_TYPES},
    "mapchete.errors": {"Empty": Empty, "MapcheteNodataTile": Empty},
    "mapchete.formats": {},
    "mapchete.formats.protocols": {"RasterInput": types.RasterInput, "VectorInput": types.VectorInput,
                                   "RasterInputGroup": list, "VectorInputGroup": list},
    "mapchete.process_func_special_types": dict(types.SPECIAL_TYPES),
    "mapchete.processing": {"MapcheteProcess": MapcheteProcess},
    "mapchete.processing.mp": {"MapcheteProcess": MapcheteProcess},
}


def real_mapchete() -> bool:
    """Whether the real mapchete can be imported (then no shim is installed)."""
    module = sys.modules.get("mapchete")
    if module is not None:
        return not module.__dict__.get("__ziggurat_shim__", False)
    try:
        return importlib.util.find_spec("mapchete") is not None
    except (ImportError, ValueError):
        return False


def install(force: bool = False) -> bool:
    """Provide the shim modules unless mapchete is installed (`force`: even then, for tests).
    True when the shim is in place."""
    if real_mapchete() and not force:
        return False
    for name, attrs in _ALL.items():
        module = sys.modules.get(name)
        if module is not None and module.__dict__.get("__ziggurat_shim__"):
            continue
        module = ModuleType(name, f"ziggurat's stand-in for {name} (mapchete is not installed)")
        module.__dict__.update(attrs, __ziggurat_shim__=True, __all__=sorted(attrs))
        if "." not in name or name.endswith(("formats", "processing")):
            module.__path__ = []  # a package, so its submodules import
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
    return True


def uninstall() -> None:
    """Remove the shim modules (tests)."""
    for name in list(sys.modules):
        module = sys.modules[name]
        if (name == "mapchete" or name.startswith("mapchete.")) and module.__dict__.get("__ziggurat_shim__"):
            del sys.modules[name]
