"""Recipes: YAML with mapchete-compatible keys -> immutable, fully validated objects.

Everything is checked at load so that a run never fails on tile 10 000 because of a typo,
and every message names file, line, key, what was expected and what was found.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from ziggurat.core.errors import RecipeError
from ziggurat.core.grid import Bounds, Grid
from ziggurat.recipe.inputs import InputConfig, InputSection, file_kind
from ziggurat.recipe.mapchete_keys import MAPCHETE_TOP_KEYS, translate
from ziggurat.recipe.output import OutputConfig
from ziggurat.recipe.output_section import OutputSection
from ziggurat.recipe.pyramid import PyramidSection, parse_zoom_levels
from ziggurat.recipe.stac_settings import settings_from_recipe
from ziggurat.recipe.yamlload import (
    FrozenDict,
    KeyPath,
    Locator,
    is_int,
    is_number,
    load_mapping,
    load_yaml,
    thaw,
    value_at_zoom,
)

__all__ = ["FrozenDict", "InputConfig", "OutputConfig", "Recipe", "load_recipe", "parse_zoom_levels"]

TOP_KEYS = ("process", "zoom_levels", "pyramid", "input", "output", "bounds", "bounds_crs",
            "process_parameters", "baselevels", "area", "area_crs", "stac", "description", "name",
            "tile_timeout") + MAPCHETE_TOP_KEYS
BASELEVEL_KEYS = ("min", "max", "lower", "higher")
#: `Recipe.process` of a process given as code in the recipe (`Recipe.process_code`)
INLINE_PROCESS = "<process code in the recipe>"


@dataclass(frozen=True)
class Recipe:
    """A fully validated recipe; frozen and picklable because it is shipped to every worker."""

    path: Path | None
    base_dir: Path
    text: str = field(repr=False)
    process: str
    zoom_levels: tuple[int, int]
    grid: Grid
    inputs: Mapping[str, InputConfig]
    output: OutputConfig
    bounds: Bounds | None
    bounds_crs: str | None
    parameters: Mapping[str, Any]
    baselevels: Mapping[str, Any] | None
    raw: Mapping[str, Any]
    #: key path -> 1-based line, and the file name as given; only for error messages.
    key_lines: Mapping[KeyPath, int] = field(default_factory=FrozenDict, compare=False, repr=False)
    source_name: str = field(default="<recipe>", compare=False, repr=False)
    #: `area` as a valid shapely (Multi)Polygon in the grid CRS (see ziggurat.recipe.area), or None.
    area: Any = field(default=None, compare=False, repr=False)
    #: the validated `stac:` / `output.stac:` settings (a `stac_settings.StacSettings`)
    stac: Any = field(default=None, compare=False, repr=False)
    #: seconds a tile may run (`tile_timeout:`; the processes executor stops longer ones)
    tile_timeout: float | None = field(default=None, compare=False)
    #: the process as source text (mapchete's `process:` given as a list of code lines)
    process_code: str | None = None
    #: environment variables for every worker (mapchete's `dask_specs.worker_environment`) and
    #: GDAL configuration options of the inputs (their `gdal_options`)
    worker_environment: Mapping[str, str] = field(default_factory=FrozenDict)

    @property
    def is_mapchete(self) -> bool:
        """Read from a `.mapchete` file: mapchete's rules and defaults apply where they differ."""
        return self.path is not None and self.path.suffix.lower() == ".mapchete"

    @property
    def zooms(self) -> range:
        return range(self.zoom_levels[0], self.zoom_levels[1] + 1)

    @property
    def baselevel_range(self) -> tuple[int, int] | None:
        """(min, max) zooms that run the process, or None without `baselevels`."""
        if not self.baselevels:
            return None
        lo, hi = self.zoom_levels
        return int(self.baselevels.get("min", lo)), int(self.baselevels.get("max", hi))

    def overview_source(self, zoom: int) -> str | None:
        """"lower" or "higher" for an overview zoom (built from output tiles), None for a process zoom."""
        levels = self.baselevel_range
        if levels is None or levels[0] <= zoom <= levels[1]:
            return None
        return "lower" if zoom < levels[0] else "higher"

    @property
    def output_grid(self) -> Grid:
        return self.grid.with_options(metatiling=self.output.metatiling, pixelbuffer=0)

    def parameters_at(self, zoom: int) -> dict[str, Any]:
        """Process parameters with zoom conditions resolved; plain dicts/lists, safe to mutate."""
        loc = Locator(self.source_name, self.key_lines)
        return {key: thaw(value_at_zoom(value, zoom, ("process_parameters", key), loc))
                for key, value in self.parameters.items()}

    def describe_key(self, *keys: str | int) -> str:
        """``recipes/x.yaml:12 key output.dtype``, for errors other modules raise later."""
        path: KeyPath = tuple(keys)
        if len(keys) == 1 and isinstance(keys[0], str) and "." in keys[0] and path not in self.key_lines:
            path = tuple(keys[0].split("."))
        return Locator(self.source_name, self.key_lines).describe(path)


