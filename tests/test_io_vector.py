"""Vector inputs: reprojection, clipping at the pixel buffer, repair, rasterising, spatial filters."""

from __future__ import annotations

import logging
import math
import pickle
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable

import fiona
import numpy as np
import pytest
import shapely
from shapely.geometry import mapping

from ziggurat.core.errors import InputError
from ziggurat.core.geometry import reproject_one, wrap_longitudes
from ziggurat.core.grid import Grid
from ziggurat.io import VectorInput, VectorTileInput, open_input
from ziggurat.recipe import load_recipe

from conftest import REPO

LANDPOLY = REPO / "recipes" / "data" / "landpoly.geojson"
R = 6378137.0  # Web Mercator sphere
DRIVERS = {".geojson": "GeoJSON", ".gpkg": "GPKG", ".shp": "ESRI Shapefile", ".fgb": "FlatGeobuf"}


def write_layer(path: Path, features: Iterable[tuple[Any, dict[str, Any]]], *, crs: str | None = "EPSG:4326",
                geometry: str = "Unknown", properties: dict[str, str] | None = None) -> Path:
    """A real vector file written with fiona: (shapely geometry or None, properties) pairs."""
    feats = list(features)
    if properties is None:
        properties = {k: ("int" if isinstance(v, int) else "float" if isinstance(v, float) else "str")
                      for k, v in (feats[0][1] if feats else {}).items()}
    schema = {"geometry": geometry, "properties": properties}
    kwargs = {"crs": crs} if crs else {}
    with fiona.open(path, "w", driver=DRIVERS[path.suffix], schema=schema, **kwargs) as dst:
        for geom, props in feats:
            dst.write(fiona.Feature(geometry=fiona.Geometry.from_dict(mapping(geom)) if geom is not None else None,
                                    properties=fiona.Properties(**props)))
    return path


def config(path: Path, name: str = "vec", **options: Any) -> SimpleNamespace:
    return SimpleNamespace(name=name, path=Path(path), format="vector", options=options)


def merc(lon: float, lat: float) -> tuple[float, float]:
    return R * math.radians(lon), R * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


# -- reprojection -------------------------------------------------------------------------------
def test_reprojects_web_mercator_polygon_to_geodetic_grid(tmp_path):
    corners = [(10.0, 40.0), (12.5, 40.0), (12.5, 42.0), (10.0, 42.0)]
    poly = shapely.Polygon([merc(*c) for c in corners])
    path = write_layer(tmp_path / "m.gpkg", [(poly, {"name": "a"})], crs="EPSG:3857")
    grid = Grid.from_name("geodetic", pixelbuffer=0)
    inp = VectorInput(config(path), grid)
    assert inp.bounds == pytest.approx((10.0, 40.0, 12.5, 42.0), abs=1e-9)
    tile = grid.tile_at(11.0, 41.0, 3)  # one tile holds the whole polygon
    feats = inp.for_tile(tile).read()
    assert len(feats) == 1 and feats[0]["properties"] == {"name": "a"}
    geom = feats[0]["geometry"]
    assert isinstance(geom, shapely.Polygon)
    got = sorted(tuple(round(v, 9) for v in xy) for xy in geom.exterior.coords[:-1])
    assert got == sorted(corners)


def test_mercator_polygon_across_the_antimeridian_splits_in_geodetic(tmp_path):
    x0, _ = merc(178.0, 0)
    x1 = x0 + merc(4.0, 0)[0]  # 178 E .. 182 E, i.e. past the edge of Web Mercator's x range
    _, y0 = merc(0, 1.0)
    _, y1 = merc(0, 5.0)
    path = write_layer(tmp_path / "am.geojson", [(shapely.box(x0, y0, x1, y1), {"n": 1})], crs="EPSG:3857")
    grid = Grid.from_name("geodetic")
    inp = VectorInput(config(path), grid)
    east = inp.for_tile(grid.tile_at(179.0, 2.0, 2)).read_union()
    west = inp.for_tile(grid.tile_at(-179.0, 2.0, 2)).read_union()
    assert east.bounds == pytest.approx((178.0, 1.0, 180.0, 5.0), abs=1e-9)
    assert west.bounds == pytest.approx((-180.0, 1.0, -178.0, 5.0), abs=1e-9)
    assert east.area + west.area == pytest.approx(16.0, rel=1e-9)


