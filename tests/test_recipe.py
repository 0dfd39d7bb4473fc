"""Recipe loading: values, defaults, path resolution, env substitution and error messages."""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
import textwrap
from pathlib import Path
from textwrap import dedent
from typing import Any, Callable

import morecantile
import numpy as np
import pyproj
import pytest
import rasterio
from affine import Affine

from ziggurat.core.errors import RecipeError
from ziggurat.core.grid import Bounds, Grid
from ziggurat.recipe import FrozenDict, InputConfig, Recipe, load_recipe, parse_zoom_levels

MINIMAL = """\
process: my_pkg.my_process
zoom_levels: 0,2
pyramid:
  grid: geodetic
output:
  path: out
"""


def write(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def make_tif(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=4, height=4, count=1, dtype="uint8", crs="EPSG:4326",
                   transform=Affine(1.0, 0, 10.0, 0, -1.0, 50.0))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.arange(16, dtype="uint8").reshape(1, 4, 4))
    return path


@pytest.fixture
def dem(tmp_path: Path) -> Path:
    return make_tif(tmp_path / "data" / "dem.tif")


@pytest.fixture
def recipe_error(tmp_path: Path) -> Callable[[str], tuple[str, str]]:
    """Load a recipe text that must fail; return (message, recipe path as written)."""

    def _load(text: str) -> tuple[str, str]:
        path = write(tmp_path, text)
        with pytest.raises(RecipeError) as info:
            load_recipe(path)
        return str(info.value), str(path)

    return _load


# -- valid recipes --------------------------------------------------------------------------
def test_minimal_recipe_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    recipe = load_recipe(path)
    assert recipe.path == path and recipe.base_dir == tmp_path
    assert recipe.text == MINIMAL
    assert recipe.process == "my_pkg.my_process"
    assert recipe.zoom_levels == (0, 2) and recipe.zooms == range(0, 3)
    assert recipe.grid == Grid.from_name("geodetic")
    assert recipe.grid.name == "geodetic"
    assert dict(recipe.inputs) == {}
    out = recipe.output
    assert (out.path, out.format, out.dtype, out.bands, out.nodata, out.compress, out.metatiling) == (
        tmp_path / "out", "GTiff", "float32", 1, pytest.approx(math.nan, nan_ok=True), "deflate", 1)
    assert dict(out.options) == {}
    assert recipe.bounds is None and recipe.bounds_crs is None and recipe.baselevels is None
    assert recipe.parameters_at(1) == {}
    assert recipe.raw["pyramid"]["grid"] == "geodetic"


def test_full_recipe_values(tmp_path: Path, dem: Path) -> None:
    path = write(tmp_path, """\
        process: proc.py
        zoom_levels: {min: 2, max: 5}
        pyramid: {grid: mercator, metatiling: 4, pixelbuffer: 2, tile_size: 512}
        input:
          dem: data/dem.tif
          extra: {path: data/dem.tif, format: GTiff, resampling: bilinear}
        output:
          path: out
          format: geotiff
          dtype: UInt16
          bands: 3
          nodata: 65535
          compress: ZSTD
          metatiling: 2
          predictor: 2
        process_parameters:
          sigma: 1.5
          levels: [1, 2, {a: 3}]
        baselevels: {min: 3, max: 5, lower: Bilinear, higher: nearest}
        description: a test
        name: test
        area: {type: Polygon, coordinates: [[[0, 0], [1000, 0], [1000, 1000], [0, 0]]]}
        stac: {title: x}
        """)
    (tmp_path / "proc.py").write_text("def execute(): pass\n")
    recipe = load_recipe(path)
    assert recipe.process == "proc.py"
    assert recipe.zoom_levels == (2, 5)
    g = recipe.grid
    assert (g.name, g.metatiling, g.pixelbuffer, g.tile_size) == ("mercator", 4, 2, 512)
    assert recipe.output_grid == g.with_options(metatiling=2, pixelbuffer=0)
    assert recipe.inputs["dem"] == InputConfig("dem", dem, "raster", FrozenDict())
    assert recipe.inputs["extra"].format == "raster"
    assert dict(recipe.inputs["extra"].options) == {"resampling": "bilinear"}
    out = recipe.output
    assert (out.format, out.dtype, out.bands, out.nodata, out.compress, out.metatiling) == (
        "GTiff", "uint16", 3, 65535, "zstd", 2)
    assert dict(out.options) == {"creation_options": {"PREDICTOR": 2}}   # a GDAL option given directly
    assert recipe.parameters_at(3) == {"sigma": 1.5, "levels": [1, 2, {"a": 3}]}
    assert dict(recipe.baselevels) == {"min": 3, "max": 5, "lower": "bilinear", "higher": "nearest"}
    assert recipe.raw["description"] == "a test" and recipe.raw["area"]["type"] == "Polygon"
    assert recipe.area.area == pytest.approx(500_000)  # parsed in the grid CRS (mercator metres)


