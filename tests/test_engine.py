"""End-to-end runs through the engine: pixels land exactly where the grid says."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from ziggurat import Grid, ProcessError, RecipeError
from ziggurat.engine.run import execute
from ziggurat.io.common import crs_equal

from conftest import SAMPLE_DEM, position_raster, read_tile

# geodetic zoom 6: 180 / 2**6 / 256 degrees per pixel; a 2x2-tile source aligned to the grid
Z = 6
RES = 180 / 2**Z / 256

IDENTITY = """
from __future__ import annotations
import numpy as np
from ziggurat import Empty, Tile

def execute(src: "Input", tile: Tile, offset: float = 0.0) -> np.ma.MaskedArray:
    data = src.read(1)
    if data.mask.all():
        raise Empty
    return data + offset
"""


def _aligned_source(tmp_path: Path) -> tuple[Path, np.ndarray, Grid]:
    grid = Grid.from_name("geodetic")
    t = grid.tile(Z, 10, 20)
    path = tmp_path / "src.tif"
    data = position_raster(path, left=t.bounds.left, top=t.bounds.top, res=RES, width=512, height=512)
    return path, data[0], grid


def _recipe(write_recipe, src: Path, out: Path, *, metatiling=1, pixelbuffer=0, extra="") -> Path:
    return write_recipe(f"""
        process: proc.py
        zoom_levels: {Z}
        pyramid: {{grid: geodetic, metatiling: {metatiling}, pixelbuffer: {pixelbuffer}}}
        input: {{src: {src}}}
        output: {{path: {out}, dtype: float32, nodata: -9999}}
        {extra}
        """, process=IDENTITY)


@pytest.mark.parametrize("metatiling,pixelbuffer", [(1, 0), (2, 3), (4, 1)])
def test_pixels_land_on_the_grid(tmp_path, write_recipe, metatiling, pixelbuffer):
    src, data, grid = _aligned_source(tmp_path)
    out = tmp_path / "out"
    summary = execute(_recipe(write_recipe, src, out, metatiling=metatiling, pixelbuffer=pixelbuffer))
    assert summary.output_tiles == 4 and not summary.failed
    for r in range(2):
        for c in range(2):
            tile_path = out / str(Z) / str(10 + r) / f"{20 + c}.tif"
            arr, profile = read_tile(tile_path)
            assert arr.shape == (1, 256, 256)
            np.testing.assert_array_equal(arr[0], data[r * 256:(r + 1) * 256, c * 256:(c + 1) * 256])
            assert profile["transform"] == grid.tile(Z, 10 + r, 20 + c).affine
            assert crs_equal(profile["crs"], grid.crs)
    assert (out / "metadata.json").exists()
    assert not list(out.rglob(".tmp-*"))


def test_continue_mode_skips_and_overwrite_redoes(tmp_path, write_recipe):
    src, _, _ = _aligned_source(tmp_path)
    out = tmp_path / "out"
    recipe = _recipe(write_recipe, src, out)
    first = execute(recipe)
    assert (first.output_tiles, first.skipped) == (4, 0)
    again = execute(recipe)
    assert (again.output_tiles, again.skipped) == (0, 4)
    redo = execute(recipe, overwrite=True)
    assert (redo.output_tiles, redo.skipped) == (4, 0)


def test_parameters_and_zoom_dependent_values(tmp_path, write_recipe):
    src, data, _ = _aligned_source(tmp_path)
    out = tmp_path / "out"
    recipe = _recipe(write_recipe, src, out, extra=f"process_parameters: {{offset: {{zoom<={Z}: 0.5, zoom>{Z}: 9}}}}")
    execute(recipe, tile=(Z, 10, 20))
    arr, _ = read_tile(out / str(Z) / "10" / "20.tif")
    np.testing.assert_array_equal(arr[0], data[:256, :256] + 0.5)


def test_bounds_limit_the_tiles(tmp_path, write_recipe):
    src, _, grid = _aligned_source(tmp_path)
    out = tmp_path / "out"
    b = grid.tile(Z, 11, 21).bounds
    summary = execute(_recipe(write_recipe, src, out),
                      bounds=(b.left + 0.01, b.bottom + 0.01, b.right - 0.01, b.top - 0.01))
    assert summary.output_tiles == 1
    assert (out / str(Z) / "11" / "21.tif").exists() and not (out / str(Z) / "10" / "20.tif").exists()


def test_threads_are_byte_identical_to_sequential(tmp_path, write_recipe):
    src, _, _ = _aligned_source(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    execute(_recipe(write_recipe, src, a, metatiling=2, pixelbuffer=2), executor="sequential")
    execute(_recipe(write_recipe, src, b, metatiling=2, pixelbuffer=2), executor="threads", workers=3)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.tif"))
    assert files_a and files_a == sorted(p.relative_to(b) for p in b.rglob("*.tif"))
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_failing_process_names_the_tile_and_keeps_traceback(tmp_path, write_recipe):
    src, _, _ = _aligned_source(tmp_path)
    recipe = write_recipe(f"""
        process: boom.py
        zoom_levels: {Z}
        pyramid: {{grid: geodetic}}
        input: {{src: {src}}}
        output: {{path: {tmp_path / 'out'}, dtype: float32}}
        """, process="""
        def execute(src, tile):
            if (tile.row, tile.col) == (11, 20):
                raise ValueError("bad pixel soup")
            return src.read(1)
        """, process_name="boom.py")
    with pytest.raises(ProcessError) as info:
        execute(recipe)
    err = info.value
    assert err.tile == (Z, 11, 20)
    assert "zoom 6, row 11, col 20" in str(err) and "bad pixel soup" in str(err)
    assert "ValueError" in err.traceback and "boom.py" in err.traceback
    summary = execute(recipe, keep_going=True, overwrite=True)
    assert [tuple(o.index) for o in summary.failed] == [(Z, 11, 20)] and summary.output_tiles == 3


def test_parameter_mismatch_is_reported_before_any_tile(tmp_path, write_recipe):
    src, _, _ = _aligned_source(tmp_path)
    out = tmp_path / "out"
    recipe = _recipe(write_recipe, src, out, extra="process_parameters: {offest: 1}")
    with pytest.raises(RecipeError, match="offest"):
        execute(recipe)
    assert not (out / str(Z)).exists()
    missing = write_recipe(f"""
        process: need.py
        zoom_levels: {Z}
        pyramid: {{grid: geodetic}}
        input: {{src: {src}}}
        output: {{path: {out}}}
        """, name="need.yaml", process="def execute(src, sigma):\n    return src.read(1)\n",
        process_name="need.py")
    with pytest.raises(RecipeError, match="sigma"):
        execute(missing)


def test_hillshade_tiles_equal_a_whole_raster_hillshade(tmp_path):
    """The engine's tiles equal one hillshade of the whole DEM resampled to the zoom's grid."""
    from ziggurat_processes.hillshade import hillshade

    zoom = 10
    out = tmp_path / "hs"
    from ziggurat.recipe import load_recipe
    recipe = load_recipe({"process": "hillshade", "zoom_levels": zoom,
                          "pyramid": {"grid": "geodetic", "pixelbuffer": 1},
                          "input": {"dem": str(SAMPLE_DEM)},
                          "output": {"path": str(out), "dtype": "uint8", "nodata": 0},
                          "process_parameters": {"resampling": "nearest"}})
    summary = execute(recipe)
    assert summary.output_tiles > 1
    grid = recipe.grid
    with rasterio.open(SAMPLE_DEM) as src:
        rows, cols = grid.tile_range(src.bounds, zoom)
        first = grid.tile(zoom, rows[0], cols[0])
        height, width = len(rows) * 256, len(cols) * 256
        whole = np.full((height, width), src.nodata, dtype="float64")
        reproject(rasterio.band(src, 1), whole, dst_transform=first.affine, dst_crs=grid.crs,
                  dst_nodata=src.nodata, resampling=Resampling.nearest)
    dem = np.ma.masked_equal(whole, src.nodata)
    xres, yres = grid.resolution(zoom)
    lats = first.bounds.top - (np.arange(height) + 0.5) * yres
    direct = hillshade(dem, xres, yres, latitudes=lats)
    compared = 0
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            path = out / str(zoom) / str(row) / f"{col}.tif"
            expected = direct[i * 256:(i + 1) * 256, j * 256:(j + 1) * 256]
            if not path.exists():
                assert expected.mask.all()
                continue
            arr, _ = read_tile(path)
            valid = ~np.ma.getmaskarray(expected)
            np.testing.assert_array_equal(arr[0][valid], expected.filled(0)[valid].astype("uint8"))
            compared += int(valid.sum())
    assert compared > 10_000


def test_an_edited_process_file_is_reloaded_in_the_same_interpreter(tmp_path, write_recipe):
    """Long-lived workers (Dask, notebooks) must not keep running an old version of a process."""
    src, data, _ = _aligned_source(tmp_path)
    out = tmp_path / "out"
    recipe = _recipe(write_recipe, src, out)
    execute(recipe, executor="sequential", tile=(Z, 10, 20))
    proc = tmp_path / "proc.py"
    proc.write_text(IDENTITY.replace("return data + offset", "return data + offset + 100"))
    os.utime(proc, ns=(proc.stat().st_atime_ns, proc.stat().st_mtime_ns + 1_000_000_000))
    execute(recipe, executor="sequential", tile=(Z, 10, 20), overwrite=True)
    arr, _ = read_tile(out / str(Z) / "10" / "20.tif")
    np.testing.assert_array_equal(arr[0], data[:256, :256] + 100)


def test_summary_counts_in_one_unit(tmp_path):
    """Written, empty and skipped count process tiles; output tiles go in brackets."""
    from pyramid_helpers import make_recipe, run

    recipe, _ = make_recipe(tmp_path, "geodetic", zooms=(6, 6), metatiling=4, output_metatiling=1)
    summary = run(recipe)
    assert summary.output_tiles > summary.written > 0
    assert summary.describe().startswith(f"{summary.written} process tiles written ({summary.output_tiles} "
                                         f"output tiles), {summary.empty} empty, 0 skipped")
    again = run(recipe)
    assert again.describe().startswith(f"0 tiles written, 0 empty, {summary.written + summary.empty} skipped")