#: a recipe is a small text file; anything larger is the wrong file
MAX_RECIPE_BYTES = 4 * 1024 * 1024


def load_recipe(source: str | os.PathLike[str] | Mapping[str, Any], *,
                base_dir: str | os.PathLike[str] | None = None) -> Recipe:
    """Read and validate a recipe file (or an already parsed mapping) completely."""
    if isinstance(source, Mapping):
        lines: dict[KeyPath, int] = {}
        data, name, path, text = load_mapping(source), None, None, ""
        folder = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        name = os.fspath(source)
        path = Path(os.path.abspath(name))
        try:
            st = path.stat()   # before opening: opening a FIFO would wait for a writer
            if not stat.S_ISREG(st.st_mode):
                raise RecipeError(f"{name}: expected a recipe file, found {file_kind(st.st_mode)}")
            if st.st_size > MAX_RECIPE_BYTES:
                raise RecipeError(f"{name}: a recipe file of {st.st_size:,} bytes; recipes are text of at most "
                                  f"{MAX_RECIPE_BYTES:,} bytes (is this the right file?)")
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            why = (f"recipe file not found (looked for {path})" if isinstance(exc, FileNotFoundError)
                   else f"cannot read recipe: {exc}")
            raise RecipeError(f"{name}: {why}") from exc
        folder = Path(base_dir) if base_dir is not None else path.parent
        data, lines = load_yaml(text, name)
    is_mapchete = path is not None and path.suffix.lower() == ".mapchete"
    data = translate(data, lines, name or "<recipe>", is_mapchete, TOP_KEYS)
    if isinstance(data, Mapping) and isinstance(data.get("config_dir"), str) and base_dir is None:
        folder = Path(os.path.abspath(Path(folder) / os.path.expanduser(data["config_dir"])))  # mapchete's key
    try:
        return _Builder(data, Locator(name, lines), Path(os.path.abspath(folder)), path, text).build()
    except OSError as exc:   # e.g. a path over the file system's name limit, given for an input or the output
        where = str(exc.filename or "")
        where = where if len(where) <= 120 else f"{where[:60]}...{where[-40:]} ({len(where)} characters)"
        raise RecipeError(f"{name or '<recipe>'}: a path in the recipe cannot be used: {exc.strerror or exc}: "
                          f"{where}") from exc


