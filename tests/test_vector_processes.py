"""The vector processes (contours, clip, rasterize) and their recipes, on real data."""

from __future__ import annotations

import math
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner

from test_io_vector import write_layer
from ziggurat.cli import main
from ziggurat.core.grid import Grid
from ziggurat.engine.run import execute
from ziggurat.recipe import load_recipe
from ziggurat_processes.contours import contour_levels, contour_lines

from conftest import REPO, SAMPLE_DEM

RECIPES = REPO / "recipes"
# rasterio.features toggles warning filters in a way that is not thread-safe, so under the
# threads executor its spurious NotGeoreferencedWarning can leak (ziggurat.recipe.area filters it for
# real runs; pytest resets filters per test)
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
DEM_BOUNDS = (-97.485, 32.5225, -97.17917, 32.82167)  # srtm_dallas.tif, pixel 1/1200 degree


def run_recipe(name: str, out: Path, *args: str) -> str:
    """Run a shipped recipe with ZIGGURAT_OUTPUT pointing into the test's folder."""
    result = CliRunner().invoke(main, ["execute", str(RECIPES / f"{name}.yaml"), "--no-progress",
                                       "-e", "threads", *args], env={"ZIGGURAT_OUTPUT": str(out)})
    assert result.exit_code == 0, result.output
    return result.output


# -- contours ------------------------------------------------------------------------------------------
def test_contour_levels_and_lines_on_a_plane():
    assert list(contour_levels(147, 298, 50)) == [150, 200, 250]
    assert list(contour_levels(147, 298, 50, base=25)) == [175, 225, 275]
    assert len(contour_levels(151, 199, 50)) == 0
    with pytest.raises(ValueError, match="interval must be a positive number"):
        contour_levels(0, 1, 0)
    # elevation = 10 * x: the 35 m line is the vertical x = 3.5
    x, y = np.arange(8) + 0.5, 5.0 - (np.arange(5) + 0.5)
    z = np.tile(10 * x, (5, 1))
    lines = contour_lines(z, x, y, np.array([35.0]))
    assert len(lines) == 1 and lines[0][0] == 35.0
    assert lines[0][1].bounds == pytest.approx((3.5, 0.5, 3.5, 4.5))
    z = np.ma.masked_array(z, mask=np.zeros_like(z, dtype=bool))
    z.mask[2, :] = True  # a masked row cuts the line in two
    assert len(contour_lines(z, x, y, np.array([35.0]))) == 2


def _endpoints(path: Path) -> list[tuple[float, float, float]]:
    out = []
    with fiona.open(path) as src:
        for rec in src:
            coords = rec.geometry.coordinates
            for x, y in (coords[0], coords[-1]):
                out.append((x, y, rec.properties["elevation"]))
    return out


