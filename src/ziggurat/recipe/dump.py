"""A validated `Recipe` back to YAML: as given, and as resolved, for provenance.

The resolved form is what `ziggurat reproduce` reruns: absolute paths, defaults filled in,
`bounds` already in the grid CRS (so `bounds_crs` is dropped), zoom conditions kept as
written. Loading it with `load_recipe(mapping, base_dir=<original recipe folder>)` gives a
recipe equal to the original; keys ziggurat does not model (e.g. `area`, `stac`) are passed
through unchanged and any relative path left in them resolves against that folder.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path, PurePath
from typing import Any, Mapping

import morecantile
import yaml

from ziggurat.core.grid import GRID_ALIASES, Grid
from ziggurat.recipe.model import Recipe

log = logging.getLogger(__name__)

RESOLVED_HEADER = ("# Recipe as resolved by ziggurat: absolute paths, defaults filled in, bounds in\n"
                   "# the grid CRS. `ziggurat reproduce` reruns it with the saved process source.\n")


def plain(value: Any) -> Any:
    """Frozen mappings, tuples, paths and numpy scalars -> what `yaml.safe_dump` and JSON take."""
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, (str, bool, int, float, dt.date)):
        return value
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    log.warning("recipe value %r (%s) is saved as its text; a reproduction may not see the same "
                "value", value, type(value).__name__)
    return repr(value)


def dump_yaml(data: Mapping[str, Any], header: str = "") -> str:
    return header + yaml.safe_dump(plain(data), sort_keys=False, allow_unicode=True,
                                   default_flow_style=None, width=100)


#: What provenance records instead of each `storage_options` value (secrets).
REDACTED = "<redacted>"
REDACTED_HEADER = ("# Recipe as given, with the values of storage_options redacted (credentials are never\n"
                   "# saved; a rerun takes them from the environment or a recipe of your own).\n")


def redact(value: Any) -> Any:
    """`value` with every `storage_options` mapping's values replaced by a marker."""
    if isinstance(value, Mapping):
        return {k: ({n: REDACTED for n in v} if k == "storage_options" and isinstance(v, Mapping)
                    else REDACTED if k == "storage_options" else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def has_secrets(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(k == "storage_options" or has_secrets(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_secrets(v) for v in value)
    return False


def given_text(recipe: Recipe) -> str:
    """The recipe exactly as given (a YAML dump for a mapping-source recipe, or when it carries
    storage_options, whose values are redacted)."""
    if has_secrets(recipe.raw):
        return dump_yaml(redact(plain(recipe.raw)), REDACTED_HEADER)
    return recipe.text if recipe.text else dump_yaml(recipe.raw)


def _is_remote(path: str) -> bool:
    return path.startswith("/vsi") or "://" in path


def _grid_value(grid: Grid, base_dir: Path) -> str:
    if GRID_ALIASES.get(grid.name, grid.name) in morecantile.tms.list() or _is_remote(grid.name):
        return grid.name
    return os.path.abspath(base_dir / os.path.expanduser(grid.name))


def resolved(recipe: Recipe) -> dict[str, Any]:
    """The validated recipe as a plain mapping, built from the Recipe's fields."""
    raw = plain(recipe.raw)
    out: dict[str, Any] = {}
    spec = recipe.process
    is_file = spec.endswith(".py") or "/" in spec or "\\" in spec
    out["process"] = os.path.abspath(recipe.base_dir / spec) if is_file else spec
    out["zoom_levels"] = list(recipe.zoom_levels)
    grid = recipe.grid
    out["pyramid"] = {**(raw.get("pyramid") or {}), "grid": _grid_value(grid, recipe.base_dir),
                      "metatiling": grid.metatiling, "pixelbuffer": grid.pixelbuffer,
                      "tile_size": grid.effective_tile_size}
    inputs: dict[str, Any] = {}
    for name, cfg in recipe.inputs.items():
        inputs[name] = {"path": str(cfg.path), "format": cfg.format, **plain(cfg.options)}
        if cfg.storage_options:
            inputs[name]["storage_options"] = {n: REDACTED for n in cfg.storage_options}
    if inputs:
        out["input"] = inputs
    o = recipe.output
    out["output"] = {**redact(raw.get("output") or {}), "path": o.url, "format": o.format,
                     "dtype": o.dtype, "bands": o.bands, "nodata": o.nodata,
                     "compress": o.compress, "metatiling": o.metatiling, **plain(o.options)}
    if recipe.bounds is not None:
        out["bounds"] = [float(v) for v in recipe.bounds]
    if recipe.parameters:
        out["process_parameters"] = plain(recipe.parameters)
    if recipe.baselevels:
        out["baselevels"] = plain(recipe.baselevels)
    for key, value in raw.items():  # keys not modelled above (area, stac, name, ...) as given
        if key not in out and key not in ("bounds_crs", "input", "process_parameters", "baselevels"):
            out[key] = redact(value)
    return out


def resolved_text(recipe: Recipe) -> str:
    return dump_yaml(resolved(recipe), RESOLVED_HEADER)


__all__ = ["dump_yaml", "given_text", "plain", "resolved", "resolved_text"]