@pytest.mark.parametrize("value, expected", [
    (5, (5, 5)), ("3,8", (3, 8)), ("3, 8", (3, 8)), (" 4 ", (4, 4)), ([3, 8], (3, 8)), ((3, 8), (3, 8)),
    ([8, 3], (3, 8)), ([6], (6, 6)), ({"min": 3, "max": 8}, (3, 8)), (np.int64(7), (7, 7)),
])
def test_parse_zoom_levels(value: Any, expected: tuple[int, int]) -> None:
    assert parse_zoom_levels(value) == expected


@pytest.mark.parametrize("value", ["a", "3,x", "", [1, 2, 3], [], -1, [-1, 3], True, 2.5, None,
                                   {"min": 3}, {"min": 3, "max": 8, "x": 1}, [3, "8"]])
def test_parse_zoom_levels_rejects(value: Any) -> None:
    with pytest.raises(RecipeError, match=r"expected a zoom level \(5\), 'min,max' \('3,8'\), a list "
                                          r"\[3, 8\] or a mapping \{min: 3, max: 8\}.*found"):
        parse_zoom_levels(value)


@pytest.mark.parametrize("yaml_value, expected", [
    ("7", (7, 7)), ("3,8", (3, 8)), ('"3, 8"', (3, 8)), ("[8, 3]", (3, 8)), ("{min: 3, max: 8}", (3, 8)),
])
def test_zoom_levels_forms_in_recipe(tmp_path: Path, yaml_value: str, expected: tuple[int, int]) -> None:
    path = write(tmp_path, MINIMAL.replace("zoom_levels: 0,2", f"zoom_levels: {yaml_value}"))
    assert load_recipe(path).zoom_levels == expected