def test_polar_polygon_to_mercator_is_clipped_to_the_area_of_use():
    out = reproject_one(shapely.box(-10, 80, 10, 90), "EPSG:4326", "EPSG:3857")
    assert all(math.isfinite(v) for v in out.bounds) and out.is_valid
    assert out.bounds[3] == pytest.approx(merc(0, 85.06)[1], rel=1e-9)


def test_longitudes_past_180_are_wrapped():
    out = wrap_longitudes(shapely.box(170, 0, 190, 10))
    assert out.geom_type == "MultiPolygon" and out.bounds == (-180.0, 0.0, 180.0, 10.0)
    assert out.area == pytest.approx(200.0)


# -- clipping and filtering ------------------------------------------------------------------------
def test_features_are_clipped_to_the_buffered_tile(tmp_path):
    grid = Grid.from_name("geodetic", pixelbuffer=3)
    tile = grid.tile(5, 10, 40)
    b, bb = tile.bounds, tile.buffered_bounds
    big = shapely.box(b.left - 1, b.bottom - 1, b.right + 1, b.top + 1)
    line = shapely.LineString([(b.left - 1, (b.bottom + b.top) / 2), (b.right + 1, (b.bottom + b.top) / 2)])
    far = shapely.box(b.right + 5, b.bottom, b.right + 6, b.top)
    path = write_layer(tmp_path / "f.geojson", [(big, {"k": 1}), (line, {"k": 2}), (far, {"k": 3})])
    feats = VectorInput(config(path), grid).for_tile(tile).read()
    assert [f["properties"]["k"] for f in feats] == [1, 2]
    assert feats[0]["geometry"].bounds == pytest.approx(tuple(bb), abs=1e-12)  # buffer, not the tile
    assert feats[1]["geometry"].geom_type == "LineString"
    assert feats[1]["geometry"].bounds[0] == pytest.approx(bb.left) and \
        feats[1]["geometry"].bounds[2] == pytest.approx(bb.right)
    xres = tile.resolution[0]
    assert bb.right - b.right == pytest.approx(3 * xres)


def test_polygon_touching_the_tile_edge_is_not_returned_as_a_line(tmp_path):
    grid = Grid.from_name("geodetic", pixelbuffer=0)
    tile = grid.tile(4, 3, 10)
    b = tile.bounds
    neighbour = shapely.box(b.right, b.bottom, b.right + 1, b.top)  # shares the right edge only
    inside = shapely.box(b.left + 0.1, b.bottom + 0.1, b.left + 0.2, b.bottom + 0.2)
    path = write_layer(tmp_path / "t.geojson", [(neighbour, {"k": 1}), (inside, {"k": 2})])
    feats = VectorInput(config(path), grid).for_tile(tile).read()
    assert [f["properties"]["k"] for f in feats] == [2]
    assert feats[0]["geometry"].equals(inside)


def test_empty_tiles_and_union(tmp_path):
    grid = Grid.from_name("geodetic", pixelbuffer=0)
    a, b = shapely.box(1, 1, 2, 2), shapely.box(1.5, 1.5, 3, 3)
    path = write_layer(tmp_path / "u.geojson", [(a, {"k": 1}), (b, {"k": 2})])
    inp = VectorInput(config(path), grid)
    here = inp.for_tile(grid.tile_at(1.5, 1.5, 4))
    away = inp.for_tile(grid.tile_at(-50, -50, 4))
    corner = inp.for_tile(grid.tile_at(2.5, 1.2, 8))  # inside the layer's bbox, no feature there
    assert not here.is_empty() and away.is_empty() and corner.is_empty()
    assert away.read() == [] and away.read_union().is_empty
    assert here.read_union().area == pytest.approx(1 + 2.25 - 0.25)


def test_read_returns_fresh_dicts(tmp_path):
    grid = Grid.from_name("geodetic")
    path = write_layer(tmp_path / "p.geojson", [(shapely.box(1, 1, 2, 2), {"k": 1})])
    tin = VectorInput(config(path), grid).for_tile(grid.tile_at(1.5, 1.5, 3))
    tin.read()[0]["properties"]["k"] = 99
    assert tin.read()[0]["properties"]["k"] == 1


