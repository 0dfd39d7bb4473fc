"""Tile indexes and VRTs: real runs, real GDAL/OGR reading what was written."""

from __future__ import annotations

import fiona
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

from ziggurat.cli import main
from ziggurat.core.errors import OutputError
from ziggurat.io.common import crs_equal
from ziggurat.records.catalog.index import write_index, write_vrts

from pyramid_helpers import NODATA, extent, make_recipe, mosaic, run, tiles_on_disk


@pytest.mark.parametrize("grid_name,metatiling,output_metatiling", [
    ("geodetic", 2, 1), ("mercator", 4, 2), ("utm", 2, 2),
])
def test_vrt_per_zoom_equals_the_tiles(tmp_path, grid_name, metatiling, output_metatiling):
    recipe, grid = make_recipe(tmp_path, grid_name, metatiling=metatiling, output_metatiling=output_metatiling)
    run(recipe)
    out = tmp_path / "out"
    on_disk = tiles_on_disk(out)
    written = write_vrts(out)
    assert written == [out / f"{z}.vrt" for z in on_disk]
    for zoom, cells in on_disk.items():
        box = extent(grid, zoom, cells)
        xres, yres = grid.resolution(zoom)
        with rasterio.open(out / f"{zoom}.vrt") as vrt:
            assert crs_equal(vrt.crs, grid.crs)
            assert vrt.transform == rasterio.Affine(xres, 0, box.left, 0, -yres, box.top)
            assert vrt.nodata == NODATA and vrt.dtypes == ("float32",)
            expected = mosaic(out, grid, zoom, box)
            assert (expected != NODATA).any()
            np.testing.assert_array_equal(vrt.read(), expected)
            assert vrt.files and all(not f.startswith("/") or f.startswith(str(out)) for f in vrt.files)
    # relative paths: the folder can move
    moved = tmp_path / "moved"
    out.rename(moved)
    top = max(on_disk)
    with rasterio.open(moved / f"{top}.vrt") as vrt:
        np.testing.assert_array_equal(vrt.read(), mosaic(moved, grid, top, extent(grid, top, on_disk[top])))


def test_vrt_of_a_sparse_zoom_reads_nodata_where_tiles_are_missing(tmp_path):
    recipe, grid = make_recipe(tmp_path, "geodetic", zooms=(6, 6))
    run(recipe, tile=(6, 10, 20))
    run(recipe, tile=(6, 11, 21))
    out = tmp_path / "out"
    (path,) = write_index(out, formats=["vrt"])
    with rasterio.open(path) as vrt:
        assert vrt.shape == (512, 512)
        assert (vrt.read(1, window=Window(256, 0, 256, 256)) == NODATA).all()
        np.testing.assert_array_equal(vrt.read(window=Window(250, 250, 12, 12)),
                                      mosaic(out, grid, 6, extent(grid, 6, [(10, 20), (11, 21)]))[:, 250:262, 250:262])


@pytest.mark.parametrize("fmt,driver", [("gpkg", "GPKG"), ("fgb", "FlatGeobuf"), ("geojson", "GeoJSON")])
def test_vector_index_has_one_feature_per_tile(tmp_path, fmt, driver):
    recipe, grid = make_recipe(tmp_path, "mercator", metatiling=2, output_metatiling=1)
    run(recipe)
    out = tmp_path / "out"
    on_disk = tiles_on_disk(out)
    (path,) = write_index(out, formats=[fmt])
    assert path == out / f"index.{fmt}"
    with fiona.open(path) as layer:
        assert layer.driver == driver
        assert crs_equal(rasterio.crs.CRS.from_wkt(layer.crs.to_wkt()), grid.crs)
        features = list(layer)
    seen = {}
    for feat in features:
        p = feat.properties
        assert p["path"] == f"{p['zoom']}/{p['row']}/{p['col']}.tif" and (out / p["path"]).is_file()
        xs, ys = zip(*feat.geometry.coordinates[0])
        expected = grid.tile_bounds(p["zoom"], p["row"], p["col"])
        assert (min(xs), min(ys), max(xs), max(ys)) == pytest.approx(tuple(expected), rel=1e-12)
        seen.setdefault(p["zoom"], []).append((p["row"], p["col"]))
    assert {z: sorted(v) for z, v in seen.items()} == on_disk
    assert len(features) == sum(map(len, on_disk.values()))


def test_zoom_filter_text_list_and_absolute_paths(tmp_path):
    recipe, _ = make_recipe(tmp_path, "geodetic", metatiling=2)
    run(recipe)
    out = tmp_path / "out"
    on_disk = tiles_on_disk(out)
    (txt,) = write_index(out, zooms=[6], formats=["txt"])
    assert txt.read_text().splitlines() == [f"6/{r}/{c}.tif" for r, c in on_disk[6]]
    write_index(out, zooms=range(5, 7), formats=["txt"], absolute=True)
    lines = txt.read_text().splitlines()
    assert lines == [str(out / f"{z}/{r}/{c}.tif") for z in (5, 6) for r, c in on_disk[z]]
    with pytest.raises(OutputError, match="holds no tif tiles at zoom"):
        write_index(out, zooms=[12], formats=["txt"])
    with pytest.raises(OutputError, match="unknown index format"):
        write_index(out, formats=["shp"])
    assert not list(out.glob(".tmp-*"))


def test_index_command(tmp_path):
    recipe, _ = make_recipe(tmp_path, "geodetic")
    run(recipe)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["index", str(out), "-z", "5,6", "--geojson", "--vrt", "--txt"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(out / n) for n in ("index.geojson", "5.vrt", "6.vrt", "index.txt")]
    assert not (out / "4.vrt").exists()
    result = CliRunner().invoke(main, ["index", str(out)])      # default: GeoPackage
    assert result.exit_code == 0 and result.stdout.split() == [str(out / "index.gpkg")]
    result = CliRunner().invoke(main, ["index", str(tmp_path)])
    assert result.exit_code == 1 and result.stderr.startswith("Error: ") and "Traceback" not in result.output


def test_execute_vrt_writes_vrts_at_the_end(tmp_path):
    recipe, grid = make_recipe(tmp_path, "geodetic", zooms=(5, 6))
    result = CliRunner().invoke(main, ["execute", str(recipe), "-e", "sequential", "--vrt", "--no-progress"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert f"VRTs: {out / '5.vrt'}, {out / '6.vrt'}" in result.stdout
    on_disk = tiles_on_disk(out)
    with rasterio.open(out / "6.vrt") as vrt:
        np.testing.assert_array_equal(vrt.read(), mosaic(out, grid, 6, extent(grid, 6, on_disk[6])))