def test_relative_paths_resolve_against_recipe_folder(tmp_path: Path, dem: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(dem.parent)  # cwd must not matter
    write(tmp_path / "recipes", "def execute(): pass\n", "proc.py")
    path = write(tmp_path / "recipes", """\
        process: proc.py
        zoom_levels: 1
        pyramid: {grid: geodetic}
        input: {dem: ../data/dem.tif}
        output: {path: ../output/tiles}
        """)
    recipe = load_recipe(path)
    assert recipe.base_dir == tmp_path / "recipes"
    assert recipe.inputs["dem"].path == dem
    assert recipe.output.path == tmp_path / "output" / "tiles"
    # an explicit base_dir wins over the recipe folder
    other = tmp_path / "other"
    make_tif(other / "data" / "dem.tif")
    write(other / "sub", "def execute(): pass\n", "proc.py")
    moved = load_recipe(path, base_dir=other / "sub")
    assert moved.inputs["dem"].path == other / "data" / "dem.tif"
    assert moved.output.path == other / "output" / "tiles"


def test_input_format_detection(tmp_path: Path, dem: Path) -> None:
    (tmp_path / "data" / "shapes.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    tiles = tmp_path / "data" / "tiles"
    tiles.mkdir()
    (tiles / "metadata.json").write_text("{}")
    (tmp_path / "data" / "blob.xyz").write_text("?")
    path = write(tmp_path, MINIMAL + dedent("""\
        input:
          a: data/dem.tif
          b: data/shapes.geojson
          c: data/tiles
          d: data/blob.xyz
          e: {path: data/shapes.geojson, format: raster}
          f: /vsicurl/https://example.com/x.tif
          g: s3://bucket/vectors/roads.fgb
          h: {path: data/tiles, format: TileDir}
        """))
    inputs = load_recipe(path).inputs
    assert {k: v.format for k, v in inputs.items()} == {
        "a": "raster", "b": "vector", "c": "tiledir", "d": "raster", "e": "raster", "f": "raster",
        "g": "vector", "h": "tiledir"}
    assert inputs["c"].path == tiles
    assert inputs["f"].path == "/vsicurl/https://example.com/x.tif"  # kept as written, unchecked
    assert inputs["g"].path == "s3://bucket/vectors/roads.fgb"


def test_mapping_source(tmp_path: Path, dem: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZG_OUT", "result")
    source = {"process": "pkg.proc", "zoom_levels": [1, 3], "pyramid": {"grid": "geodetic"},
              "input": {"dem": Path("data/dem.tif")}, "output": {"path": "${ZG_OUT}", "dtype": "uint8"},
              "process_parameters": {"k": {"zoom<2": "low", "zoom>=2": "high"}}}
    recipe = load_recipe(source, base_dir=tmp_path)
    assert recipe.path is None and recipe.text == "" and recipe.base_dir == tmp_path
    assert recipe.inputs["dem"].path == dem
    assert recipe.output.path == tmp_path / "result"
    assert [recipe.parameters_at(z)["k"] for z in recipe.zooms] == ["low", "high", "high"]
    assert recipe.describe_key("output", "dtype") == "<recipe> key output.dtype"
    source["output"] = {"path": "out", "dtype": "uint8", "nodata": -1}
    with pytest.raises(RecipeError, match=r"^<recipe>: output\.nodata: expected a nodata value that fits "
                                          r"dtype uint8 \(0\.\.255\), found -1"):
        load_recipe(source, base_dir=tmp_path)


def test_mapping_source_resolves_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe({"process": "p", "zoom_levels": 0, "pyramid": {"grid": "geodetic"},
                          "output": {"path": "o"}})
    assert recipe.base_dir == tmp_path and recipe.output.path == tmp_path / "o"


# -- environment variables -----------------------------------------------------------------
def test_env_substitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZG_ZOOMS", "3,8")
    monkeypatch.setenv("ZG_DIR", "somewhere")
    monkeypatch.setenv("ZG_NUM", "12")
    monkeypatch.setenv("ZG_NAN", ".nan")
    monkeypatch.setenv("ZG_EMPTY", "")
    monkeypatch.delenv("ZG_UNSET", raising=False)
    path = write(tmp_path, """\
        process: pkg.proc
        zoom_levels: ${ZG_ZOOMS}
        pyramid: {grid: geodetic}
        output:
          path: ${ZG_DIR}/tiles
          nodata: ${ZG_NAN}
        process_parameters:
          num: ${ZG_NUM}
          quoted: "${ZG_NUM}"
          default: ${ZG_UNSET:-7}
          default_text: prefix-${ZG_UNSET:-none}-suffix
          empty_uses_default: ${ZG_EMPTY:-fallback}
          list:
            - ${ZG_NUM}
            - x
          flow: ["${ZG_NUM}", x]
        """)
    monkeypatch.setenv("ZG_MAP", "{a: [1, 2]}")
    recipe = load_recipe(path)
    assert recipe.zoom_levels == (3, 8)
    assert recipe.output.path == tmp_path / "somewhere" / "tiles"
    mapped = load_recipe({**recipe.raw, "process_parameters": {"m": "${ZG_MAP}"}}, base_dir=tmp_path)
    assert isinstance(mapped.parameters["m"], FrozenDict) and mapped.parameters["m"]["a"] == (1, 2)
    assert math.isnan(recipe.output.nodata)
    assert recipe.parameters_at(3) == {"num": 12, "quoted": "12", "default": 7,
                                       "default_text": "prefix-none-suffix",
                                       "empty_uses_default": "fallback", "list": [12, "x"],
                                       "flow": ["12", "x"]}


def test_exponent_floats_are_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyYAML (YAML 1.1) reads 1e5 as a string; recipes follow YAML 1.2 so nodata: -3.4e38 works."""
    monkeypatch.setenv("ZG_EXP", "2E3")
    recipe = load_recipe(write(tmp_path, MINIMAL + "  nodata: -3.4e38\nprocess_parameters:\n"
                                                   "  a: 1e5\n  b: '1e5'\n  c: ${ZG_EXP}\n"))
    assert recipe.output.nodata == -3.4e38
    assert recipe.parameters_at(0) == {"a": 100000.0, "b": "1e5", "c": 2000.0}


def test_env_in_flow_collection_hint(recipe_error: Callable[[str], tuple[str, str]]) -> None:
    msg, path = recipe_error(MINIMAL + "process_parameters: {a: ${ZG_NUM}}\n")
    assert msg.startswith(f"{path}:7: invalid YAML: ") and msg.endswith("write ${...} in quotes)")


def test_env_missing_variable(recipe_error: Callable[[str], tuple[str, str]],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZG_NOT_SET", raising=False)
    msg, path = recipe_error(MINIMAL + "process_parameters:\n  a: 1\n  b: x-${ZG_NOT_SET}\n")
    assert msg.startswith(f"{path}:9: process_parameters.b: environment variable 'ZG_NOT_SET' is not set")


# -- zoom-dependent parameters --------------------------------------------------------------
def test_zoom_dependent_parameters(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("0,2", "5,12") + dedent("""\
        process_parameters:
          sigma: {zoom<=8: 1.0, zoom > 8: 2.5}
          mode:
            zoom<6: coarse
            zoom = 6: middle
            zoom>= 7: fine
          fixed: {a: 1}
        """))
    recipe = load_recipe(path)
    assert recipe.parameters_at(5) == {"sigma": 1.0, "mode": "coarse", "fixed": {"a": 1}}
    assert recipe.parameters_at(6)["mode"] == "middle"
    assert recipe.parameters_at(9) == {"sigma": 2.5, "mode": "fine", "fixed": {"a": 1}}
    assert recipe.parameters["sigma"] == {"zoom<=8": 1.0, "zoom > 8": 2.5}  # raw kept
    params = recipe.parameters_at(9)
    params["fixed"]["a"] = 99  # a fresh plain copy each time
    assert recipe.parameters_at(9)["fixed"] == {"a": 1}


@pytest.mark.parametrize("params, line, expected", [
    ("  sigma: {zoom<=8: 1}\n", 8, "process_parameters.sigma: no condition matches zoom 9 "
                                   "(conditions: zoom<=8)"),
    ("  sigma:\n    zoom>=5: 1\n    zoom<=9: 2\n", 8,
     "process_parameters.sigma: several conditions match zoom 5 (zoom>=5, zoom<=9); exactly one must match"),
    ("  sigma: {zoom<=8: 1, other: 2}\n", 8,
     "process_parameters.sigma: expected either only zoom conditions ('zoom<=8', ...) or none as keys, "
     "found zoom conditions ['zoom<=8'] mixed with ['other']"),
    ("  sigma: {zoom=>8: 1}\n", 8, "process_parameters.sigma.zoom=>8: invalid zoom condition 'zoom=>8'"),
])
def test_zoom_dependent_parameter_errors(recipe_error: Callable[[str], tuple[str, str]], params: str,
                                         line: int, expected: str) -> None:
    msg, path = recipe_error(MINIMAL.replace("0,2", "5,10") + "process_parameters:\n" + params)
    assert msg.startswith(f"{path}:{line}: {expected}"), msg


# -- error messages name file, line, key, expected and found --------------------------------
ERRORS = [
    pytest.param("process: p\nzoom_levels: [0, 2\npyramid: {grid: geodetic}\n", 3,
                 r"invalid YAML: .*expected ',' or '\]'", id="yaml-syntax"),
    pytest.param(MINIMAL.replace("zoom_levels", "zoom_level"), 2,
                 r"unknown key 'zoom_level' \(did you mean 'zoom_levels'\?\)$", id="unknown-top-key"),
    pytest.param(MINIMAL + "colour: red\n", 7, r"unknown key 'colour' \(valid keys: process, zoom_levels, ",
                 id="unknown-key-no-suggestion"),
    pytest.param(MINIMAL.replace("grid: geodetic", "grid: geodetic\n  metatile: 2"), 5,
                 r"unknown key 'pyramid.metatile' \(did you mean 'pyramid.metatiling'\?\)$", id="unknown-pyramid-key"),
    pytest.param(MINIMAL.replace("grid: geodetic", "grid: geodetic\n  metatiling: four"), 5,
                 r"pyramid\.metatiling: expected one of 1, 2, 4, 8, 16, found 'four' \(a string\)$",
                 id="metatiling-type"),
    pytest.param(MINIMAL.replace("grid: geodetic", "grid: geodetic\n  metatiling: 3"), 5,
                 r"pyramid\.metatiling: expected one of 1, 2, 4, 8, 16, found 3 \(an integer\)$",
                 id="metatiling-value"),
    pytest.param(MINIMAL + "  dtype: uint8\n  nodata: -1\n", 8,
                 r"output\.nodata: expected a nodata value that fits dtype uint8 \(0\.\.255\), found -1 "
                 r"\(an integer\)$", id="nodata-range"),
    pytest.param(MINIMAL + "  dtype: int16\n  nodata: .nan\n", 8,
                 r"output\.nodata: expected an integer nodata for dtype int16, found nan", id="nodata-nan-int"),
    pytest.param(MINIMAL + "  dtype: uint8\n  nodata: nan\n", 8,
                 r"output\.nodata: expected an integer nodata for dtype uint8, found nan", id="nodata-nan-word-int"),
    pytest.param(MINIMAL + "  dtype: float\n", 7, r"output\.dtype: expected a numeric dtype .*found 'float' "
                                                  r"\(a string\) \(did you mean float32 or float64\?\)$",
                 id="dtype-unsized"),
    pytest.param(MINIMAL + "  creation_options: {COMPRESS: FOO}\n", 7,
                 r"output\.creation_options\.COMPRESS: GDAL's GTiff driver refuses COMPRESS=FOO: 'FOO' is not a "
                 r"valid value \(type string-select\); GDAL would ignore it$", id="creation-value-ignored"),
    pytest.param(MINIMAL + "  creation_options:\n    PREDICTOR: 7\n", 8,
                 r"output\.creation_options\.PREDICTOR: GDAL's GTiff driver refuses PREDICTOR=7: .*not supported",
                 id="creation-value-refused"),
    pytest.param(MINIMAL + "  compress: zstd\n  zstd_level: high\n", 8,
                 r"output\.zstd_level: GDAL's GTiff driver refuses ZSTD_LEVEL=high: 'high' is not a valid value "
                 r"\(type int\)", id="creation-value-direct-key"),
    pytest.param(MINIMAL + "  dtype: flaot32\n", 7, r"output\.dtype: .*\(did you mean float32", id="dtype-typo"),
    pytest.param(MINIMAL + "  nodata: zero\n", 7, r"output\.nodata: expected a number, nan or null, "
                                                  r"found 'zero'", id="nodata-type"),
    pytest.param(MINIMAL + "input:\n  dem: nowhere/dem.tif\n", 8,
                 r"input\.dem: input not found: .*nowhere/dem\.tif \(from 'nowhere/dem\.tif'\)$",
                 id="missing-input"),
    pytest.param(MINIMAL + "input:\n  dem:\n    format: raster\n    path: nowhere.tif\n", 10,
                 r"input\.dem\.path: input not found: ", id="missing-input-mapping"),
    pytest.param(MINIMAL + "input:\n  dem: {path: x.tif, format: netcdf}\n", 8,
                 r"input\.dem\.format: expected one of raster, vector, tiledir \(or mapchete's raster_file, "
                 r"vector_file, TileDirectory\), found 'netcdf'", id="input-format"),
    pytest.param(MINIMAL.replace("process: my_pkg.my_process\n", ""), 1,
                 r"missing required key 'process' \(expected a \.py file, a dotted module name", id="missing-process"),
    pytest.param(MINIMAL.replace("  path: out\n", "  dtype: uint8\n"), 5,
                 r"missing required key 'output\.path' \(expected a path string\)$", id="missing-output-path"),
    pytest.param(MINIMAL.replace("  grid: geodetic\n", "  metatiling: 2\n"), 3,
                 r"missing required key 'pyramid\.grid' \(expected a grid name", id="missing-grid"),
    pytest.param(MINIMAL.replace("zoom_levels: 0,2\n", ""), 1, r"missing required key 'zoom_levels'",
                 id="missing-zoom-levels"),
    pytest.param(MINIMAL.replace("output:\n  path: out\n", ""), 1, r"missing required key 'output'",
                 id="missing-output"),
    pytest.param(MINIMAL.replace("grid: geodetic", "grid: geodetik"), 4,
                 r"pyramid\.grid: unknown grid 'geodetik'; known grids: .*geodetic", id="unknown-grid"),
    pytest.param(MINIMAL.replace("zoom_levels: 0,2", "zoom_levels: 3,40"), 2,
                 r"zoom_levels: expected zoom levels within grid 'geodetic' \(0\.\.30\), found 3\.\.40$",
                 id="zoom-outside-grid"),
    pytest.param(MINIMAL.replace("zoom_levels: 0,2", "zoom_levels: three"), 2,
                 r"zoom_levels: expected a zoom level \(5\), .* found 'three' \(a string\)$", id="zoom-form"),
    pytest.param(MINIMAL + "  dtype: uint8\n  compress: gzip\n  dtype: int8\n", 9,
                 r"output\.dtype: duplicate key 'dtype' \(first defined on line 7\)", id="duplicate-key"),
    pytest.param(MINIMAL.replace("process: my_pkg.my_process", "process: my_pkg.my_process\nprocess: b"), 2,
                 r"process: duplicate key 'process' \(first defined on line 1\)", id="duplicate-top-key"),
    pytest.param(MINIMAL + "  dtype: float128x\n", 7, r"output\.dtype: expected a numeric dtype \(uint8, ",
                 id="dtype"),
    pytest.param(MINIMAL + "  dtype: complex64\n", 7, r"output\.dtype: expected a numeric dtype", id="dtype-complex"),
    pytest.param(MINIMAL + "  compress: gzip\n", 7, r"output\.compress: expected one of deflate, lzw, zstd, "
                 r"lzma, packbits, jpeg, webp, none, found 'gzip'", id="compress"),
    pytest.param(MINIMAL + "  compress: jpeg\n", 7, r"output\.compress: expected dtype uint8 with jpeg "
                 r"compression, found dtype float32", id="compress-dtype"),
    pytest.param(MINIMAL.replace("path: out", "path: ${ZIGGURAT_OUTPUT/x"), 6,
                 r"output\.path: expected \$\{NAME\} or \$\{NAME:-default\} .* found '\$\{ZIGGURAT_OUTPUT/x'",
                 id="env-unterminated"),
    pytest.param(MINIMAL + "input:\n  dem: {path: data/dem.tif, resampling: bogus}\n", 8,
                 r"input\.dem\.resampling: expected a resampling name \(nearest, bilinear", id="input-resampling"),
    pytest.param(MINIMAL + "  nodta: 0\n", 7, r"unknown key 'output\.nodta' \(did you mean 'output\.nodata'\?\)",
                 id="output-key-typo"),
    pytest.param(MINIMAL + "  bandss: 3\n", 7, r"unknown key 'output\.bandss' \(did you mean 'output\.bands'\?\)",
                 id="output-key-typo-2"),
    pytest.param(MINIMAL + "  FORMAT: GTiff\n", 7, r"unknown key 'output\.FORMAT' \(did you mean 'output\.format'\?\)",
                 id="output-key-case"),
    pytest.param(MINIMAL + "  creation_options: TILED=YES\n", 7, r"output\.creation_options: expected a mapping of "
                 r"GDAL creation option -> value .* found 'TILED=YES'", id="creation-options-string"),
    pytest.param(MINIMAL + "  creation_options: {BLOKXSIZE: 512}\n", 7, r"output\.creation_options\.BLOKXSIZE: "
                 r"'BLOKXSIZE' is not a GDAL GTiff creation option \(did you mean 'BLOCKXSIZE'\?\)",
                 id="creation-options-typo"),
    pytest.param(MINIMAL + "  format: netcdf\n", 7, r"output\.format: expected GTiff, PNG, PNG_hillshade, GeoJSON, "
                 r"FlatGeobuf, GeoParquet or Zarr, found 'netcdf'", id="output-format"),
    pytest.param(MINIMAL + "  metatiling: 2\n", 7, r"output\.metatiling: expected one of 1, found 2",
                 id="output-metatiling"),
    pytest.param(MINIMAL + "  bands: 0\n", 7, r"output\.bands: expected an integer >= 1, found 0", id="bands"),
    pytest.param(MINIMAL + "bounds: [10, 0, 5, 10]\n", 7, r"bounds: expected \[west, south, east, north\] "
                 r"\(4 numbers\) with west < east and south < north", id="bounds-order"),
    pytest.param(MINIMAL + "bounds: [1, 2, 3]\n", 7, r"bounds: expected \[west, south, east, north\] "
                 r"\(4 numbers\), found a list of 3 items", id="bounds-length"),
    pytest.param(MINIMAL + "bounds: [200, 0, 210, 10]\n", 7, r"bounds: expected bounds overlapping grid",
                 id="bounds-outside-grid"),
    pytest.param(MINIMAL + "bounds: [0, 0, 1, 1]\nbounds_crs: EPSG:999999\n", 8,
                 r"bounds_crs: expected a valid CRS, found 'EPSG:999999'", id="bounds-crs"),
    pytest.param(MINIMAL + "baselevels:\n  min: 1\n  lowr: bilinear\n", 9,
                 r"unknown key 'baselevels\.lowr' \(did you mean 'baselevels\.lower'\?\)", id="baselevels-key"),
    pytest.param(MINIMAL + "baselevels: {lower: smooth}\n", 7,
                 r"baselevels\.lower: expected a resampling name \(nearest, bilinear", id="baselevels-resampling"),
    pytest.param(MINIMAL + "baselevels: {max: 9}\n", 7,
                 r"baselevels\.max: expected a zoom level within zoom_levels 0\.\.2, found 9", id="baselevels-max"),
    pytest.param(MINIMAL.replace("my_pkg.my_process", "missing.py"), 1,
                 r"process: process file 'missing\.py' not found \(looked for .*missing\.py\)$", id="process-file"),
    pytest.param(MINIMAL.replace("my_pkg.my_process", "my process"), 1,
                 r"process: expected a \.py file, a dotted module name or a ready-made process name, "
                 r"found 'my process'", id="process-name"),
    pytest.param(MINIMAL.replace("grid: geodetic", "grid: {shape: [1, 1]}"), 4,
                 r"pyramid\.grid: a grid mapping needs 'bounds': \[left, bottom, right, top\], found None",
                 id="grid-type"),
    pytest.param(MINIMAL + "description: [1]\n", 7, r"description: expected a string or a mapping",
                 id="description"),
    pytest.param("- a\n- b\n", 1, r"expected the recipe to be a mapping of keys .*found a list of 2 items",
                 id="not-a-mapping"),
    pytest.param("process: !!python/name:os.system x\n", 1, r"invalid YAML: .*could not determine a constructor",
                 id="unsafe-tag"),
    pytest.param(MINIMAL + "process_parameters:\n  a: &x [*x]\n", 8, r"process_parameters\.a\[0\]: recursive "
                 r"YAML alias", id="recursive-alias"),
    pytest.param(MINIMAL + "? [a, b]\n: 1\n", 7, r"mapping keys must be plain scalars, found a list",
                 id="complex-key"),
    pytest.param(MINIMAL + "---\nprocess: q\n", 7, r"invalid YAML: expected a single document", id="two-documents"),
    pytest.param(MINIMAL + "process_parameters: [1]\n", 7, r"process_parameters: expected a mapping",
                 id="parameters-type"),
]


@pytest.mark.parametrize("text, line, pattern", ERRORS)
def test_error_messages(recipe_error: Callable[[str], tuple[str, str]], text: str, line: int,
                        pattern: str) -> None:
    msg, path = recipe_error(text)
    assert re.match(re.escape(f"{path}:{line}: ") + pattern, msg), msg


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = write(tmp_path, "# nothing\n")
    with pytest.raises(RecipeError,
                       match=rf"^{re.escape(str(empty))}: expected the recipe to be a mapping.*found null"):
        load_recipe(empty)
    with pytest.raises(RecipeError, match=r"^nope/recipe\.yaml: recipe file not found"):
        load_recipe("nope/recipe.yaml")


def test_error_is_valueerror(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_recipe(write(tmp_path, MINIMAL.replace("0,2", "x")))


# -- grids and bounds -----------------------------------------------------------------------
def test_custom_tms_grid(tmp_path: Path) -> None:
    tms = morecantile.TileMatrixSet.custom([0, 0, 100_000, 100_000], pyproj.CRS.from_epsg(3857),
                                           minzoom=0, maxzoom=6, id="MyGrid")
    write(tmp_path / "grids", tms.model_dump_json(), "my_grid.json")
    path = write(tmp_path, MINIMAL.replace("grid: geodetic", "grid: grids/my_grid.json\n  metatiling: 2")
                 .replace("0,2", "0,6"))
    recipe = load_recipe(path)
    assert recipe.grid.name == "grids/my_grid.json"
    assert recipe.grid.tms.id == "MyGrid" and recipe.grid.metatiling == 2
    assert recipe.grid.bounds() == pytest.approx(Bounds(0, 0, 100_000, 100_000))
    bad = write(tmp_path, MINIMAL.replace("0,2", "0,7").replace("grid: geodetic", "grid: grids/my_grid.json"))
    with pytest.raises(RecipeError, match=r":2: zoom_levels: expected zoom levels within grid "
                                          r"'grids/my_grid.json' \(0\.\.6\), found 0\.\.7"):
        load_recipe(bad)
    write(tmp_path / "grids", '{"id": "x"}', "broken.json")
    broken = write(tmp_path, MINIMAL.replace("grid: geodetic", "grid: grids/broken.json"))
    with pytest.raises(RecipeError, match=r":4: pyramid\.grid: expected a TileMatrixSet JSON file, "
                                          r"'grids/broken\.json' is not one"):
        load_recipe(broken)
    missing = write(tmp_path, MINIMAL.replace("grid: geodetic", "grid: grids/none.json"))
    with pytest.raises(RecipeError, match=r":4: pyramid\.grid: cannot read TileMatrixSet file "
                                          r"'grids/none\.json'"):
        load_recipe(missing)


def test_bounds_in_grid_crs(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, MINIMAL + "bounds: [10, 40.5, 12, 42]\n"))
    assert recipe.bounds == Bounds(10.0, 40.5, 12.0, 42.0) and recipe.bounds_crs is None
    assert isinstance(recipe.bounds, Bounds)


def test_bounds_crs_transformed(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, MINIMAL + dedent("""\
        bounds: [1113194.9, 5012341.7, 1335833.9, 5160979.4]
        bounds_crs: EPSG:3857
        """)))
    assert recipe.bounds_crs == "EPSG:3857"
    assert recipe.bounds == pytest.approx((10.0, 41.0, 12.0, 42.0), abs=1e-3)


# -- immutability, pickling, describe_key ---------------------------------------------------
@pytest.fixture
def full_recipe(tmp_path: Path, dem: Path) -> Recipe:
    return load_recipe(write(tmp_path, MINIMAL + dedent("""\
          stac: {properties: {levels: [1, [2, 3]]}}
        input:
          dem: {path: data/dem.tif, extra: {a: [1]}}
        process_parameters:
          sigma: {zoom<=1: 1, zoom>1: 2}
          nested: {a: [1, {b: 2}]}
        bounds: [0, 0, 10, 10]
        """)))


def test_immutability(full_recipe: Recipe) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        full_recipe.zoom_levels = (1, 1)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        full_recipe.output.dtype = "uint8"  # type: ignore[misc]
    with pytest.raises(TypeError):
        full_recipe.parameters["sigma"] = 3  # type: ignore[index]
    with pytest.raises(TypeError):
        full_recipe.inputs["dem"].options["extra"]["a"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        full_recipe.raw["output"]["path"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        full_recipe.parameters._data = {}  # type: ignore[attr-defined]
    assert full_recipe.output.options["stac"]["properties"]["levels"] == (1, (2, 3))
    assert full_recipe.parameters["nested"]["a"] == (1, FrozenDict({"b": 2}))
    assert full_recipe.parameters["nested"] == {"a": (1, {"b": 2})}  # Mapping equality by content


def test_pickle_round_trip(full_recipe: Recipe) -> None:
    clone = pickle.loads(pickle.dumps(full_recipe))
    assert clone == full_recipe
    assert clone is not full_recipe
    assert isinstance(clone.parameters, FrozenDict) and isinstance(clone.parameters["nested"], FrozenDict)
    assert clone.parameters_at(2) == full_recipe.parameters_at(2) == {"sigma": 2, "nested": {"a": [1, {"b": 2}]}}
    assert clone.grid == full_recipe.grid and clone.output_grid == full_recipe.output_grid
    assert clone.describe_key("output", "dtype") == full_recipe.describe_key("output", "dtype")


def test_describe_key(full_recipe: Recipe) -> None:
    src = str(full_recipe.path)
    assert full_recipe.describe_key("output", "path") == f"{src}:6 key output.path"
    assert full_recipe.describe_key("output.stac") == f"{src}:7 key output.stac"
    assert full_recipe.describe_key("process_parameters", "sigma") == f"{src}:11 key process_parameters.sigma"
    assert full_recipe.describe_key("bounds", 2) == f"{src}:13 key bounds[2]"
    # absent keys point at the nearest ancestor that has a line
    assert full_recipe.describe_key("output", "dtype") == f"{src}:5 key output.dtype"


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, MINIMAL + dedent("""\
          <<: {dtype: uint8, nodata: 255, bands: 2}
          bands: 3
        process_parameters:
          a: &shared [1, 2]
          b: *shared
        """)))
    assert (recipe.output.dtype, recipe.output.nodata, recipe.output.bands) == ("uint8", 255, 3)
    assert recipe.parameters_at(0) == {"a": [1, 2], "b": [1, 2]}
