"""Process areas: parsing, tiles meeting the polygon (not its bbox), masking, errors, the CLI."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner

from test_io_vector import write_layer
from ziggurat.cli import main
from ziggurat.core.errors import RecipeError
from ziggurat.core.grid import Grid
from ziggurat.engine.run import execute, plan
from ziggurat.plan import make_plan
from ziggurat.recipe import load_recipe
from ziggurat.recipe.area import AreaMask, count_tiles_in_geometry, parse_area, tiles_in_geometry

from conftest import REPO, SAMPLE_DEM

LANDPOLY = REPO / "recipes" / "data" / "landpoly.geojson"
R = 6378137.0


def merc(lon: float, lat: float) -> tuple[float, float]:
    return R * math.radians(lon), R * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def geodetic(**kw) -> Grid:
    return Grid.from_name("geodetic", **kw)


# -- parsing ----------------------------------------------------------------------------------------
def test_area_forms_give_the_same_polygon(tmp_path):
    grid = geodetic()
    square = shapely.box(10, 20, 12, 22)
    fc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                                                     "geometry": shapely.geometry.mapping(square)}]}
    write_layer(tmp_path / "a.gpkg", [(square, {"k": 1})])
    for value in (square.wkt, shapely.geometry.mapping(square), json.dumps(fc), fc["features"][0], "a.gpkg"):
        area = parse_area(value, crs=None, grid=grid, base_dir=tmp_path)
        assert area.equals(square), value


def test_area_crs_reprojects_to_the_grid():
    wkt = shapely.box(*merc(10, 20), *merc(12, 22)).wkt
    area = parse_area(wkt, crs="EPSG:3857", grid=geodetic(), base_dir=".")
    assert area.bounds == pytest.approx((10, 20, 12, 22), abs=1e-9)
    merc_grid = Grid.from_name("mercator")
    polar = parse_area("POLYGON ((-10 60, 10 60, 10 90, -10 90, -10 60))", crs="EPSG:4326", grid=merc_grid,
                       base_dir=".")
    assert polar.bounds[3] == pytest.approx(merc_grid.bounds().top)  # clipped at 85.05 N, not infinite


def test_recipe_area_is_parsed_at_load(write_recipe, tmp_path):
    write_layer(tmp_path / "zone.geojson", [(shapely.box(*merc(10, 20), *merc(12, 22)), {"k": 1})],
                crs="EPSG:3857")
    path = write_recipe(f"""
        process: convert
        zoom_levels: 5
        pyramid:
          grid: geodetic
        input:
          inp: {SAMPLE_DEM}
        output:
          path: {tmp_path / 'out'}
        area: zone.geojson
        """)
    recipe = load_recipe(path)
    assert recipe.area.bounds == pytest.approx((10, 20, 12, 22), abs=1e-9)
    assert pickle.loads(pickle.dumps(recipe)).area.equals(recipe.area)  # travels to worker processes


@pytest.mark.parametrize("area,extra,match", [
    ("LINESTRING (0 0, 1 1)", "", r"area: expected a polygon or multipolygon area, found a LineString"),
    ("POLYGON ((0 0, 1 1", "", r"area: expected WKT, GeoJSON or the path of a vector file"),
    ("nowhere.geojson", "", r"area: expected WKT, GeoJSON or the path of a vector file, found 'nowhere.geojson' "
                            r"\(no such file: .*nowhere.geojson\)"),
    ("POLYGON ((0 0, 1 0, 1 1, 0 0))", "area_crs: EPSG:99999\n", r"area_crs: expected a valid CRS, found 'EPSG:99999'"),
    ("POLYGON ((3e7 0, 3.1e7 0, 3.1e7 1e5, 3e7 0))", "area_crs: EPSG:3857\n", r"area: the area does not overlap"),
    ("{type: Point, coordinates: [1, 2]}", "", r"area: expected a polygon or multipolygon area, found a Point"),
])
def test_bad_areas_name_file_line_and_key(write_recipe, tmp_path, area, extra, match):
    path = write_recipe(f"""
process: convert
zoom_levels: 5
pyramid:
  grid: mercator
input:
  inp: {SAMPLE_DEM}
output:
  path: {tmp_path / 'out'}
