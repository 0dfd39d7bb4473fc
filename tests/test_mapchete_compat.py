"""mapchete recipes and process files, run unchanged.

Process files here are written in mapchete's style (`def execute(mp)`, `from mapchete import
...`, mapchete's markers, "empty", `(array, tags)`); recipes are `.mapchete` files with
mapchete's keys. Where mapchete is installed (the test extra has it), its own run of the
same recipe is the reference, pixel for pixel.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import rasterio

from ziggurat.core.errors import OutputError, ProcessError, RecipeError
from ziggurat.engine.run import execute
from ziggurat.process.compat import shim
from ziggurat.recipe import load_recipe

from conftest import DATA, position_raster

#: a geodetic zoom-6 aligned source: 64 x 64 px at 180/256/64 deg per pixel
RES = 180 / 256 / 64
ORIGIN = 896 * RES   # on the pixel grid, inside one tile (its pixels 128..191)
EXAMPLE = '''
def execute(mp):
    with mp.open("file1") as raster_file:
        if raster_file.is_empty():
            return "empty"
        dem = raster_file.read(resampling="bilinear")
    return dem
'''


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src.tif"
    position_raster(path, left=ORIGIN, top=ORIGIN, res=RES, width=64, height=64)
    return path


def recipe_text(src: Path, out: Path, *, process: str = "proc.py", extra: str = "", zoom: int = 6,
                inputs: str | None = None, output_extra: str = "") -> str:
    inputs = inputs if inputs is not None else f"    file1: {src}\n"
    return (f"process: {process}\nzoom_levels: {zoom}\npyramid:\n  grid: geodetic\ninput:\n{inputs}"
            f"output:\n  path: {out}\n  format: GTiff\n  dtype: float32\n  bands: 1\n  nodata: -9999\n"
            f"{output_extra}{extra}")


def tiles(out: Path) -> dict[tuple[int, int, int], np.ndarray]:
    found = {}
    for path in sorted(out.glob("*/*/*.tif")):
        z, r, c = (int(p) for p in path.relative_to(out).with_suffix("").parts)
        with rasterio.open(path) as ds:
            found[(z, r, c)] = ds.read(masked=True)
    return found


def source_pixels(src: Path) -> np.ndarray:
    with rasterio.open(src) as ds:
        return ds.read(1)


@pytest.fixture
def no_mapchete() -> Iterator[None]:
    """As if mapchete were not installed: the shim answers `import mapchete`."""
    saved = {name: mod for name, mod in sys.modules.items() if name == "mapchete" or name.startswith("mapchete.")}
    for name in saved:
        del sys.modules[name]
    shim.install(force=True)
    try:
        yield
    finally:
        shim.uninstall()
        sys.modules.update(saved)


# -- the mp API -----------------------------------------------------------------------------------
def test_mp_process_runs_unchanged_and_reads_what_mapchete_reads(tmp_path, src, write_recipe):
    out = tmp_path / "out"
    recipe = write_recipe(recipe_text(src, out), name="r.mapchete", process=EXAMPLE)
    summary = execute(recipe, executor="sequential")
    assert summary.ok and summary.output_tiles == 1
    ((index, data),) = tiles(out).items()
    assert index[0] == 6
    tile_data = data[0]
    valid = ~np.ma.getmaskarray(tile_data)
    assert valid.sum() == 64 * 64          # the source covers one 64 px block of the tile, aligned
    rows, cols = np.nonzero(valid)
    block = np.ma.getdata(tile_data)[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    np.testing.assert_array_equal(block, source_pixels(src))   # no pixel misplaced


def test_an_mp_process_in_a_yaml_recipe_needs_no_inputs_in_its_signature(tmp_path, src, write_recipe):
    """mapchete's rules apply when `execute` takes `mp`, whatever the recipe's suffix."""
    recipe = write_recipe(recipe_text(src, tmp_path / "out"), process=EXAMPLE)
    assert execute(recipe, executor="sequential").output_tiles == 1


def test_parameters_the_process_does_not_take_warn_and_are_not_passed(tmp_path, src, write_recipe, caplog):
    process = EXAMPLE.replace("def execute(mp):", "def execute(mp, gain=1.0):").replace(
        "return dem", "return dem * gain")
    recipe = write_recipe(recipe_text(src, tmp_path / "out", extra="process_parameters:\n  gain: 2\n  unused: 3\n"),
                          name="r.mapchete", process=process)
    with caplog.at_level(logging.WARNING, logger="ziggurat.process.load"):
        summary = execute(recipe, executor="sequential")
    assert summary.ok
    assert any("does not take 'unused'" in r.getMessage() and "r.mapchete:" in r.getMessage() for r in caplog.records)
    (data,) = tiles(tmp_path / "out").values()
    assert np.ma.max(data) == 2 * source_pixels(src).max()


def test_a_required_parameter_missing_is_named_before_any_tile(tmp_path, src, write_recipe):
    process = EXAMPLE.replace("def execute(mp):", "def execute(mp, threshold):")
    recipe = write_recipe(recipe_text(src, tmp_path / "out"), name="r.mapchete", process=process)
    with pytest.raises(RecipeError, match=r"requires 'threshold'"):
        execute(recipe, executor="sequential")
    assert not (tmp_path / "out" / "6").exists()


def test_mp_open_of_an_input_not_given_at_this_zoom_fails_the_tile_naming_it(tmp_path, src, write_recipe):
    inputs = f"    file1:\n      zoom>=7: {src}\n"
    recipe = write_recipe(recipe_text(src, tmp_path / "out", inputs=inputs), name="r.mapchete", process=EXAMPLE)
    with pytest.raises(ProcessError, match=r"zoom 6.*file1 not found in config as input"):
        execute(recipe, executor="sequential")


def test_mp_object_carries_tile_params_and_output_params(tmp_path, src, write_recipe):
    process = '''
    import numpy as np

    def execute(mp, factor=1):
        t = mp.tile
        assert (t.zoom, t.pixelbuffer) == (6, 2) and t.shape == (260, 260)   # mapchete: buffered
        assert t.affine.c == t.bounds.left and t.bounds.right - t.bounds.left == 260 * t.pixel_x_size
        assert mp.params["factor"] == 3 and set(mp.params["input"]) == {"file1"}
        assert mp.output_params["dtype"] == "float32" and mp.output_params["nodata"] == -9999
        assert mp.output_params["path"].endswith("out")
        with mp.open("file1") as inp:
            if inp.is_empty():
                return "empty"
            data = inp.read(indexes=1, resampling="nearest", matching_method="gdal")
        shade = mp.hillshade(data)
        clipped = mp.clip(data, [], inverted=True)       # no geometry, inverted: keeps everything
        assert shade.dtype == np.uint8 and clipped.mask.sum() == data.mask.sum()
        lines = mp.contours(data, interval=1000, field="elev")
        assert lines and all(set(f["properties"]) == {"elev"} for f in lines)
        return data * factor
    '''
    text = recipe_text(src, tmp_path / "out", extra="process_parameters:\n  factor: 3\n").replace(
        "  grid: geodetic\n", "  grid: geodetic\n  pixelbuffer: 2\n")
    recipe = write_recipe(text, name="r.mapchete", process=process)
    assert execute(recipe, executor="sequential").ok


def test_read_takes_mapchete_arguments_and_names_unknown_ones(tmp_path, src, write_recipe):
    process = EXAMPLE.replace('read(resampling="bilinear")', 'read(resampling="bilinear", bogus=1)')
    recipe = write_recipe(recipe_text(src, tmp_path / "out"), name="r.mapchete", process=process)
    with pytest.raises(ProcessError, match="unexpected arguments bogus"):
        execute(recipe, executor="sequential")


def test_tags_returned_with_the_array_are_written_into_the_geotiff(tmp_path, src, write_recipe):
    process = EXAMPLE.replace("return dem", 'return dem, {1: {"band_tag": True}, "filewide_tag": "value"}')
    out = tmp_path / "out"
    execute(write_recipe(recipe_text(src, out), name="r.mapchete", process=process), executor="sequential")
    (path,) = out.glob("6/*/*.tif")
    with rasterio.open(path) as ds:
        assert ds.tags()["filewide_tag"] == "value" and ds.tags(1)["band_tag"] == "True"


def test_the_process_can_be_code_lines_in_the_recipe(tmp_path, src, write_recipe):
    lines = "".join(f"  - '{line}'\n" for line in EXAMPLE.strip().splitlines())
    text = recipe_text(src, tmp_path / "out").replace("process: proc.py\n", "process:\n" + lines)
    recipe = write_recipe(text, name="r.mapchete")
    assert load_recipe(recipe).process_code is not None
    assert execute(recipe, executor="sequential").output_tiles == 1
    assert "def execute(mp):" in (tmp_path / "out" / ".ziggurat" / "process.py").read_text()


# -- typed injection and `import mapchete` ---------------------------------------------------------
TYPED = '''
from mapchete import (MapcheteNodataTile, OutputNodataValue, OutputPath, RasterInput, Tile, TileBuffer,
                      TilePixelBuffer)


def execute(raster: RasterInput, tile: Tile, pixelbuffer: TilePixelBuffer, buffer: TileBuffer,
            nodata: OutputNodataValue, path: OutputPath):
    assert isinstance(raster, RasterInput)
    assert pixelbuffer == 2 and abs(buffer - 2 * tile.pixel_x_size) < 1e-12 and tile.shape == (260, 260)
    assert nodata == -9999 and str(path).endswith("out")
    if raster.is_empty():
        raise MapcheteNodataTile
    return raster.read(resampling="bilinear")
'''


def _typed_recipe(tmp_path: Path, src: Path, write_recipe: Any) -> Path:
    text = recipe_text(src, tmp_path / "out", inputs=f"    raster: {src}\n").replace(
        "  grid: geodetic\n", "  grid: geodetic\n  pixelbuffer: 2\n")
    return write_recipe(text, name="r.mapchete", process=TYPED)


def test_typed_parameters_get_mapchete_values_with_the_shim(tmp_path, src, write_recipe, no_mapchete):
    recipe = _typed_recipe(tmp_path, src, write_recipe)
    summary = execute(recipe, executor="sequential", zoom=6)
    assert summary.ok and summary.output_tiles == 1
    assert sys.modules["mapchete"].__dict__.get("__ziggurat_shim__")


def test_mapchete_nodata_tile_of_the_shim_is_empty(tmp_path, src, write_recipe, no_mapchete):
    process = "from mapchete.errors import MapcheteNodataTile\n\ndef execute(mp):\n    raise MapcheteNodataTile\n"
    recipe = write_recipe(recipe_text(src, tmp_path / "out"), name="r.mapchete", process=process)
    summary = execute(recipe, executor="sequential")
    assert summary.ok and summary.empty == 1 and summary.output_tiles == 0


def test_typed_parameters_and_nodata_tile_with_mapchete_installed(tmp_path, src, write_recipe):
    pytest.importorskip("mapchete")
    recipe = _typed_recipe(tmp_path, src, write_recipe)
    assert execute(recipe, executor="sequential").output_tiles == 1
    process = "from mapchete.errors import MapcheteNodataTile\n\ndef execute(mp):\n    raise MapcheteNodataTile\n"
    recipe = write_recipe(recipe_text(src, tmp_path / "out2"), name="r2.mapchete", process=process)
    assert execute(recipe, executor="processes", workers=1).empty == 1   # in a worker process too


SPECIAL_KWARGS = '''
from mapchete import OutputPath, Tile
from mapchete.path import MPath
from mapchete.tile import BufferedTile


def execute(raster, tile: Tile, path: OutputPath):
    assert isinstance(tile, BufferedTile) and isinstance(path, MPath), (type(tile), type(path))
    assert tile.id == (6, 28, 67) and tile.pixelbuffer == 2 and tile.shape == (260, 260)
    assert path.name == "out"
    return raster.read(resampling="bilinear")
'''


def test_mapchetes_own_tile_and_path_where_a_process_annotates_with_mapchetes_types(tmp_path, src, write_recipe):
    """mapchete's examples/special_kwargs: with mapchete installed, a `Tile` parameter receives
    its `BufferedTile` and an `OutputPath` its `MPath` (built in the worker, once per grid)."""
    pytest.importorskip("mapchete")
    text = recipe_text(src, tmp_path / "out", inputs=f"    raster: {src}\n").replace(
        "  grid: geodetic\n", "  grid: geodetic\n  pixelbuffer: 2\n")
    recipe = write_recipe(text, name="r.mapchete", process=SPECIAL_KWARGS)
    assert execute(recipe, executor="sequential").output_tiles == 1
    assert execute(recipe, executor="processes", workers=1, overwrite=True).output_tiles == 1


def test_shim_is_not_installed_over_a_real_mapchete():
    pytest.importorskip("mapchete")
    assert shim.real_mapchete() and shim.install() is False


# -- recipe keys ------------------------------------------------------------------------------------
def test_deprecated_keys_map_as_mapchete_maps_them(tmp_path, src, caplog):
    old = tmp_path / "old.mapchete"
    old.write_text(f"process_file: proc.py\nprocess_zoom: 6\nprocess_bounds: [12, 11, 13, 12]\n"
                   f"input_files:\n  file1: {src}\noutput:\n  type: geodetic\n  path: {tmp_path / 'out'}\n"
                   "  format: GTiff\n  dtype: float32\n  bands: 1\nmetatiling: 2\n")
    (tmp_path / "proc.py").write_text(EXAMPLE)
    with caplog.at_level(logging.WARNING, logger="ziggurat.recipe"):
        recipe = load_recipe(old)
    assert recipe.process == "proc.py" and recipe.zoom_levels == (6, 6) and tuple(recipe.bounds) == (12, 11, 13, 12)
    assert recipe.grid.name == "geodetic" and recipe.grid.metatiling == 2 and set(recipe.inputs) == {"file1"}
    assert recipe.output.metatiling == 2                  # mapchete: the pyramid's metatiling
    assert any("'process_file' is deprecated" in r.getMessage() for r in caplog.records)


def test_output_metatiling_defaults_to_the_pyramids_only_in_mapchete_files(tmp_path, src, write_recipe):
    text = recipe_text(src, tmp_path / "out").replace("  grid: geodetic\n", "  grid: geodetic\n  metatiling: 4\n")
    (tmp_path / "proc.py").write_text(EXAMPLE)
    assert load_recipe(write_recipe(text, name="a.mapchete")).output.metatiling == 4
    assert load_recipe(write_recipe(text, name="a.yaml")).output.metatiling == 1


def test_unknown_top_level_keys_are_parameters_in_mapchete_files_and_errors_in_yaml(tmp_path, src, write_recipe):
    process = EXAMPLE.replace("def execute(mp):", "def execute(mp, gain):").replace("return dem", "return dem * gain")
    text = recipe_text(src, tmp_path / "out", extra="gain: 2\n")
    recipe = load_recipe(write_recipe(text, name="a.mapchete", process=process))
    assert recipe.parameters["gain"] == 2
    with pytest.raises(RecipeError, match=r"a\.yaml:\d+: unknown key 'gain'"):
        load_recipe(write_recipe(text, name="a.yaml"))


def test_zoom_dependent_null_and_grouped_inputs(tmp_path, src, write_recipe):
    other = tmp_path / "other.tif"
    position_raster(other, left=ORIGIN, top=ORIGIN, res=RES, width=64, height=64, nodata=-9999.0)
    process = '''
    def execute(mp, group, optional=None, by_zoom=None):
        assert optional is None                        # a null input is absent: the default applies
        names = [name for name, _ in group]
        assert names == ["a", "nested"] and [n for n, _ in group[1][1]] == ["b"]
        (_, a), (_, [(_, b)]) = group
        data = a.read() + b.read()
        if mp.tile.zoom == 6:
            assert by_zoom is not None and "by_zoom" in mp.input
            data = data + by_zoom.read()
        else:
            assert by_zoom is None and "by_zoom" not in mp.input
        return data
    '''
    inputs = (f"    optional:\n    by_zoom:\n      zoom>=6: {src}\n    group:\n      a: {src}\n      nested:\n"
              f"        b: {other}\n")
    text = recipe_text(src, tmp_path / "out", inputs=inputs).replace("zoom_levels: 6", "zoom_levels: [5, 6]")
    recipe = write_recipe(text, name="r.mapchete", process=process)
    loaded = load_recipe(recipe)
    assert {cfg.argument for cfg in loaded.inputs.values()} == {"by_zoom", "group/a", "group/nested/b"}
    assert loaded.inputs["by_zoom (zoom>=6)"].zooms == (6,)
    summary = execute(recipe, executor="sequential")
    assert summary.ok and summary.written == 2
    z6 = tiles(tmp_path / "out")
    data = next(v for k, v in z6.items() if k[0] == 6)
    assert np.ma.max(data) == 3 * source_pixels(src).max()


def test_grid_as_a_mapchete_mapping(tmp_path, src, write_recipe):
    (tmp_path / "proc.py").write_text(EXAMPLE)
    text = recipe_text(src, tmp_path / "out").replace(
        "  grid: geodetic\n", "  grid:\n    shape: [1, 2]\n    bounds: [-180, -90, 180, 90]\n    epsg: 4326\n")
    custom = load_recipe(write_recipe(text, name="c.mapchete"))
    named = load_recipe(write_recipe(recipe_text(src, tmp_path / "out"), name="n.mapchete"))
    for zoom, row, col in [(0, 0, 1), (6, 5, 100), (12, 100, 3000)]:
        assert custom.grid.tile(zoom, row, col).bounds == pytest.approx(named.grid.tile(zoom, row, col).bounds)
    polar = text.replace("    shape: [1, 2]\n    bounds: [-180, -90, 180, 90]\n    epsg: 4326\n",
                         "    shape: [1, 1]\n    bounds: [-6422528.0, -6422528.0, 6422528.0, 6422528.0]\n"
                         "    proj: +proj=ortho +lat_0=-90 +lon_0=0 +ellps=WGS84 +units=m +no_defs\n")
    grid = load_recipe(write_recipe(polar, name="p.mapchete")).grid
    assert "+lat_0=-90" in grid.crs.to_proj4()   # the south pole, not the north pole's ESRI code
    assert grid.tile(5, 0, 0).bounds.left == -6422528.0


def test_tile_path_schema_col_first_is_written_verified_described_and_read(tmp_path, src, write_recipe):
    from ziggurat.audit.checks import verify

    out = tmp_path / "out"
    text = recipe_text(src, out, output_extra="  tile_path_schema: '{zoom}/{col}/{row}.{extension}'\n")
    execute(write_recipe(text, name="r.mapchete", process=EXAMPLE), executor="sequential")
    ((zoom, first, second),) = [tuple(int(p) for p in f.relative_to(out).with_suffix("").parts)
                                for f in out.glob("*/*/*.tif")]
    tile_bounds = load_recipe(tmp_path / "r.mapchete").grid.tile(zoom, second, first).bounds
    with rasterio.open(out / str(zoom) / str(first) / f"{second}.tif") as ds:
        assert tuple(ds.bounds) == pytest.approx(tuple(tile_bounds))   # zoom/col/row: x first
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["output"]["tile_path_schema"] == meta["driver"]["tile_path_schema"] == "{zoom}/{col}/{row}.{extension}"
    item = json.loads((out / "out.json").read_text())
    assert item["asset_templates"]["data"]["href"] == "{TileMatrix}/{TileCol}/{TileRow}.tif"
    assert verify(out).ok
    again = tmp_path / "again"
    execute(write_recipe(recipe_text(src, again, inputs=f"    file1: {out}\n"), name="again.mapchete"),
            executor="sequential")
    ((a,), (b,)) = tiles(out).values(), tiles(again).values()   # one tile each (out's key is col/row)
    assert np.ma.allequal(a, b) and b.count() == 64 * 64
    mixed = recipe_text(src, out)   # the default layout over a col-first directory: refused
    with pytest.raises(OutputError, match="tile_path_schema"):
        execute(write_recipe(mixed, name="mixed.mapchete"), executor="sequential")
    bad = text.replace("{col}/{row}", "{row}-{col}")
    with pytest.raises(RecipeError, match=r"bad\.mapchete:\d+: output\.tile_path_schema: expected .*zoom folders"):
        load_recipe(write_recipe(bad, name="bad.mapchete"))


def test_dask_specs_worker_environment_and_input_gdal_options_reach_the_workers(tmp_path, src, write_recipe):
    process = '''
    import os

    def execute(mp):
        with mp.open("file1") as inp:
            data = inp.read()
        assert os.environ["GDAL_HTTP_TIMEOUT"] == "30" and os.environ["CPL_VSIL_CURL_CACHE_SIZE"] == "0"
        return data * 0 + float(os.environ["ZIGGURAT_TEST_VALUE"])
    '''
    inputs = (f"    file1:\n      format: raster_file\n      path: {src}\n      gdal_options:\n"
              "        CPL_VSIL_CURL_CACHE_SIZE: 0\n")
    extra = ("dask_specs:\n  worker_cores: 2\n  worker_environment:\n    ZIGGURAT_TEST_VALUE: '7'\n"
             "    GDAL_HTTP_TIMEOUT: '30'\n")
    recipe = write_recipe(recipe_text(src, tmp_path / "out", inputs=inputs, extra=extra), name="r.mapchete",
                          process=process)
    assert execute(recipe, executor="processes", workers=1).ok
    (data,) = tiles(tmp_path / "out").values()
    assert np.ma.max(data) == np.ma.min(data) == 7


def test_another_recipe_as_input_reads_its_output(tmp_path, src, write_recipe):
    first = write_recipe(recipe_text(src, tmp_path / "first"), name="first.mapchete", process=EXAMPLE)
    second = write_recipe(recipe_text(src, tmp_path / "second", inputs="    file1: first.mapchete\n"),
                          name="second.mapchete")
    with pytest.raises(RecipeError, match=r"has not written its output .*first.*ziggurat execute first\.mapchete"):
        load_recipe(second)
    execute(first, executor="sequential")
    assert load_recipe(second).inputs["file1"].format == "tiledir"
    execute(second, executor="sequential")
    a, b = tiles(tmp_path / "first"), tiles(tmp_path / "second")
    assert a.keys() == b.keys() and all(np.ma.allequal(a[k], b[k]) for k in a)


def test_a_mapchete_tile_directory_is_an_input(tmp_path, write_recipe):
    folder = tmp_path / "cleantopo"
    shutil.copytree(DATA / "mapchete_cleantopo", folder)
    text = (f"process: mapchete.processes.convert\nzoom_levels: 1\npyramid:\n  grid: geodetic\n"
            f"input:\n  inp:\n    format: TileDirectory\n    path: {folder}\n"
            f"output:\n  path: {tmp_path / 'out'}\n  format: GTiff\n  dtype: uint16\n  bands: 1\n")
    summary = execute(write_recipe(text, name="r.mapchete"), executor="sequential")
    assert summary.output_tiles == 2
    for name in ("2", "3"):
        with rasterio.open(folder / "1" / "1" / f"{name}.tif") as a, \
                rasterio.open(tmp_path / "out" / "1" / "1" / f"{name}.tif") as b:
            np.testing.assert_array_equal(a.read(), b.read())


# -- ready-made processes under mapchete's names ---------------------------------------------------
def test_mapchete_convert_with_its_parameters(tmp_path, src, write_recipe):
    text = recipe_text(src, tmp_path / "out", process="mapchete.processes.convert", inputs=f"    inp: {src}\n",
                       extra="process_parameters:\n  scale_offset: 1\n  scale_ratio: 0.5\n  band_indexes: [1]\n"
                             "  td_matching_method: min\n")
    assert execute(write_recipe(text, name="r.mapchete"), executor="sequential").ok
    (data,) = tiles(tmp_path / "out").values()
    assert np.ma.max(data) == (source_pixels(src).max() + 1) * 0.5


def test_mapchete_example_process_by_module_name(tmp_path, src, write_recipe):
    text = recipe_text(src, tmp_path / "out", process="mapchete.processes.examples.example_process")
    assert execute(write_recipe(text, name="r.mapchete"), executor="sequential").output_tiles == 1


def test_mapchete_clip_masks_outside_the_features(tmp_path, write_recipe):
    text = ("process: mapchete.processes.clip\nzoom_levels: 5\npyramid:\n  grid: geodetic\n"
            f"input:\n  inp: {DATA / 'cleantopo_br.tif'}\n  clip: {DATA / 'aoi_br.geojson'}\n"
            f"output:\n  path: {tmp_path / 'out'}\n  format: GTiff\n  dtype: uint16\n  bands: 1\n")
    assert execute(write_recipe(text, name="r.mapchete"), executor="sequential").ok
    data = tiles(tmp_path / "out")
    assert data and all(np.ma.getmaskarray(v).any() for v in data.values())


# -- side by side with mapchete ---------------------------------------------------------------------
def _run_mapchete(recipe: Path) -> None:
    exe = Path(sys.executable).parent / "mapchete"
    proc = subprocess.run([str(exe), "execute", recipe.name, "--concurrency", "none", "--no-pbar"],
                          cwd=recipe.parent, capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-2000:]


SIDE_BY_SIDE = {
    # name: (process, input line, pyramid extra, output lines, zooms)
    "example": ("../example_process.py", "file1: cleantopo_br.tif", "  pixelbuffer: 20\n  metatiling: 8\n",
                "  dtype: uint16\n  bands: 1\n  format: GTiff\n  pixelbuffer: 20\n", "0, 5"),
    "convert_scaled": ("mapchete.processes.convert", "inp: cleantopo_br.tif", "  metatiling: 2\n",
                       "  dtype: float32\n  bands: 1\n  format: GTiff\n", "3, 5"),
    "hillshade_png": ("mapchete.processes.hillshade", "dem: cleantopo_br.tif", "  pixelbuffer: 5\n",
                      "  bands: 2\n  format: PNG\n", "2, 5"),
    "hillshade_png_hillshade": ("mapchete.processes.hillshade", "dem: cleantopo_br.tif", "  pixelbuffer: 5\n",
                                "  format: PNG_hillshade\n", "4, 5"),
    "clip": ("mapchete.processes.clip", "inp: cleantopo_br.tif\n    clip: aoi_br.geojson", "",
             "  dtype: uint16\n  bands: 1\n  format: GTiff\n", "4, 5"),
    # cleantopo_br_mercator: tiles whose buffer reaches past the antimeridian are read in parts
    "mercator_antimeridian": ("../example_process.py", "file1: cleantopo_br.tif",
                              "  grid: mercator\n  pixelbuffer: 20\n  metatiling: 2\n",
                              "  dtype: uint16\n  bands: 1\n  format: GTiff\n  pixelbuffer: 20\n", "0, 5"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SIDE_BY_SIDE))
def test_same_pixels_as_mapchete(tmp_path, name):
    pytest.importorskip("mapchete")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        from mapchete_recipes import compare
    finally:
        sys.path.pop(0)
    process, inp, pyramid, output, zooms = SIDE_BY_SIDE[name]
    params = "process_parameters:\n  scale_ratio: 0.5\n  scale_offset: 3\n" if name == "convert_scaled" else ""
    for tool in ("mapchete", "ziggurat"):
        data = tmp_path / tool / "testdata"
        data.mkdir(parents=True)
        for f in ("cleantopo_br.tif", "aoi_br.geojson"):
            shutil.copy(DATA / f, data / f)
        (tmp_path / tool / "example_process.py").write_text(EXAMPLE)
        (data / f"{name}.mapchete").write_text(
            f"process: {process}\nzoom_levels: [{zooms}]\npyramid:\n"
            f"{'' if 'grid:' in pyramid else '  grid: geodetic'}\n{pyramid}"
            f"input:\n    {inp}\noutput:\n  path: out\n{output}{params}")
    _run_mapchete(tmp_path / "mapchete" / "testdata" / f"{name}.mapchete")
    execute(tmp_path / "ziggurat" / "testdata" / f"{name}.mapchete", executor="sequential")
    verdict = compare(tmp_path / "mapchete" / "testdata" / "out", tmp_path / "ziggurat" / "testdata" / "out")
    assert verdict == "identical"


@pytest.mark.slow
def test_a_uint16_source_into_uint8_saturates_where_mapchete_wraps(tmp_path):
    """mapchete's examples/clip (cleantopo_br, 10,638-14,708, into uint8): mapchete's `astype` wraps
    (14,000 -> 176; a multiple of 256 -> 0, which is nodata: those pixels vanish), ziggurat saturates
    at 255 and counts the clipped pixels. Every pixel where the two differ is that."""
    pytest.importorskip("mapchete")
    for tool in ("mapchete", "ziggurat"):
        data = tmp_path / tool / "testdata"
        data.mkdir(parents=True)
        for f in ("cleantopo_br.tif", "aoi_br.geojson"):
            shutil.copy(DATA / f, data / f)
        (data / "clip.mapchete").write_text(
            "process: mapchete.processes.clip\nzoom_levels: 5\npyramid:\n  grid: geodetic\n"
            "input:\n  inp: cleantopo_br.tif\n  clip: aoi_br.geojson\n"
            "output:\n  path: out\n  format: GTiff\n  dtype: uint8\n  bands: 1\n")
    _run_mapchete(tmp_path / "mapchete" / "testdata" / "clip.mapchete")
    summary = execute(tmp_path / "ziggurat" / "testdata" / "clip.mapchete", executor="sequential")
    theirs, ours = tiles(tmp_path / "mapchete" / "testdata" / "out"), tiles(tmp_path / "ziggurat" / "testdata" / "out")
    compared = vanished = 0
    for key, mine in ours.items():
        other = theirs[key]
        mine_mask, other_mask = np.ma.getmaskarray(mine), np.ma.getmaskarray(other)
        assert not (mine_mask & ~other_mask).any()        # ziggurat never masks what mapchete keeps
        vanished += int((other_mask & ~mine_mask).sum())
        assert (np.ma.getdata(mine)[other_mask & ~mine_mask] == 255).all()   # wrapped to 0 = nodata there
        both = ~mine_mask & ~other_mask
        assert (np.ma.getdata(mine)[both] == 255).all()   # every source value is above 255
        compared += int(both.sum())
        assert (np.ma.getdata(other)[both] != 255).any()
    assert compared > 10_000 and vanished > 0
    assert summary.cast.get("clipped", 0) >= compared   # and the run says so


def test_ziggurat_output_is_a_mapchete_tile_directory_input(tmp_path, src, write_recipe):
    """metadata.json carries mapchete's `driver` and `pyramid`: mapchete reads ziggurat's tiles."""
    pytest.importorskip("mapchete")
    import mapchete

    out = tmp_path / "out"
    execute(write_recipe(recipe_text(src, out), name="r.mapchete", process=EXAMPLE), executor="sequential")
    config = {"process": "mapchete.processes.convert", "zoom_levels": 6, "pyramid": {"grid": "geodetic"},
              "input": {"inp": {"format": "TileDirectory", "path": str(out)}},
              "output": {"path": str(tmp_path / "again"), "format": "GTiff", "dtype": "float32", "bands": 1,
                         "nodata": -9999}, "config_dir": str(tmp_path),
              "bounds": [ORIGIN - 1, ORIGIN - 1, ORIGIN + 1, ORIGIN + 1]}
    with mapchete.open(config) as mp:
        list(mp.execute(concurrency=None))
    a = tiles(out)
    b = {k: v for k, v in tiles(tmp_path / "again").items() if v.count()}   # mapchete may write empty tiles
    assert a.keys() == b.keys() and all(np.ma.allequal(a[k], b[k]) for k in a)


def test_no_mapchete_import_at_run_time_and_a_clean_cli_run(tmp_path, src, write_recipe):
    """A .mapchete recipe with an mp process runs from the CLI without importing mapchete."""
    recipe = write_recipe(recipe_text(src, tmp_path / "out"), name="r.mapchete", process=EXAMPLE)
    code = ("import sys\nfrom ziggurat.cli.app import main\n"
            "try:\n    main(['execute', sys.argv[1], '-e', 'sequential'])\nexcept SystemExit as e:\n"
            "    assert e.code in (0, None), e.code\n"
            "assert 'mapchete' not in sys.modules or sys.modules['mapchete'].__dict__.get('__ziggurat_shim__')\n"
            "print('OK')\n")
    proc = subprocess.run([sys.executable, "-c", code, str(recipe)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "1 tiles written" in proc.stdout + proc.stderr


def test_removed_mp_methods_say_what_to_do_instead(tmp_path, src, write_recipe):
    process = "def execute(mp):\n    mp.write(None)\n"
    recipe = write_recipe(recipe_text(src, tmp_path / "out"), name="r.mapchete", process=process)
    with pytest.raises(ProcessError, match=r"mp\.write\(\) was removed from mapchete: return the array"):
        execute(recipe, executor="sequential")


def test_ziggurat_contours_take_mapchetes_field_name(tmp_path, write_recipe):
    import fiona

    text = ("process: contours\nzoom_levels: 5\npyramid:\n  grid: geodetic\n  pixelbuffer: 1\n"
            f"input:\n  dem: {DATA / 'cleantopo_br.tif'}\nprocess_parameters:\n  interval: 1000\n  field: elev\n"
            f"output:\n  path: {tmp_path / 'out'}\n  format: GeoJSON\n"
            "  schema: {geometry: LineString, properties: {elev: float}}\n")
    assert execute(write_recipe(text), executor="sequential").ok
    props = set()
    for path in (tmp_path / "out").glob("*/*/*.geojson"):
        with fiona.open(path) as src:
            props |= {k for f in src for k in f["properties"]}
    assert props == {"elev"}


def test_contours_lie_on_their_level_where_mapchetes_are_transposed_and_joined(tmp_path, src, write_recipe):
    """mapchete's `examples/contours` differs from ziggurat's on purpose. On a DEM whose pixel
    (r, c) holds 1000 r + c, every vertex ziggurat writes for `mapchete.processes.contours` lies
    on its level (bilinear between pixel centres). mapchete's `path_to_linestring` maps a
    matplotlib vertex (x = col, y = row) to (left + row * px, top - col * px): the line is mirrored
    about the tile's diagonal and half a pixel off, and the pieces of one level (a matplotlib path
    of several MOVETOs) become one LineString with straight jumps between them. Un-mirrored and
    cut at the jumps, mapchete's lines of the sweep are ziggurat's (4,220 tile levels)."""
    import fiona
    import shapely
    from mapchete.processes.contours import path_to_linestring
    from mapchete.tile import BufferedTilePyramid

    text = ("process: mapchete.processes.contours\nzoom_levels: 6\npyramid:\n  grid: geodetic\n"
            f"input:\n  dem: {src}\noutput:\n  path: {tmp_path / 'out'}\n  format: GeoJSON\n"
            "  schema: {geometry: LineString, properties: {elevation: float}}\n"
            "process_parameters:\n  field: elevation\n  interval: 5000\n")
    assert execute(write_recipe(text, name="contours.mapchete"), executor="sequential").ok
    lines = []
    for path in (tmp_path / "out").glob("6/*/*.geojson"):
        with fiona.open(path) as features:
            lines += [(f["properties"]["elevation"], shapely.geometry.shape(f["geometry"])) for f in features]
    assert sorted({level for level, _ in lines}) == [5000.0 * k for k in range(1, 13)]

    def dem_at(x: np.ndarray, y: np.ndarray) -> np.ndarray:   # the DEM, bilinear between pixel centres
        return 1000 * ((ORIGIN - y) / RES - 0.5) + ((x - ORIGIN) / RES - 0.5)

    for level, line in lines:
        xy = np.asarray(line.coords)
        assert np.abs(dem_at(xy[:, 0], xy[:, 1]) - level).max() < 1e-6 * level
    # the same vertices in matplotlib's pixel coordinates, through mapchete's conversion
    level, line = max(lines, key=lambda pair: pair[1].length)
    xy = np.asarray(line.coords)
    tile = BufferedTilePyramid("geodetic").tile_from_xy(*xy[len(xy) // 2], 6)
    pixels = np.column_stack([(xy[:, 0] - tile.left) / RES - 0.5, (tile.top - xy[:, 1]) / RES - 0.5])

    class Path:
        vertices = pixels

    theirs = np.asarray(path_to_linestring(Path, tile).coords)
    assert np.median(np.abs(dem_at(theirs[:, 0], theirs[:, 1]) - level)) > 1000   # off its level
    assert np.allclose(theirs, np.column_stack([tile.left + pixels[:, 1] * RES, tile.top - pixels[:, 0] * RES]))

    class TwoPieces:   # one level, two separate lines: matplotlib's path with two MOVETOs
        vertices = np.array([[0.0, 0.0], [1.0, 1.0], [50.0, 50.0], [51.0, 51.0]])

    joined = path_to_linestring(TwoPieces, tile)
    assert joined.geom_type == "LineString" and joined.length > 49 * RES * 2 ** 0.5


def test_three_bands_into_a_one_band_output_is_refused_saying_what_mapchete_did_and_the_fix(tmp_path, write_recipe):
    src = tmp_path / "rgb.tif"
    position_raster(src, left=ORIGIN, top=ORIGIN, res=RES, width=64, height=64, bands=3)
    proc = "def execute(mp):\n    with mp.open('file1') as f:\n        return f.read()\n"
    recipe = write_recipe(recipe_text(src, tmp_path / "out"), name="r.mapchete", process=proc)
    with pytest.raises(ProcessError) as info:
        execute(recipe, executor="sequential")
    message = str(info.value)
    assert "output has 1 band(s), data has 3" in message and "set output bands: 3" in message
    assert "mapchete would have written a fully masked tile" in message and "src.read(1)" in message


@pytest.mark.slow
def test_a_mapchete_tile_directory_read_into_another_crs_is_read_as_mapchete_reads_it(tmp_path):
    """mapchete's cleantopo_br_tiledir_mercator: mapchete's own geodetic tile directory (metatiling
    8, a 20-pixel rim stored round each tile) read into mercator with bilinear resampling. mapchete
    picks the stored zoom by GDAL's suggested warp resolution and warps each stored tile, rim and
    all, on its own; a `.mapchete` recipe does the same (`zoom_matching: gdal`), so the pixels
    equal mapchete's, even at the antimeridian and the poles."""
    pytest.importorskip("mapchete")
    data = tmp_path / "testdata"
    data.mkdir()
    shutil.copy(DATA / "cleantopo_br.tif", data / "cleantopo_br.tif")
    (tmp_path / "example_process.py").write_text(EXAMPLE)
    (data / "source.mapchete").write_text(
        "process: ../example_process.py\nzoom_levels: [0, 3]\npyramid:\n  grid: geodetic\n  pixelbuffer: 20\n"
        "  metatiling: 8\ninput:\n  file1: cleantopo_br.tif\noutput:\n  dtype: uint16\n  bands: 1\n"
        "  format: GTiff\n  path: tiledir\n  pixelbuffer: 20\n")
    _run_mapchete(data / "source.mapchete")
    for tool in ("mapchete", "ziggurat"):
        (data / f"{tool}.mapchete").write_text(
            "process: ../example_process.py\nzoom_levels: [0, 3]\npyramid:\n  grid: mercator\n  pixelbuffer: 20\n"
            "  metatiling: 2\ninput:\n  file1: tiledir\noutput:\n  dtype: uint16\n  bands: 1\n  format: GTiff\n"
            f"  path: {tool}\n  pixelbuffer: 20\n"
            "bounds: [18834424.718692508, -35389629.4588656, 20037508.3427892, 20037508.3427892]\n")
    _run_mapchete(data / "mapchete.mapchete")
    execute(data / "ziggurat.mapchete", executor="sequential")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        from mapchete_recipes import compare
    finally:
        sys.path.pop(0)
    assert compare(data / "mapchete", data / "ziggurat") == "identical"