# -- repair ------------------------------------------------------------------------------------------
def test_invalid_geometries_are_repaired_or_dropped_with_a_warning(tmp_path, caplog):
    bowtie = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])  # self-intersecting ring
    flat = shapely.Polygon([(0, 0), (1, 1), (2, 2)])           # collapses to a line: no area left
    good = shapely.box(3, 0, 4, 1)
    path = write_layer(tmp_path / "bad.geojson", [(bowtie, {"k": 1}), (flat, {"k": 2}), (good, {"k": 3})],
                       properties={"k": "int"})
    grid = Grid.from_name("geodetic")
    with caplog.at_level(logging.INFO, logger="ziggurat.io.inputs.vector"):
        feats = VectorInput(config(path, name="parcels"), grid).for_tile(grid.tile_at(1, 1, 2)).read()
    assert [f["properties"]["k"] for f in feats] == [1, 3]
    fixed = feats[0]["geometry"]
    assert fixed.is_valid and fixed.geom_type == "MultiPolygon" and fixed.area == pytest.approx(2.0)
    dropped = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(dropped) == 1 and "'parcels'" in dropped[0].getMessage() and "feature 1 " in dropped[0].getMessage()
    assert any("feature 0 " in r.getMessage() and "repaired" in r.getMessage() for r in caplog.records)


def test_real_land_polygons_memory_and_file_index_agree(caplog):
    grid = Grid.from_name("geodetic", pixelbuffer=4)
    with caplog.at_level(logging.INFO, logger="ziggurat.io.inputs.vector"):
        mem = VectorInput(config(LANDPOLY, index="memory"), grid)
        tile = grid.tile_at(-100.0, 70.0, 4)  # Canadian Arctic: touches the invalid polygons
        a = mem.for_tile(tile).read()
    repaired = {r.getMessage().split("feature ")[1].split(" ")[0] for r in caplog.records
                if "repaired" in r.getMessage()}
    assert repaired == {"37", "49", "105"}  # the three self-intersecting rings of landpoly
    fil = VectorInput(config(LANDPOLY, index="file"), grid)
    b = fil.for_tile(tile).read()
    assert mem.index == "memory" and fil.index == "file" and mem.count == 108
    assert sorted(f["id"] for f in a) == sorted(f["id"] for f in b) and len(a) > 3
    ua, ub = shapely.union_all([f["geometry"] for f in a]), shapely.union_all([f["geometry"] for f in b])
    assert ua.symmetric_difference(ub).area < 1e-9
    assert all(f["geometry"].is_valid for f in a + b)


def test_memory_index_loads_once_across_threads(tmp_path):
    grid = Grid.from_name("geodetic")
    inp = VectorInput(config(LANDPOLY), grid)
    tiles = [grid.tile_at(-100.0 + 5 * i, 45.0, 5) for i in range(8)]
    results: dict[int, int] = {}

    def work(i: int) -> None:
        results[i] = len(inp.for_tile(tiles[i]).read())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and inp._loaded is not None
    assert results == {i: len(inp.for_tile(tiles[i]).read()) for i in range(8)}
    copy = pickle.loads(pickle.dumps(inp))  # no handles or tree travel; rebuilt on first read
    assert copy._loaded is None and len(copy.for_tile(tiles[0]).read()) == results[0]


# -- rasterising ------------------------------------------------------------------------------------
def _two_squares(tmp_path: Path) -> tuple[VectorTileInput, float]:
    grid = Grid.from_name("geodetic", pixelbuffer=2)
    tile = grid.tile(8, 60, 300)
    res = tile.resolution[0]
    left, top = tile.bounds.left, tile.bounds.top
    # pixel-aligned squares: 10 x 10 pixels with v=3, 4 x 4 pixels with v=7, overlapping 2 x 2 pixels
    a = shapely.box(left, top - 10 * res, left + 10 * res, top)
    b = shapely.box(left + 8 * res, top - 12 * res, left + 12 * res, top - 8 * res)
    # GeoJSON keeps the order (FlatGeobuf's spatial index sorts features along a Hilbert curve)
    path = write_layer(tmp_path / "sq.geojson", [(a, {"v": 3.0}), (b, {"v": 7.0})], geometry="Polygon")
    return VectorInput(config(path), grid).for_tile(tile), res