area: {area}
{extra}""")
    with pytest.raises(RecipeError, match=r"recipe\.yaml:\d+: " + match):
        load_recipe(path)


def test_area_crs_contradicting_the_file_crs(write_recipe, tmp_path):
    write_layer(tmp_path / "z.geojson", [(shapely.box(0, 0, 1, 1), {"k": 1})])
    path = write_recipe(f"""
        process: convert
        zoom_levels: 5
        pyramid: {{grid: geodetic}}
        output: {{path: {tmp_path / 'out'}}}
        area: z.geojson
        area_crs: EPSG:3857
        """)
    with pytest.raises(RecipeError, match=r"recipe\.yaml:6: area: area_crs 'EPSG:3857' contradicts the CRS"):
        load_recipe(path)


# -- tiles --------------------------------------------------------------------------------------------
def _donut_recipe(write_recipe, tmp_path: Path, metatiling: int = 1) -> Path:
    # a 4 x 4 degree square with a 2 x 2 degree hole; geodetic zoom 7 tiles are 1.40625 degrees
    return write_recipe(f"""
        process: convert
        zoom_levels: [6, 8]
        pyramid:
          grid: geodetic
          metatiling: {metatiling}
        input:
          inp: {SAMPLE_DEM}
        output:
          path: {tmp_path / 'out'}
        area: POLYGON ((0 0, 8 0, 8 8, 0 8, 0 0), (2 2, 6 2, 6 6, 2 6, 2 2))
        """)


@pytest.mark.parametrize("metatiling", [1, 2])
def test_area_with_a_hole_skips_the_tiles_in_the_hole(write_recipe, tmp_path, metatiling):
    recipe = load_recipe(_donut_recipe(write_recipe, tmp_path, metatiling))
    run_plan = plan(recipe)
    tiles = list(run_plan.tiles())
    assert run_plan.count() == len(tiles) == len({t.index for t in tiles})
    hole = shapely.box(2, 2, 6, 6)
    ring = shapely.box(0, 0, 8, 8).difference(hole)
    for t in tiles:
        box = shapely.box(*t.bounds)
        assert box.intersection(ring).area > 0  # every tile meets the polygon itself ...
    in_bbox = {t.index for z in run_plan.zooms for t in recipe.grid.tiles_in_bounds((0, 0, 8, 8), z)}
    skipped = in_bbox - {t.index for t in tiles}
    assert skipped  # ... and those inside the hole were skipped although they are in the bbox
    assert all(hole.contains(shapely.box(*recipe.grid.tile(*i).bounds)) for i in skipped)
    for zoom in run_plan.zooms:
        assert {t.index for t in tiles if t.zoom == zoom} == \
            {t.index for t in recipe.grid.tiles_in_geometry(recipe.area, zoom)}


@pytest.mark.parametrize("name,metatiling,zooms", [("geodetic", 1, (3, 6, 8)), ("mercator", 4, (4, 8))])
def test_counting_is_exact_on_real_land_polygons(name, metatiling, zooms):
    grid = Grid.from_name(name, metatiling=metatiling)
    area = parse_area(str(LANDPOLY), crs=None, grid=grid, base_dir=".")
    for zoom in zooms:
        listed = [t.index for t in tiles_in_geometry(grid, area, zoom)]
        reference = {t.index for t in grid.tiles_in_geometry(area, zoom)}
        assert count_tiles_in_geometry(grid, area, zoom) == len(listed) == len(set(listed))
        assert set(listed) == reference


def test_bounds_and_run_area_narrow_the_recipe_area(write_recipe, tmp_path):
    recipe = load_recipe(_donut_recipe(write_recipe, tmp_path))
    p = make_plan(recipe, zoom=7, bounds=(0, 0, 4, 8))
    assert p.bounds == (0, 0, 4, 8)
    assert all(t.bounds.left < 4 for t in p.tiles()) and p.count() == len(list(p.tiles()))
    p2 = make_plan(recipe, zoom=7, area="POLYGON ((0 0, 3 0, 3 3, 0 3, 0 0))")
    assert p2.area.equals(shapely.box(0, 0, 3, 3).difference(shapely.box(2, 2, 6, 6)))
    with pytest.raises(RecipeError, match="--area does not overlap the recipe's area"):
        make_plan(recipe, zoom=7, area="POLYGON ((3 3, 5 3, 5 5, 3 5, 3 3))")
    with pytest.raises(RecipeError, match="--area: expected a polygon"):
        make_plan(recipe, zoom=7, area="POINT (1 1)")


# -- masking --------------------------------------------------------------------------------------------
def test_area_mask_on_a_tile():
    grid = geodetic(pixelbuffer=1)
    tile = grid.tile(8, 60, 300)
    b = tile.bounds
    half = shapely.box(b.left, b.bottom, (b.left + b.right) / 2, b.top)  # the western half
    mask = AreaMask(half)
    data = np.ones((2, *tile.buffered_shape), dtype="uint8")
    out = mask.apply(tile, data)
    assert out.shape == data.shape and out.mask.sum() == 2 * (258 * 258 - 128 * 256)
    assert mask.apply(tile, data[0, 1:-1, 1:-1]).mask.sum() == 256 * 128  # unbuffered results too
    child = grid.tile_at(b.left + 3 * (b.right - b.left) / 16, b.bottom + 3 * (b.top - b.bottom) / 16, 11)
    assert mask.outside(child) is None  # buffered child tile fully inside: no mask computed
    inside = AreaMask(shapely.box(b.left - 1, b.bottom - 1, b.right + 1, b.top + 1))
    assert inside.apply(tile, data) is data  # whole tile inside: untouched


def test_raster_output_is_masked_to_the_area(write_recipe, tmp_path):
    # a triangle over the Dallas DEM; convert copies the DEM, the area cuts it
    path = write_recipe(f"""
        process: convert
        zoom_levels: 9
        pyramid:
          grid: geodetic
        input:
          inp: {SAMPLE_DEM}
        output:
          path: {tmp_path / 'out'}
          dtype: int16
          nodata: -32768
        area: POLYGON ((-97.45 32.55, -97.2 32.55, -97.45 32.8, -97.45 32.55))
        """)
    summary = execute(path, executor="processes", workers=2)
    assert summary.output_tiles > 0
    triangle = load_recipe(path).area
    checked = 0
    for tif in (tmp_path / "out" / "9").rglob("*.tif"):
        with rasterio.open(tif) as src:
            data = src.read(1, masked=True)
            rows, cols = np.mgrid[0:src.height, 0:src.width]
            xs, ys = rasterio.transform.xy(src.transform, rows.ravel(), cols.ravel())
        inside = shapely.contains_xy(triangle, xs, ys).reshape(data.shape)
        assert not (~data.mask & ~inside).any()  # nothing written outside the area
        assert (~data.mask & inside).sum() > 0
        checked += 1
    assert checked == summary.output_tiles


# -- CLI ------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # see test_vector_processes
def test_cli_area_runs_only_tiles_meeting_it(write_recipe, tmp_path, monkeypatch):
    recipe = write_recipe(f"""
        process: hillshade
        zoom_levels: 10
        pyramid:
          grid: geodetic
          pixelbuffer: 1
        input:
          dem: {SAMPLE_DEM}
        output:
          path: {tmp_path / 'out'}
          dtype: uint8
          nodata: 0
        """)
    # an L along the western and southern edges of the DEM, in Web Mercator
    corners = [(-97.48, 32.53), (-97.18, 32.53), (-97.18, 32.58), (-97.43, 32.58), (-97.43, 32.82), (-97.48, 32.82)]
    wkt = shapely.Polygon([merc(*c) for c in corners]).wkt
    runner = CliRunner()
    result = runner.invoke(main, ["execute", str(recipe), "-a", wkt, "--area-crs", "EPSG:3857",
                                  "--no-progress", "-e", "threads"])
    assert result.exit_code == 0, result.output
    written = {tuple(int(p) for p in t.relative_to(tmp_path / "out").with_suffix("").parts)
               for t in (tmp_path / "out").rglob("*.tif")}
    full = load_recipe(recipe)
    ell = parse_area(wkt, crs="EPSG:3857", grid=full.grid, base_dir=".")
    expected = {t.index for t in full.grid.tiles_in_geometry(ell, 10)}
    bbox = full.grid.count_tiles(ell.bounds, 10)
    assert written == expected and len(expected) < bbox  # the L, not its bounding box
    assert f"{len(expected)} tiles written" in result.output
    # a path relative to the working directory
    monkeypatch.chdir(tmp_path)
    write_layer(tmp_path / "ell.geojson", [(ell, {"k": 1})], crs="OGC:CRS84")
    result = runner.invoke(main, ["execute", str(recipe), "--area", "ell.geojson", "--no-progress",
                                  "-e", "sequential"])
    assert result.exit_code == 0 and f"0 tiles written, 0 empty, {len(expected)} skipped" in result.output
    result = runner.invoke(main, ["execute", str(recipe), "--area", "POINT (1 2)", "--no-progress"])
    assert result.exit_code == 1 and "--area: expected a polygon or multipolygon area" in result.output
