"""Helpers for people starting out: `ziggurat create` (a process and a recipe that run as they
are), `ziggurat processes NAME` (a process's parameters and docstring), `ziggurat formats`."""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ziggurat.core.errors import OutputError, ProcessLoadError
from ziggurat.core.formats import FORMATS
from ziggurat.process.load import ProcessRef, load_process

PROCESS_TEMPLATE = '''"""{name}: what this process makes (the first line is what `ziggurat processes` lists).

ziggurat calls execute() once per tile. Inputs of the recipe arrive by name (add one under
`input:` and a parameter of the same name here: `dem.read()` gives the tile's pixels as a
masked array); `process_parameters` arrive by name too; `tile` is the tile itself.
"""

import numpy as np

from ziggurat import Empty


def execute(tile, scale: float = 1.0, offset: float = 0.0):
    """A smooth test surface from the tile's coordinates: replace it with your computation.

    scale: multiplies the surface. offset: is added to it.
    """
    height, width = tile.shape
    left, bottom, right, top = tile.bounds
    lon = np.linspace(left, right, width)[np.newaxis, :]
    lat = np.linspace(top, bottom, height)[:, np.newaxis]
    surface = np.sin(np.radians(lon) * 4) * np.cos(np.radians(lat) * 4)
    if not np.isfinite(surface).any():
        raise Empty   # nothing to write for this tile
    return (surface * scale + offset).astype("float32")
'''

RECIPE_TEMPLATE = """# {name}: a recipe for {name}.py. Run it with:  ziggurat execute {name}.yaml
# then look at it with:  ziggurat serve {name}.yaml
process: {name}.py

zoom_levels: [2, 4]

pyramid:
  grid: geodetic        # or mercator, or any TileMatrixSet id / JSON file
  metatiling: 1
  pixelbuffer: 0

bounds: [0, 40, 20, 50]     # west south east north (grid CRS)

# input:
#   dem: path/to/dem.tif    # then add `dem` as a parameter of execute()

output:
  path: {name}_output
  format: GTiff
  dtype: float32
  nodata: nan
  bands:
    - name: surface
      unit: "1"

process_parameters:
  scale: 1.0
  offset: 0.0
"""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def create_project(name: str, folder: str | os.PathLike[str] = ".") -> list[Path]:
    """Write NAME.py and NAME.yaml into `folder`; refuses to overwrite either."""
    if not _NAME.match(name):
        raise OutputError(f"{name!r} is not a valid process name (letters, digits and _, not starting "
                          "with a digit: it becomes a Python module)")
    root = Path(folder)
    files = [(root / f"{name}.py", PROCESS_TEMPLATE.format(name=name)),
             (root / f"{name}.yaml", RECIPE_TEMPLATE.format(name=name))]
    taken = [str(p) for p, _ in files if p.exists()]
    if taken:
        raise OutputError(f"{', '.join(taken)} already exist(s); choose another name or folder")
    root.mkdir(parents=True, exist_ok=True)
    for path, text in files:
        path.write_text(text)
    return [p for p, _ in files]


@dataclass(frozen=True)
class ProcessParameter:
    name: str
    default: Any          # inspect.Parameter.empty: required
    annotation: str

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True)
class ProcessDescription:
    name: str
    source: str
    module_doc: str
    execute_doc: str
    parameters: tuple[ProcessParameter, ...]

    def describe(self) -> str:
        lines = [f"{self.name} ({self.source})", ""]
        if self.module_doc:
            lines += [self.module_doc, ""]
        lines.append("parameters (inputs and process_parameters, by name):")
        for p in self.parameters:
            kind = f": {p.annotation}" if p.annotation else ""
            default = "required" if p.required else f"default {p.default!r}"
            lines.append(f"  {p.name}{kind}  ({default})")
        if self.execute_doc:
            lines += ["", self.execute_doc]
        return "\n".join(lines)


def describe_process(name: str, base_dir: str | os.PathLike[str] = ".") -> ProcessDescription:
    """A ready-made process (`hillshade`), a dotted module or a .py file, with its parameters."""
    loaded = load_process(ProcessRef(name, str(Path(base_dir).resolve())))
    try:
        sig = inspect.signature(loaded.func)
    except (TypeError, ValueError) as exc:
        raise ProcessLoadError(f"process {name!r}: cannot read the signature of execute(): {exc}") from exc
    params = tuple(ProcessParameter(p.name, p.default, p.annotation if isinstance(p.annotation, str)
                                    else "" if p.annotation is inspect.Parameter.empty else
                                    getattr(p.annotation, "__name__", str(p.annotation)))
                   for p in sig.parameters.values()
                   if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD))
    source = str(loaded.source_path) if loaded.source_path else loaded.module.__name__
    return ProcessDescription(name, source, inspect.cleandoc(loaded.module.__doc__ or ""),
                              inspect.cleandoc(loaded.func.__doc__ or ""), params)


def formats() -> dict[str, list[tuple[str, str]]]:
    """Input and output formats, with what each reads or writes."""
    out = [(f.name, f.description + (f" (also: {', '.join(f.aliases)})" if f.aliases else ""))
           for f in FORMATS.values()]
    inputs = [
        ("raster", "any GDAL raster (GeoTIFF, COG, VRT, JP2, NetCDF subdatasets...), local, http(s):// or s3://"),
        ("mosaic", "many rasters as one: globs, lists, VRTs, GTI or vector tile indexes (`mosaic:`)"),
        ("vector", "any OGR vector (GeoPackage, Shapefile, GeoJSON, FlatGeobuf, ...): features per tile"),
        ("tiledir", "a ziggurat or mapchete tile directory (GeoTIFF or PNG tiles, read in any grid)"),
        (".mapchete / recipe", "another recipe's output, read as a tile directory"),
    ]
    return {"input": inputs, "output": out}


__all__ = ["ProcessDescription", "create_project", "describe_process", "formats"]
