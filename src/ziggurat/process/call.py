"""Checking a loaded process against the recipe and calling it, by ziggurat's rules or mapchete's.

A process is called by keyword: inputs and parameters by name, plus `tile` if `execute` asks for
it. A mapchete-style process (it takes `mp`, or the recipe is a `.mapchete` file) is called by
mapchete's rules: it receives only the inputs and parameters its signature names, parameters it
does not take are a warning, and parameters annotated with mapchete's markers get those values.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Mapping

from ziggurat.core import interrupts
from ziggurat.core.errors import ProcessExit, ProcessLoadError, RecipeError
from ziggurat.process.load import LoadedProcess

log = logging.getLogger(__name__)


def input_arguments(recipe: Any) -> set[str]:
    """The process arguments the recipe's inputs fill (a group is one argument)."""
    return {cfg.argument.split("/", 1)[0] for cfg in recipe.inputs.values()}


def check_signature(loaded: LoadedProcess, recipe: Any) -> None:
    if loaded.mapchete_style(recipe):
        _check_mapchete_signature(loaded, recipe)
    else:
        _check_signature(loaded, recipe)
        check_pixelbuffer(loaded, recipe)


def check_pixelbuffer(loaded: LoadedProcess, recipe: Any) -> None:
    """A process module may declare the pixel buffer its windows need: `pixelbuffer = 1`, or a
    function of its parameters (`def pixelbuffer(radius=1, **_): return radius`). A recipe with a
    smaller `pyramid.pixelbuffer` would write nodata seams at tile edges: refused at load."""
    declared = loaded.module.__dict__.get("pixelbuffer")
    if declared is None:
        return
    have = int(recipe.grid.pixelbuffer)
    for zoom in recipe.zooms:
        try:
            need = int(declared(**recipe.parameters_at(zoom)) if callable(declared) else declared)
        except (TypeError, ValueError) as exc:
            raise ProcessLoadError(f"process {loaded.ref.spec!r}: its pixelbuffer declaration failed: {exc}") \
                from exc
        if need > have:
            raise RecipeError(f"{recipe.describe_key('pyramid', 'pixelbuffer')}: process {loaded.ref.spec!r} needs "
                              f"a pixel buffer of at least {need} (its window reaches {need} pixel(s) past a tile's "
                              f"edge), found {have}: tiles would have nodata seams at their edges")


def _check_mapchete_signature(loaded: LoadedProcess, recipe: Any) -> None:
    """mapchete's rules: required parameters must be given; inputs the process does not name are
    simply not passed; parameters it does not take are a warning."""
    given_inputs = input_arguments(recipe)
    param_names = set(recipe.parameters)
    clash = given_inputs & param_names
    where = loaded.source_path or loaded.module.__name__
    if clash:
        name = sorted(clash)[0]
        raise RecipeError(f"{recipe.describe_key('process_parameters', name)}: {name!r} is both an input "
                          "and a process parameter; rename one of them")
    missing = sorted(loaded.required - param_names - given_inputs - set(loaded.special) - {"tile", "mp"})
    if missing:
        raise RecipeError(f"{recipe.describe_key('process_parameters')}: process {loaded.ref.spec!r} ({where}) "
                          f"requires {', '.join(map(repr, missing))}, which the recipe does not give "
                          "(expected in input or process_parameters)")
    if not loaded.accepts_var_kwargs:
        for name in sorted(param_names - set(loaded.names)):
            log.warning("%s: process %r does not take %r (mapchete's rule: it is not passed)",
                        recipe.describe_key("process_parameters", name), loaded.ref.spec, name)


def _check_signature(loaded: LoadedProcess, recipe: Any) -> None:
    """Report, before any tile runs, recipe inputs/parameters that don't fit `execute()`."""
    given_inputs = input_arguments(recipe)
    param_names: set[str] = set(recipe.parameters)
    clash = given_inputs & param_names
    if clash:
        name = sorted(clash)[0]
        raise RecipeError(f"{recipe.describe_key('process_parameters', name)}: {name!r} is both an input "
                          "and a process parameter; rename one of them")
    where = loaded.source_path or loaded.module.__name__
    for name in sorted(param_names | given_inputs):
        if name not in loaded.names and not loaded.accepts_var_kwargs:
            section = "input" if name in given_inputs else "process_parameters"
            accepted = ", ".join(n for n in loaded.names if n != "tile") or "nothing"
            raise RecipeError(f"{recipe.describe_key(section, name)}: process {loaded.ref.spec!r} ({where}) "
                              f"does not take {name!r}; execute() accepts: {accepted}")
    injected = {"tile"} | ({"time_steps"} if recipe.output.time_steps is not None else set())
    missing = sorted(loaded.required - param_names - given_inputs - injected)
    if "time_steps" in missing:
        raise RecipeError(f"{recipe.describe_key('output')}: process {loaded.ref.spec!r} ({where}) returns a time "
                          "series (it takes `time_steps`): give the output a time axis, e.g. `time: {start: "
                          "2024-01-01, end: 2024-12-31, every: 1 month}`, in a Zarr store")
    if missing:
        kind = "inputs or process_parameters"
        raise RecipeError(f"{recipe.describe_key('process_parameters')}: process {loaded.ref.spec!r} ({where}) "
                          f"requires {', '.join(map(repr, missing))}, which the recipe does not give "
                          f"(expected in {kind})")
    check_parameter_types(loaded, recipe)