def _stored_pixels(folder: Path, zoom: int) -> dict[tuple[int, int], tuple[np.ma.MaskedArray, Any]]:
    found = {}
    for path in folder.glob(f"{zoom}/*/*.tif"):
        with rasterio.open(path) as src:
            found[(int(path.parent.name), int(path.stem))] = (src.read(1, masked=True), src.transform)
    return found


def _rim_contradictions(folder: Path, zoom: int) -> tuple[int, int]:
    """(pixels two stored tiles both hold, how many of them disagree) at one zoom."""
    stored = _stored_pixels(folder, zoom)
    shared = disagree = 0
    for (ra, ca), (a, ta) in stored.items():
        for (rb, cb), (b, tb) in stored.items():
            if (ra, ca) == (rb, cb):
                continue
            # b's own tile (no rim) in a's pixel coordinates: a rim of 64 px round both
            row, col = round((tb.f - ta.f) / ta.e) + 64, round((tb.c - ta.c) / ta.a) + 64
            inner_b = b[64:-64, 64:-64]
            r0, c0 = max(row, 0), max(col, 0)
            r1, c1 = min(row + inner_b.shape[0], a.shape[0]), min(col + inner_b.shape[1], a.shape[1])
            if r0 >= r1 or c0 >= c1:
                continue
            pa, pb = a[r0:r1, c0:c1], inner_b[r0 - row:r1 - row, c0 - col:c1 - col]
            both = ~np.ma.getmaskarray(pa) & ~np.ma.getmaskarray(pb)
            shared += int(both.sum())
            disagree += int((pa.filled(0) != pb.filled(0))[both].sum())
    return shared, disagree