def test_contour_lines_of_neighbouring_tiles_meet_end_to_end(write_recipe, tmp_path):
    path = write_recipe(f"""
        process: contours
        zoom_levels: 10
        pyramid:
          grid: geodetic
          pixelbuffer: 1
        input:
          dem: {SAMPLE_DEM}
        output:
          path: {tmp_path / 'out'}
          format: GeoJSON
          schema: {{geometry: LineString, properties: {{elevation: float}}}}
        bounds: [-97.45, 32.55, -97.2, 32.8]
        process_parameters:
          interval: 5
        """)
    summary = execute(path, executor="threads", workers=2)
    assert summary.output_tiles >= 4
    recipe = load_recipe(path)
    grid = recipe.output_grid
    files = {tuple(int(p) for p in f.relative_to(tmp_path / "out").with_suffix("").parts): f
             for f in (tmp_path / "out").rglob("*.geojson")}
    pairs = 0
    for (z, r, c), f in files.items():
        for other, shared in (((z, r, c + 1), "x"), ((z, r + 1, c), "y")):
            if other not in files:
                continue
            b = grid.tile(z, r, c).bounds
            edge = b.right if shared == "x" else b.bottom
            axis = 0 if shared == "x" else 1

            def on_edge(points, axis=axis, edge=edge):
                # lines that really end on the seam (at the DEM's edge, where data stops) are
                # not seam crossings: only look a few DEM pixels inside its footprint
                lo, hi = (DEM_BOUNDS[1], DEM_BOUNDS[3]) if axis == 0 else (DEM_BOUNDS[0], DEM_BOUNDS[2])
                return sorted((p for p in points if abs(p[axis] - edge) < 1e-12
                               and lo + 3 / 1200 < p[1 - axis] < hi - 3 / 1200), key=lambda p: (p[1 - axis], p[2]))

            mine, theirs = on_edge(_endpoints(f)), on_edge(_endpoints(files[other]))
            assert len(mine) == len(theirs) > 0, (f, files[other])
            for a, b2 in zip(mine, theirs):
                assert a[2] == b2[2]  # the same contour level
                assert a[1 - axis] == pytest.approx(b2[1 - axis], abs=1e-12)  # the same point on the seam
            pairs += len(mine)
    assert pairs > 50
    # every line piece lies inside its output tile
    for (z, r, c), f in files.items():
        box = shapely.box(*grid.tile(z, r, c).bounds).buffer(1e-12)
        with fiona.open(f) as src:
            assert all(box.contains(shapely.geometry.shape(rec.geometry)) for rec in src)


