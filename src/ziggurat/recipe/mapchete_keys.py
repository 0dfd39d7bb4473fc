"""mapchete recipe keys -> ziggurat's, before validation.

A `.mapchete` file runs unchanged: the keys mapchete still maps (`process_file`,
`input_files`, `process_zoom`, `process_minzoom`/`process_maxzoom`, `process_bounds`,
`output.type`, a missing `pyramid`) are mapped as mapchete's
`ProcessConfig.map_to_new_config_dict` does, and so are its defaults that differ from
ziggurat's (output metatiling = pyramid metatiling, PNG = uint8). In a `.mapchete` file,
unknown top-level keys are process parameters, as in mapchete (with a warning); a `.yaml`
recipe stays strict so that typos are caught. Line numbers move with the keys.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from ziggurat.core.formats import MAPCHETE_PNG
from ziggurat.recipe.yamlload import FrozenDict, KeyPath, Locator

log = logging.getLogger("ziggurat.recipe")

#: top-level keys mapchete knows besides ziggurat's (accepted; what each does is in docs/mapchete.md)
MAPCHETE_TOP_KEYS = ("dask_specs", "config_dir", "mapchete_file")


def _move(lines: dict[KeyPath, int], old: KeyPath, new: KeyPath) -> None:
    """Key paths below `old` now live below `new` (their lines go with them)."""
    for path in [p for p in lines if p[:len(old)] == old]:
        lines[new + path[len(old):]] = lines.pop(path)


def translate(data: Any, lines: dict[KeyPath, int], source: str, mapchete_file: bool,
              top_keys: tuple[str, ...]) -> Any:
    """The recipe mapping with mapchete's keys mapped onto ziggurat's (a new mapping)."""
    if not isinstance(data, Mapping):
        return data
    loc = Locator(source, lines)
    out = dict(data)
    output = dict(out["output"]) if isinstance(out.get("output"), Mapping) else None

    def rename(old: str, new: str) -> None:
        if old not in out:
            return
        if new in out:
            raise loc.error((old,), f"{old!r} is mapchete's old name of {new!r}; give only one of them")
        log.warning("%s: %r is deprecated (mapchete's old name of %r)", loc.prefix((old,)).rstrip(":"), old, new)
        out[new] = out.pop(old)
        _move(lines, (old,), (new,))

    rename("process_file", "process")
    rename("input_files", "input")
    if "zoom_levels" not in out:
        if "process_zoom" in out:
            rename("process_zoom", "zoom_levels")
        elif "process_minzoom" in out and "process_maxzoom" in out:
            out["zoom_levels"] = FrozenDict({"min": out.pop("process_minzoom"), "max": out.pop("process_maxzoom")})
            lines[("zoom_levels",)] = lines.get(("process_minzoom",), 1)
    if "bounds" not in out:
        rename("process_bounds", "bounds")
    if output is not None:
        if "type" in output and "grid" not in output:
            output["grid"] = output.pop("type")
            _move(lines, ("output", "type"), ("output", "grid"))
        if "pyramid" not in out and "grid" in output:
            out["pyramid"] = FrozenDict({"grid": output["grid"], "metatiling": out.pop("metatiling", 1),
                                         "pixelbuffer": out.pop("pixelbuffer", 0)})
            lines[("pyramid",)] = lines.get(("output", "grid"), 1)
            _move(lines, ("output", "grid"), ("pyramid", "grid"))
        output.pop("grid", None)   # mapchete repeats the process grid here; the output uses the pyramid's
        output.pop("type", None)
        output.pop("data_type", None)  # mapchete's raster/vector hint: the format says it
        pixelbuffer = output.pop("pixelbuffer", 0)
        if pixelbuffer:
            log.warning("%s output.pixelbuffer %s: ziggurat stores each pixel once, in tiles without a rim "
                        "(readers take the neighbours' pixels from the neighbouring tiles); processed tiles "
                        "hold mapchete's pixels without the %s-pixel rim, overviews built with a rim by "
                        "mapchete differ at tile edges", loc.prefix(("output", "pixelbuffer")).rstrip(":"),
                        pixelbuffer, pixelbuffer)
        if mapchete_file:
            _mapchete_output_defaults(output, out.get("pyramid"))
        out["output"] = FrozenDict(output)
    if mapchete_file:
        params = dict(out.get("process_parameters") or {})
        for key in [k for k in out if k not in top_keys]:
            log.warning("%s %r is not a recipe key: it is taken as a process parameter, as mapchete does "
                        "(put it under process_parameters)", loc.prefix((key,)).rstrip(":"), key)
            params[key] = out.pop(key)
            _move(lines, (key,), ("process_parameters", key))
        if params:
            out["process_parameters"] = FrozenDict(params)
    return FrozenDict(out)


def _mapchete_output_defaults(output: dict[str, Any], pyramid: Any) -> None:
    """What mapchete assumes where a `.mapchete` file's output says nothing."""
    if "metatiling" not in output and isinstance(pyramid, Mapping):
        output["metatiling"] = pyramid.get("metatiling", 1)
    fmt = str(output.get("format", "")).lower()
    if fmt in ("gtiff", "geotiff", "tif", "tiff", "png", "png_hillshade", "png_rgba", ""):
        output.setdefault("nodata", 0)   # mapchete's raster profiles default to nodata 0
    if fmt == "png":   # mapchete's PNG is always 8-bit RGBA, whatever `bands` says
        output.update(format=MAPCHETE_PNG.name, bands=4, dtype="uint8")
