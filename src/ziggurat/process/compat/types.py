"""mapchete's typing markers: which process parameters get the tile, its buffer, the output's
nodata or path (mapchete's `process_func_special_types`), and the input classes processes
test with `isinstance`."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Callable


class RasterInput:
    """Base of the raster inputs a mapchete-style process receives (for `isinstance`)."""

    tile: Any
    read: Callable[..., Any]
    is_empty: Callable[..., bool]


class VectorInput:
    """Base of the vector inputs a mapchete-style process receives (for `isinstance`)."""

    tile: Any
    read: Callable[..., Any]
    is_empty: Callable[..., bool]


class Tile:
    """Annotation marker: the parameter receives the process tile (mapchete's `Tile`)."""


class TileBuffer(float):
    """Annotation marker: the pixel buffer in CRS units."""


class TilePixelBuffer(int):
    """Annotation marker: the pixel buffer in pixels."""


class OutputNodataValue(float):
    """Annotation marker: the output's nodata value."""


class OutputPath(str):
    """Annotation marker: the output's path."""


SPECIAL_TYPES: dict[str, type] = {"Tile": Tile, "TileBuffer": TileBuffer, "TilePixelBuffer": TilePixelBuffer,
                                  "OutputNodataValue": OutputNodataValue, "OutputPath": OutputPath}


#: the kind of a marker from an installed mapchete: its own objects are wanted (`BufferedTile`,
#: `MPath`), not ziggurat's look-alikes
MAPCHETE_PREFIX = "mapchete."


def _mapchete_markers() -> dict[int, str]:
    """The markers of an installed mapchete (already imported by the process), by identity."""
    module = sys.modules.get("mapchete.process_func_special_types")
    if module is None or module.__dict__.get("__ziggurat_shim__"):
        return {}
    return {id(module.__dict__[name]): MAPCHETE_PREFIX + name for name in SPECIAL_TYPES if name in module.__dict__}


def special_kind(annotation: Any, namespace: dict[str, Any] | None = None) -> str | None:
    """Which special value an annotation asks for (None: an ordinary parameter; prefixed with
    `MAPCHETE_PREFIX` for an installed mapchete's marker, whose own types are wanted). A string
    annotation (``from __future__ import annotations``) is looked up in the module's namespace,
    never evaluated: ``Tile`` there may well be ziggurat's own tile class."""
    if isinstance(annotation, str):
        parts = annotation.strip().split(".")
        value = (namespace or {}).get(parts[0])
        for part in parts[1:]:
            value = value.__dict__.get(part) if isinstance(value, ModuleType) else None
        if value is None:
            return None
        annotation = value
    for name, marker in SPECIAL_TYPES.items():
        if annotation is marker:
            return name
    return _mapchete_markers().get(id(annotation))