@pytest.mark.slow
def test_stored_rims_contradict_their_neighbours_in_mapchetes_overviews(tmp_path):
    """mapchete's baselevels_output_buffer: with `output.pixelbuffer: 64` mapchete stores a 64 px
    rim round every tile and builds each overview into its buffered window. Its overview rims then
    hold values for pixels the neighbouring tile stores differently (two answers for one ground
    pixel); ziggurat stores every pixel once, so its tiles cannot disagree. The baselevel is
    identical; the overview above it differs by more than 1 in about 1 % of its pixels, mostly at
    its edges (by up to 32), where mapchete's buffered window reaches its neighbours' children and
    their rims, and by 1 in places elsewhere, where GDAL's approximate transformer follows the
    larger window."""
    pytest.importorskip("mapchete")
    data = tmp_path / "testdata"
    data.mkdir()
    shutil.copy(DATA / "cleantopo_br.tif", data / "cleantopo_br.tif")
    for tool in ("mapchete", "ziggurat"):
        (data / f"{tool}.mapchete").write_text(
            "process: mapchete.processes.convert\nzoom_levels: {min: 6, max: 8}\npyramid:\n  grid: geodetic\n"
            "  pixelbuffer: 64\ninput:\n  inp: cleantopo_br.tif\noutput:\n  dtype: int16\n  bands: 1\n"
            f"  format: GTiff\n  path: {tool}\n  pixelbuffer: 64\nbaselevels: {{min: 8, lower: bilinear}}\n"
            "bounds: [171.5625, -87.1875, 174.375, -84.375]\n")
    _run_mapchete(data / "mapchete.mapchete")
    execute(data / "ziggurat.mapchete", executor="sequential")
    shared, disagree = _rim_contradictions(data / "mapchete", 7)
    assert shared > 100_000 and disagree > 1_000     # mapchete: 8,268 of 147,456
    assert _rim_contradictions(data / "mapchete", 8)[1] == 0   # the baselevel's rims agree
    edge = 0
    for zoom in (6, 7, 8):
        for (row, col), (ours, transform) in _stored_pixels(data / "ziggurat", zoom).items():
            assert ours.shape == (256, 256)               # no rim: one value per ground pixel
            theirs, t = _stored_pixels(data / "mapchete", zoom)[(row, col)]
            r, c = round((transform.f - t.f) / t.e), round((transform.c - t.c) / t.a)
            diff = np.abs(theirs[r:r + 256, c:c + 256].astype(int) - ours.astype(int))
            assert not (np.ma.getmaskarray(diff) ^ np.ma.getmaskarray(ours)).any()
            if zoom == 8:
                assert diff.max() == 0
            elif zoom == 7:   # from identical children; zoom 6 then inherits zoom 7's edges
                assert (diff.filled(0) > 1).mean() < 0.02   # 1.1 % at most, mostly the edges
                edge = max(edge, int(diff.max()))
    assert edge > 1   # mapchete's edges saw the neighbours' children (32 here)