#: annotation names a recipe value can be checked against (YAML gives these types)
_YAML_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
                                            "list": (list,), "dict": (dict,), "None": (type(None),)}


def check_parameter_types(loaded: LoadedProcess, recipe: Any) -> None:
    """Process parameters against `execute()`'s plain annotations (int, float, str, bool, list,
    dict, None and unions of them, as text: they are never evaluated), at every zoom, so a wrong
    type is one clear error at load rather than a TypeError on the first tile."""
    parameters = inspect.signature(loaded.func).parameters
    for zoom in recipe.zooms:
        for name, value in recipe.parameters_at(zoom).items():
            param = parameters.get(name)
            if param is None or param.annotation is inspect.Parameter.empty:
                continue
            note = param.annotation
            text = note.__name__ if isinstance(note, type) else str(note)   # a class, or text/union
            names = [part.strip().split("[", 1)[0] for part in text.split("|")]
            if not names or any(n not in _YAML_TYPES for n in names):
                continue   # an annotation this check does not know: the process checks itself
            allowed = tuple(tp for n in names for tp in _YAML_TYPES[n])
            wrong_bool = isinstance(value, bool) and bool not in allowed
            if wrong_bool or not isinstance(value, allowed):
                raise RecipeError(f"{recipe.describe_key('process_parameters', name)}: expected "
                                  f"{' or '.join(names)} for process {loaded.ref.spec!r}'s {name!r}, found "
                                  f"{type(value).__name__} {value!r}")


def _tree(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Argument paths ("group/name") -> nested groups: mapchete's lists of (name, input) pairs."""
    tree: dict[str, Any] = {}
    for path, value in inputs.items():
        *groups, name = path.split("/")
        node = tree
        for group in groups:
            node = node.setdefault(group, {})
        node[name] = value

    def lists(node: dict[str, Any]) -> list[tuple[str, Any]]:
        return [(k, lists(v) if isinstance(v, dict) else v) for k, v in node.items()]

    return {k: lists(v) if isinstance(v, dict) else v for k, v in tree.items()}


def call_kwargs(loaded: LoadedProcess, inputs: Mapping[str, Any], parameters: Mapping[str, Any],
                tile: Any, *, mapchete: bool = False, output_params: Mapping[str, Any] | None = None,
                time_steps: Any = None) -> dict[str, Any]:
    """The keyword arguments of one call; `inputs` maps argument paths to bound tile inputs.
    A process writing a time series gets its steps as `time_steps` where it names that."""
    if not mapchete:
        kwargs = {**parameters, **_tree(inputs)}
        if loaded.wants_tile and "tile" not in kwargs:
            kwargs["tile"] = tile
        if time_steps is not None and "time_steps" in loaded.names and "time_steps" not in kwargs:
            kwargs["time_steps"] = time_steps
        return kwargs
    from ziggurat.process.compat import MapcheteProcess, MapcheteTile, adapt
    from ziggurat.process.compat.inputs import mapchete_objects
    from ziggurat.process.compat.types import MAPCHETE_PREFIX

    out = dict(output_params or {})
    view = MapcheteTile(tile)
    bound = _tree({path: adapt(inp, path) for path, inp in inputs.items()})
    values: dict[str, Any] = {"Tile": view, "TilePixelBuffer": tile.pixelbuffer,
                              "TileBuffer": tile.pixelbuffer * view.pixel_x_size,
                              "OutputNodataValue": out.get("nodata"), "OutputPath": out.get("path")}
    kwargs = {**parameters, **bound, "tile": tile}
    if any(kind.startswith(MAPCHETE_PREFIX) for kind in loaded.special.values()):   # mapchete's own types
        values.update({MAPCHETE_PREFIX + k: v for k, v in values.items()})
        values.update(mapchete_objects(tile, out))
    kwargs.update({name: values[kind] for name, kind in loaded.special.items()})
    if loaded.wants_mp:
        kwargs["mp"] = MapcheteProcess(view, parameters, bound, out)
    # mapchete's filter_parameters: only what the signature names, and no None values
    return {k: v for k, v in kwargs.items() if k in loaded.names and v is not None}


def steps_independent(loaded: LoadedProcess, parameters: Mapping[str, Any]) -> bool:
    """Whether the process computes each time step from that step's data alone, so a run that
    appends steps to a series computes only those: its `time_steps_independent`, a bool or a
    function of the process parameters (the `timeseries` process: when nothing spans steps)."""
    declared = loaded.module.__dict__.get("time_steps_independent")
    if callable(declared):
        return bool(declared(**parameters))
    return bool(declared)


def call(loaded: LoadedProcess, kwargs: Mapping[str, Any]) -> Any:
    """Run `execute`; a sys.exit() or a KeyboardInterrupt of its own fails the tile, not the run."""
    try:
        return loaded.func(**kwargs)
    except SystemExit as exc:
        raise ProcessExit(f"process {loaded.ref.spec!r} called sys.exit({exc.code!r}) in execute(); raise an "
                          "exception to fail a tile, or ziggurat.Empty for no data") from exc
    except KeyboardInterrupt as exc:
        if interrupts.signalled():
            raise   # a real Ctrl-C
        raise ProcessExit(f"process {loaded.ref.spec!r} raised KeyboardInterrupt in execute() (not a Ctrl-C)") from exc


__all__ = ["call", "call_kwargs", "check_signature", "input_arguments"]