def test_rasterize_property_values(tmp_path):
    tin, _ = _two_squares(tmp_path)
    arr = tin.rasterize("v")
    assert arr.shape == tin.tile.buffered_shape and arr.dtype == np.float64
    pb = 2  # the buffer: pixel (pb, pb) is the tile's top-left pixel
    assert (arr[pb:pb + 10, pb:pb + 10][:8, :8] == 3).all()
    assert (arr[pb + 8:pb + 12, pb + 8:pb + 12] == 7).all()  # the later feature wins the overlap
    assert (arr == 3).sum() == 100 - 4 and (arr == 7).sum() == 16 and (arr == 0).sum() == arr.size - 112
    const = tin.rasterize(1)
    assert const.dtype == np.uint8 and const.sum() == 112


def test_rasterize_all_touched_and_mask(tmp_path):
    tin, res = _two_squares(tmp_path)
    mask = tin.mask()
    assert mask.dtype == bool and (~mask).sum() == 112
    assert ((~mask) == (tin.rasterize(1) == 1)).all()
    assert (tin.mask(invert=True) == ~mask).all()
    grid = Grid.from_name("geodetic", pixelbuffer=0)
    tile = grid.tile(8, 60, 300)
    left, top = tile.bounds.left, tile.bounds.top
    thin = shapely.box(left + 0.25 * res, top - 2.75 * res, left + 1.25 * res, top - 0.25 * res)
    path = write_layer(tmp_path / "thin.geojson", [(thin, {"v": 1})])
    t2 = VectorInput(config(path), grid).for_tile(tile)
    assert t2.rasterize(1).sum() == 3 and t2.rasterize(1, all_touched=True).sum() == 6  # 1x3 vs 2x3


def test_rasterize_missing_property_names_it(tmp_path):
    tin, _ = _two_squares(tmp_path)
    with pytest.raises(KeyError, match="'height'"):
        tin.rasterize("height")


# -- formats and errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".shp", ".fgb"])
def test_formats_by_extension_through_a_recipe(tmp_path, suffix):
    path = write_layer(tmp_path / f"layer{suffix}", [(shapely.box(1, 1, 2, 2), {"k": 5})], geometry="Polygon")
    recipe = load_recipe({"process": "rasterize", "zoom_levels": 3, "pyramid": {"grid": "geodetic"},
                          "input": {"features": str(path)}, "output": {"path": str(tmp_path / "out")}})
    cfg = recipe.inputs["features"]
    assert cfg.format == "vector"
    inp = open_input(cfg, recipe.grid)
    assert isinstance(inp, VectorInput)
    feats = inp.for_tile(recipe.grid.tile_at(1.5, 1.5, 3)).read()
    assert [f["properties"]["k"] for f in feats] == [5]


def test_file_without_crs_needs_the_crs_option(tmp_path):
    path = write_layer(tmp_path / "nocrs.geojson", [(shapely.box(*merc(1, 1), *merc(2, 2)), {"k": 1})], crs=None)
    path.write_text(path.read_text().replace('"crs"', '"_crs"'))  # GeoJSON defaults to CRS84: remove it
    grid = Grid.from_name("geodetic")
    shp = write_layer(tmp_path / "nocrs.shp", [(shapely.box(*merc(1, 1), *merc(2, 2)), {"k": 1})], crs=None)
    with pytest.raises(InputError, match=r"'vec'.*has no CRS.*crs: EPSG"):
        VectorInput(config(shp), grid)
    inp = VectorInput(config(shp, crs="EPSG:3857"), grid)
    assert inp.bounds == pytest.approx((1, 1, 2, 2), abs=1e-9)


def test_unreadable_file_names_input_and_path(tmp_path):
    junk = tmp_path / "junk.geojson"
    junk.write_text("{ not json")
    with pytest.raises(InputError, match=r"'vec'.*junk\.geojson"):
        VectorInput(config(junk), Grid.from_name("geodetic"))
    with pytest.raises(InputError, match="index must be one of auto, memory, file"):
        VectorInput(config(LANDPOLY, index="rtree"), Grid.from_name("geodetic"))