@pytest.mark.slow
def test_outside_a_raster_without_nodata_is_no_data_where_mapchete_reads_zeros(tmp_path):
    """mapchete's examples/file_groups: the mean of two groups of rasters, one group being
    dummy2.tif (uint8, no nodata value: all zeros over lon 2-3). Far from it, mapchete reads
    dummy2 as valid zeros, which halves every mean (cleantopo_tl's 6,826 m becomes 3,413); ziggurat
    reads nothing outside a raster's footprint, so the mean is that of the rasters that are there."""
    pytest.importorskip("mapchete")
    process = '''
import numpy.ma as ma


def execute(group1, group2):
    group1 = ma.mean(ma.stack([raster.read(1) for _, raster in group1]), axis=0)
    group2 = ma.mean(ma.stack([raster.read(1) for _, raster in group2]), axis=0)
    return ma.mean(ma.stack([group1, group2]), axis=0)
'''
    for tool in ("mapchete", "ziggurat"):
        data = tmp_path / tool
        data.mkdir()
        for f in ("cleantopo_tl.tif", "cleantopo_br.tif", "dummy1.tif"):
            shutil.copy(DATA / f, data / f)
        # mapchete's dummy2.tif: uint8 zeros, no nodata value
        with rasterio.open(data / "dummy2.tif", "w", driver="GTiff", width=100, height=100, count=3, dtype="uint8",
                           crs="EPSG:4326", transform=rasterio.Affine(0.01, 0, 2.0, 0, -0.03, 4.0)) as dst:
            dst.write(np.zeros((3, 100, 100), "uint8"))
        (data / "groups.py").write_text(process)
        (data / "groups.mapchete").write_text(
            "process: groups.py\nzoom_levels: 3\npyramid:\n  grid: geodetic\n  metatiling: 8\ninput:\n"
            "  group1:\n    file1: cleantopo_tl.tif\n    file2: cleantopo_br.tif\n"
            "  group2:\n    file1: dummy1.tif\n    file2: dummy2.tif\n"
            "output:\n  dtype: uint16\n  bands: 1\n  format: GTiff\n  path: out\n")
    _run_mapchete(tmp_path / "mapchete" / "groups.mapchete")
    execute(tmp_path / "ziggurat" / "groups.mapchete", executor="sequential")
    theirs, ours = tiles(tmp_path / "mapchete" / "out"), tiles(tmp_path / "ziggurat" / "out")
    corner = (3, 0, 0)   # cleantopo_tl, far from the dummies
    with rasterio.open(DATA / "cleantopo_tl.tif") as src:
        tl_max = int(src.read(1).max())
    mine, other = np.ma.masked_array(ours[corner]), np.ma.masked_array(theirs[corner])
    both = ~np.ma.getmaskarray(mine) & ~np.ma.getmaskarray(other)
    assert both.sum() > 1000 and int(mine.max()) <= tl_max
    halves = np.ma.getdata(other)[both].astype(float) / np.ma.getdata(mine)[both]
    assert np.allclose(halves, 0.5, atol=0.001)   # mapchete's mean counted dummy2's zeros