class _Builder(OutputSection, InputSection, PyramidSection):
    """One validation pass over the parsed recipe; each method checks one section."""

    def __init__(self, data: Any, loc: Locator, base_dir: Path, path: Path | None, text: str) -> None:
        super().__init__(loc)
        self.data, self.base_dir, self.path, self.text = data, base_dir, path, text
        self.mapchete_dialect = path is not None and path.suffix.lower() == ".mapchete"

    def load_upstream(self, path: Path) -> "Recipe":
        return load_recipe(path)

    def resolve(self, path: str) -> Path:
        return Path(os.path.abspath(self.base_dir / os.path.expanduser(path)))

    # -- sections ------------------------------------------------------------------------
    def build(self) -> Recipe:
        data = self.data
        if not isinstance(data, Mapping):
            raise self.fail((), "the recipe to be a mapping of keys (process, zoom_levels, pyramid, "
                                "output, ...)", data)
        self.check_keys(data, (), TOP_KEYS)
        code = self.process_code(data)
        process = INLINE_PROCESS if code is not None else self.process(data)
        environment = self.dask_environment(data)
        grid = self.grid(data)
        zoom_levels = self.zoom_levels(data, grid)
        inputs = self.inputs(data, zoom_levels)
        output = self.output(data, grid)
        bounds, bounds_crs = self.bounds(data, grid)
        parameters = self.parameters(data, zoom_levels)
        baselevels = self.baselevels(data, zoom_levels)
        for key in ("area", "area_crs", "stac", "description", "name"):
            if data.get(key) is not None and not isinstance(data[key], (str, Mapping)):
                raise self.fail((key,), "a string or a mapping", data[key])
        area = self.area(data, grid)
        if baselevels and not output.holds_overviews and (
                baselevels.get("min", zoom_levels[0]) > zoom_levels[0]
                or baselevels.get("max", zoom_levels[1]) < zoom_levels[1]):
            raise self.loc.error(("baselevels",), "overview zooms (zoom_levels outside baselevels) need a "
                                                  f"raster tile directory output, not {output.format} "
                                                  f"{output.storage.value} at {output.path}")
        timeout = data.get("tile_timeout")
        if timeout is not None and not (is_number(timeout) and timeout > 0):
            raise self.fail(("tile_timeout",), "a number of seconds > 0", timeout)
        recipe = Recipe(self.path, self.base_dir, self.text, process, zoom_levels, grid, inputs, output,
                        bounds, bounds_crs, parameters, baselevels, data,
                        FrozenDict(self.loc.lines), self.loc.source, area=area,
                        tile_timeout=None if timeout is None else float(timeout), process_code=code,
                        worker_environment=FrozenDict({**environment, **self.input_gdal_options(inputs)}))
        return replace(recipe, stac=settings_from_recipe(recipe))

    def area(self, data: Mapping[str, Any], grid: Grid) -> Any:
        """`area` + `area_crs` -> a grid-CRS polygon (parsed and reprojected in ziggurat.recipe.area)."""
        from ziggurat.recipe.area import parse_area

        crs = data.get("area_crs")
        if crs is not None:
            from rasterio.crs import CRS
            from rasterio.errors import CRSError

            try:
                CRS.from_user_input(crs)
            except CRSError as exc:
                raise self.loc.error(("area_crs",), f"expected a valid CRS, found {crs!r} ({exc})") from exc
        if data.get("area") is None:
            return None
        try:
            return parse_area(data["area"], crs=crs, grid=grid, base_dir=self.base_dir)
        except RecipeError as exc:
            raise self.loc.error(("area",), str(exc)) from exc

    def process_code(self, data: Mapping[str, Any]) -> str | None:
        """mapchete's `process:` as a list of source lines (one module)."""
        value = data.get("process")
        if not isinstance(value, (list, tuple)):
            return None
        if not value or not all(isinstance(line, str) for line in value):
            raise self.fail(("process",), "a list of Python source lines (strings)", value)
        code = "\n".join(value) + "\n"
        try:
            compile(code, f"{self.loc.source}:process", "exec")
        except SyntaxError as exc:
            raise self.loc.error(("process",), f"the process code does not compile: {exc.msg} "
                                               f"(code line {exc.lineno})") from exc
        return code

    def dask_environment(self, data: Mapping[str, Any]) -> dict[str, str]:
        """mapchete's `dask_specs`: cluster sizing is the cluster's business here; the workers'
        environment is applied in every worker."""
        specs = self.mapping(data, ("dask_specs",), "a mapping (mapchete's dask_specs)", required=False) or {}
        env = self.mapping(specs, ("dask_specs", "worker_environment"), "a mapping of variable -> value",
                           required=False) or {}
        for name, value in env.items():
            if not isinstance(name, str) or isinstance(value, (Mapping, list, tuple)) or value is None:
                raise self.fail(("dask_specs", "worker_environment", name), "a scalar value", value)
        return {name: str(value).lower() if isinstance(value, bool) else str(value) for name, value in env.items()}

    def process(self, data: Mapping[str, Any]) -> str:
        expected = "a .py file, a dotted module name or a ready-made process name"
        value = self.string(data, ("process",), expected)
        if value.endswith(".py"):
            resolved = self.resolve(value)
            if not resolved.is_file():
                raise self.loc.error(("process",), f"process file {value!r} not found (looked for {resolved})")
        elif not all(part.isidentifier() for part in value.split(".")):
            raise self.fail(("process",), expected, value)
        return value

    def parameters(self, data: Mapping[str, Any], zooms: tuple[int, int]) -> Mapping[str, Any]:
        section = self.mapping(data, ("process_parameters",), "a mapping of parameter name -> value",
                               required=False) or FrozenDict()
        for name, value in section.items():
            key: KeyPath = ("process_parameters", name)
            if not isinstance(name, str) or not name:
                raise self.fail(key, "parameter names to be strings", name)
            for zoom in range(zooms[0], zooms[1] + 1):
                value_at_zoom(value, zoom, key, self.loc)
        return FrozenDict(section)

    def baselevels(self, data: Mapping[str, Any], zooms: tuple[int, int]) -> Mapping[str, Any] | None:
        section = self.mapping(data, ("baselevels",), "a mapping with keys min, max, lower, higher",
                               required=False)
        if section is None:
            return None
        self.check_keys(section, ("baselevels",), BASELEVEL_KEYS)
        out = dict(section)
        for bound in ("min", "max"):
            value = section.get(bound)
            if value is not None and not (is_int(value) and zooms[0] <= value <= zooms[1]):
                raise self.fail(("baselevels", bound), f"a zoom level within zoom_levels "
                                                       f"{zooms[0]}..{zooms[1]}", value)
            out[bound] = None if value is None else int(value)
        if out["min"] is not None and out["max"] is not None and out["min"] > out["max"]:
            raise self.fail(("baselevels", "max"), f"max >= min ({out['min']})", out["max"])
        for side in ("lower", "higher"):
            value = section.get(side)
            if value is not None:
                out[side] = self.resampling(value, ("baselevels", side))
        return FrozenDict({k: v for k, v in out.items() if v is not None})