def test_contours_recipe_writes_flatgeobuf_with_its_schema(tmp_path):
    out = run_recipe("contours", tmp_path)
    assert "tiles written" in out
    files = sorted((tmp_path / "contours").rglob("*.fgb"))
    assert files
    levels = set()
    for f in files:
        with fiona.open(f) as src:
            assert src.schema == {"properties": {"elevation": "float"}, "geometry": "LineString"}
            assert src.driver == "FlatGeobuf" and len(src) > 0
            levels |= {rec.properties["elevation"] for rec in src if f.parts[-3] == "10"}
    assert levels and all(level % 10 == 0 and 147 <= level <= 298 for level in levels)
    recipe = load_recipe(RECIPES / "contours.yaml")
    written = {tuple(int(p) for p in f.relative_to(tmp_path / "contours").with_suffix("").parts) for f in files}
    process_tiles = {(z, r // 2, c // 2) for z, r, c in written}  # metatiling 2
    for z, r, c in process_tiles:  # all inside the area (western two thirds of the DEM)
        assert shapely.box(*recipe.grid.tile(z, r, c).bounds).intersects(recipe.area)
    assert max(recipe.output_grid.tile(*i).bounds.left for i in written) < -97.28
    area = recipe.area.buffer(1e-9)
    for f in files:  # vector results are cut to the area like rasters are masked to it
        with fiona.open(f) as src:
            assert all(area.contains(shapely.geometry.shape(rec.geometry)) for rec in src)


# -- clip ----------------------------------------------------------------------------------------------
def test_clip_recipe_keeps_only_pixels_inside_the_polygon(tmp_path):
    run_recipe("clip", tmp_path, "-z", "5")
    with fiona.open(RECIPES / "data" / "aoi_br.geojson") as src:
        aoi = shapely.geometry.shape(next(iter(src)).geometry)
    tiles = sorted((tmp_path / "clip" / "5").rglob("*.tif"))
    assert tiles
    valid_inside = 0
    for t in tiles:
        with rasterio.open(t) as ds:
            data = ds.read(1, masked=True)
            rows, cols = np.mgrid[0:ds.height, 0:ds.width]
            xs, ys = rasterio.transform.xy(ds.transform, rows.ravel(), cols.ravel())
        inside = shapely.contains_xy(aoi, xs, ys).reshape(data.shape)
        assert not (~data.mask & ~inside).any()
        valid_inside += int((~data.mask).sum())
    # the relief covers 169.19..180 E, 80.19..90 S; the polygon reaches 72 S and 165 E
    assert valid_inside > 1000


def test_clip_invert_and_all_touched(tmp_path):
    grid = Grid.from_name("geodetic")
    tile = grid.tile(8, 60, 300)
    b, res = tile.bounds, tile.resolution[0]
    poly = shapely.box(b.left + 0.25 * res, b.top - 1.75 * res, b.left + 1.25 * res, b.top - 0.25 * res)
    vec = write_layer(tmp_path / "p.geojson", [(poly, {"k": 1})])
    dem = tmp_path / "dem.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=256, height=256, count=1, dtype="int16", crs="EPSG:4326",
                       transform=tile.affine, nodata=-1) as dst:
        dst.write(np.full((1, 256, 256), 7, dtype="int16"))
    from ziggurat.io import open_input
    from ziggurat_processes import clip

    recipe = load_recipe({"process": "clip", "zoom_levels": 8, "pyramid": {"grid": "geodetic"},
                          "input": {"inp": str(dem), "clip": str(vec)}, "output": {"path": str(tmp_path / "o")}})
    inputs = {k: open_input(c, recipe.grid).for_tile(tile) for k, c in recipe.inputs.items()}
    assert (~clip.execute(**inputs).mask).sum() == 2                       # centres (0.5, 0.5) and (1.5, 0.5)
    assert (~clip.execute(**inputs, all_touched=True).mask).sum() == 4     # 2 x 2 touched
    assert (~clip.execute(**inputs, invert=True).mask).sum() == 256 * 256 - 2


# -- rasterize --------------------------------------------------------------------------------------------
def test_rasterize_recipe_burns_land_polygons_into_mercator(tmp_path):
    run_recipe("rasterize", tmp_path, "-z", "4")
    recipe = load_recipe(RECIPES / "rasterize.yaml")
    grid = recipe.output_grid

    def value_at(lon: float, lat: float) -> int | None:
        x = 6378137.0 * math.radians(lon)
        y = 6378137.0 * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
        t = grid.tile_at(x, y, 4)
        path = tmp_path / "rasterize" / "4" / str(t.row) / f"{t.col}.tif"
        if not path.exists():
            return None
        with rasterio.open(path) as ds:
            v = next(ds.sample([(x, y)], masked=True))[0]
            return None if v is np.ma.masked else int(v)

    assert value_at(-96.8, 32.8) == 255     # Dallas
    assert value_at(-100.0, 50.0) == 255    # the prairies: inside the repaired North American polygon
    assert value_at(-140.0, 30.0) is None   # the Pacific
    assert value_at(-87.5, 42.0) is None    # Lake Michigan is a hole (and east of the data anyway)


def test_rasterize_property_values(tmp_path):
    a, b = shapely.box(1, 1, 2, 2), shapely.box(3, 1, 4, 2)
    vec = write_layer(tmp_path / "v.geojson", [(a, {"height": 12.5}), (b, {"height": None})],
                      properties={"height": "float"})
    recipe = load_recipe({"process": "rasterize", "zoom_levels": 6, "pyramid": {"grid": "geodetic"},
                          "input": {"features": str(vec)},
                          "output": {"path": str(tmp_path / "o"), "dtype": "float32", "nodata": -1},
                          "process_parameters": {"value": "height"}})
    execute(recipe, executor="sequential")
    tiles = list((tmp_path / "o").rglob("*.tif"))
    assert len(tiles) == 1  # the feature with a null height burns nothing
    with rasterio.open(tiles[0]) as ds:
        data = ds.read(1, masked=True)
    res = 180 / 2**6 / 256
    assert set(np.unique(data.compressed())) == {12.5}
    assert data.count() == round(1 / res) ** 2


def test_processes_lists_the_vector_processes():
    result = CliRunner().invoke(main, ["processes"])
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "Contour lines from an elevation model" in lines["contours"]
    assert "Mask a raster input to the polygons of a vector input" in lines["clip"]
    assert "Burn vector features into a raster" in lines["rasterize"]
