"""Grid math: hand-checked numbers, plus morecantile as the reference for many random tiles."""

from __future__ import annotations

import json
import math
import pickle
import random
import time
import tracemalloc

import morecantile
import numpy as np
import pyproj
import pytest
import shapely
from affine import Affine
from rasterio.warp import transform_bounds

from ziggurat.core.errors import GridError
from ziggurat.core.grid import Bounds, Grid, Tile, TileIndex

MERC = 20037508.342789244  # pi * 6378137, what morecantile's WebMercatorQuad uses


def utm33_tms() -> morecantile.TileMatrixSet:
    return morecantile.TileMatrixSet.custom([166021.44, 0.0, 833978.56, 9329005.18],
                                            pyproj.CRS.from_epsg(32633), id="UTM33N")


def bottom_left_tms() -> morecantile.TileMatrixSet:
    return morecantile.TileMatrixSet.custom([0.0, 0.0, 1024000.0, 1024000.0], pyproj.CRS.from_epsg(32633),
                                            corner_of_origin="bottomLeft", id="BottomLeftUTM33")


def approx_bounds(b: tuple[float, ...], rel: float = 1e-12, abs_: float = 1e-9):
    return pytest.approx(tuple(b), rel=rel, abs=abs_)


# -- hand-checked geometry ------------------------------------------------------------------

def test_geodetic_level0_is_two_tiles():
    g = Grid.from_name("geodetic")
    assert g.matrix_shape(0) == (1, 2)
    assert g.bounds(0) == Bounds(-180, -90, 180, 90)
    assert g.tile(0, 0, 0).bounds == Bounds(-180, -90, 0, 90)
    assert g.tile(0, 0, 1).bounds == Bounds(0, -90, 180, 90)
    assert g.resolution(0) == (180 / 256, 180 / 256)
    t = g.tile(0, 0, 0)
    assert t.shape == (256, 256)
    assert t.affine == Affine(180 / 256, 0, -180, 0, -180 / 256, 90)
    assert g.crs.is_geographic and g.is_geographic
    # zoom 1: 4 x 2 tiles of 90 degrees
    assert g.matrix_shape(1) == (2, 4)
    assert g.tile(1, 1, 3).bounds == Bounds(90, -90, 180, 0)
    assert g.tile(1, 0, 1).bounds == Bounds(-90, 0, 0, 90)


def test_mercator_level0_is_one_tile():
    g = Grid.from_name("mercator")
    assert g.matrix_shape(0) == (1, 1)
    assert g.tile(0, 0, 0).bounds == approx_bounds((-MERC, -MERC, MERC, MERC))
    assert g.resolution(0) == pytest.approx((2 * MERC / 256, 2 * MERC / 256), rel=1e-15)
    assert g.crs.to_epsg() == 3857 and not g.is_geographic
    assert g.tile(1, 0, 1).bounds == approx_bounds((0, 0, MERC, MERC))
    assert g.tile(1, 1, 0).bounds == approx_bounds((-MERC, -MERC, 0, 0))


def test_metatiling_2_and_4_with_clipping():
    g2 = Grid.from_name("geodetic", metatiling=2)
    # zoom 0 has only 2 x 1 tiles: one metatile, clipped to 512 x 256 pixels
    assert g2.matrix_shape(0) == (1, 1)
    assert g2.tile(0, 0, 0).bounds == Bounds(-180, -90, 180, 90)
    assert g2.tile(0, 0, 0).shape == (256, 512)
    # zoom 1: 4 x 2 tiles -> 2 x 1 metatiles of 512 x 512
    assert g2.matrix_shape(1) == (1, 2)
    assert g2.tile(1, 0, 1).bounds == Bounds(0, -90, 180, 90)
    assert g2.tile(1, 0, 1).shape == (512, 512)
    # resolution does not change with metatiling
    assert g2.resolution(3) == Grid.from_name("geodetic").resolution(3)

    g4 = Grid.from_name("geodetic", metatiling=4)
    assert g4.matrix_shape(0) == (1, 1) and g4.tile(0, 0, 0).shape == (256, 512)
    assert g4.matrix_shape(1) == (1, 1) and g4.tile(1, 0, 0).shape == (512, 1024)
    assert g4.matrix_shape(2) == (1, 2) and g4.tile(2, 0, 1).shape == (1024, 1024)
    assert g4.tile(2, 0, 1).bounds == Bounds(0, -90, 180, 90)
    assert g4.matrix_shape(3) == (2, 4)
    assert g4.tile(3, 1, 2).bounds == Bounds(0, -90, 90, 0)
    assert g4.tile(3, 1, 2).affine == Affine(22.5 / 256, 0, 0, 0, -22.5 / 256, 0)

    m4 = Grid.from_name("mercator", metatiling=4)
    # 2 x 2 tiles at zoom 1: one metatile clipped to 512 x 512
    assert m4.matrix_shape(1) == (1, 1)
    assert m4.tile(1, 0, 0).shape == (512, 512)
    assert m4.tile(1, 0, 0).bounds == approx_bounds((-MERC, -MERC, MERC, MERC))
    assert m4.matrix_shape(5) == (8, 8)
    span = 2 * MERC / 32
    assert m4.tile(5, 7, 0).bounds == approx_bounds((-MERC, -MERC, -MERC + 4 * span, -MERC + 4 * span))

    g16 = Grid.from_name("geodetic", metatiling=16)
    assert g16.matrix_shape(3) == (1, 1) and g16.tile(3, 0, 0).shape == (2048, 4096)


def test_pixelbuffer():
    g = Grid.from_name("geodetic", pixelbuffer=2)
    t = g.tile(1, 0, 0)
    res = 90 / 256
    assert t.pixelbuffer == 2
    assert t.bounds == Bounds(-180, 0, -90, 90)
    assert t.shape == (256, 256)
    assert t.buffered_shape == (260, 260)
    assert t.buffered_bounds == approx_bounds((-180 - 2 * res, -2 * res, -90 + 2 * res, 90 + 2 * res))
    assert t.buffered_affine == Affine(res, 0, -180 - 2 * res, 0, -res, 90 + 2 * res)
    # the unbuffered tile starts 2 pixels into the buffered one
    assert t.buffered_affine @ (2, 2) == pytest.approx((-180, 90))
    assert t.buffered_affine @ t.buffered_shape[::-1] == pytest.approx((-90 + 2 * res, -2 * res))

    gm = Grid.from_name("geodetic", metatiling=2, pixelbuffer=1)
    tm = gm.tile(0, 0, 0)
    assert tm.buffered_shape == (258, 514)
    assert tm.buffered_bounds == approx_bounds((-180 - 180 / 256, -90 - 180 / 256,
                                                180 + 180 / 256, 90 + 180 / 256))


def test_tile_size_512_halves_resolution():
    g256 = Grid.from_name("geodetic")
    g512 = Grid.from_name("geodetic", tile_size=512)
    assert g512.effective_tile_size == 512 and g256.effective_tile_size == 256
    for z in (0, 4, 12):
        assert g512.resolution(z) == (g256.resolution(z)[0] / 2, g256.resolution(z)[1] / 2)
        assert g512.tile(z, 0, 0).bounds == g256.tile(z, 0, 0).bounds
        assert g512.tile(z, 0, 0).shape == (512, 512)
    m = Grid.from_name("mercator", tile_size=512, metatiling=2)
    assert m.tile(1, 0, 0).shape == (1024, 1024)
    assert m.resolution(0)[0] == pytest.approx(2 * MERC / 512)
    assert g512 != g256


# -- morecantile as reference ---------------------------------------------------------------

REFERENCE_GRIDS = [
    ("WorldCRS84Quad", lambda: morecantile.tms.get("WorldCRS84Quad")),
    ("WebMercatorQuad", lambda: morecantile.tms.get("WebMercatorQuad")),
    ("WGS1984Quad", lambda: morecantile.tms.get("WGS1984Quad")),            # lat/lon axis order
    ("EuropeanETRS89_LAEAQuad", lambda: morecantile.tms.get("EuropeanETRS89_LAEAQuad")),  # N/E order
    ("UTM31WGS84Quad", lambda: morecantile.tms.get("UTM31WGS84Quad")),      # minzoom 1, 1 x 2 tiles
    ("UTM33N", utm33_tms),
    ("BottomLeftUTM33", bottom_left_tms),
]


@pytest.mark.parametrize("name,make_tms", REFERENCE_GRIDS, ids=[n for n, _ in REFERENCE_GRIDS])
def test_tile_bounds_match_morecantile(name, make_tms):
    tms = make_tms()
    grid = Grid(tms, name)
    rng = random.Random(name)
    for zoom in range(max(tms.minzoom, 0), min(tms.maxzoom, 20) + 1):
        m = tms.matrix(zoom)
        assert grid.matrix_shape(zoom) == (m.matrixHeight, m.matrixWidth)
        for _ in range(25):
            row, col = rng.randrange(m.matrixHeight), rng.randrange(m.matrixWidth)
            ref = tms.xy_bounds(morecantile.Tile(col, row, zoom))
            assert grid.tile(zoom, row, col).bounds == approx_bounds(ref), (zoom, row, col)


@pytest.mark.parametrize("name,make_tms", REFERENCE_GRIDS, ids=[n for n, _ in REFERENCE_GRIDS])
def test_metatile_bounds_are_the_union_of_their_tiles(name, make_tms):
    tms = make_tms()
    grid = Grid(tms, name, metatiling=4)
    rng = random.Random(name)
    for zoom in range(max(tms.minzoom, 0), min(tms.maxzoom, 16) + 1):
        m = tms.matrix(zoom)
        rows, cols = grid.matrix_shape(zoom)
        assert (rows, cols) == (math.ceil(m.matrixHeight / 4), math.ceil(m.matrixWidth / 4))
        for _ in range(10):
            row, col = rng.randrange(rows), rng.randrange(cols)
            r0, r1 = row * 4, min(row * 4 + 3, m.matrixHeight - 1)
            c0, c1 = col * 4, min(col * 4 + 3, m.matrixWidth - 1)
            first = tms.xy_bounds(morecantile.Tile(c0, r0, zoom))
            last = tms.xy_bounds(morecantile.Tile(c1, r1, zoom))
            ref = (min(first.left, last.left), min(first.bottom, last.bottom),
                   max(first.right, last.right), max(first.top, last.top))
            tile = grid.tile(zoom, row, col)
            assert tile.bounds == approx_bounds(ref), (zoom, row, col)
            assert tile.shape == ((r1 - r0 + 1) * 256, (c1 - c0 + 1) * 256)


def test_bottom_left_origin_rows_grow_upwards():
    grid = Grid(bottom_left_tms(), "bl")
    assert grid.tile(1, 0, 0).bounds == Bounds(0, 0, 512000, 512000)
    assert grid.tile(1, 1, 0).bounds == Bounds(0, 512000, 512000, 1024000)
    assert grid.tile_at(10, 10, 1).index == TileIndex(1, 0, 0)
    assert grid.tile_at(10, 1000000, 1).index == TileIndex(1, 1, 0)
    rows, cols = grid.tile_range((0, 512000, 512000, 1024000), 1)
    assert (rows, cols) == (range(1, 2), range(0, 1))
    t = grid.tile(2, 0, 3)
    assert t.affine @ (0, 0) == (t.bounds.left, t.bounds.top)  # arrays are still north-up
    assert [c.parent() for c in t.children()] == [t] * 4


@pytest.mark.parametrize("grid_name", ["geodetic", "mercator"])
def test_tile_counts_match_morecantile(grid_name):
    grid = Grid.from_name(grid_name)
    tms = grid.tms
    rng = random.Random(7)
    for _ in range(150):
        zoom = rng.randrange(0, 19)
        span = 180 / 2 ** zoom  # geodetic tile size in degrees; boxes of up to ~30 tiles a side
        w = rng.uniform(-179, 178)
        e = min(w + rng.uniform(0.001, 30) * span, 179.9)
        s = rng.uniform(-80, 79)
        n = min(s + rng.uniform(0.001, 30) * span, 84)
        expected = sum(1 for _ in tms.tiles(w, s, e, n, [zoom]))
        box = (w, s, e, n) if grid_name == "geodetic" else transform_bounds("EPSG:4326", "EPSG:3857", w, s, e, n)
        assert grid.count_tiles(box, zoom) == expected, (zoom, box)
        assert sum(1 for _ in grid.tiles_in_bounds(box, zoom)) == expected
        got = {t.index for t in grid.tiles_in_bounds(box, zoom)}
        assert got == {TileIndex(zoom, t.y, t.x) for t in tms.tiles(w, s, e, n, [zoom])}


# -- tiles covering an area -----------------------------------------------------------------

def test_bounds_on_tile_edges_do_not_pull_in_neighbours():
    g = Grid.from_name("geodetic")
    assert g.tile_range((-180, 0, -90, 90), 1) == (range(0, 1), range(0, 1))
    assert [t.index for t in g.tiles_in_bounds(g.tile(5, 7, 9).bounds, 5)] == [TileIndex(5, 7, 9)]
    # a 2 x 2 block given by its exact edges, also after float noise from arithmetic
    span = 180 / 2 ** 5
    left, top = -180 + 10 * span, 90 - 4 * span
    box = (left, top - 2 * span, left + 2 * span, top)
    assert g.tile_range(box, 5) == (range(4, 6), range(10, 12))
    noisy = (box[0] + 1e-12, box[1] - 1e-12, box[2] + 1e-12, box[3] - 1e-12)
    assert g.tile_range(noisy, 5) == (range(4, 6), range(10, 12))
    m = Grid.from_name("mercator")
    assert m.count_tiles(m.tile(12, 1000, 2000).bounds, 12) == 1


def test_partial_overlaps_pull_in_neighbours():
    g = Grid.from_name("geodetic")
    assert g.tile_range((-91, -1, -89, 1), 1) == (range(0, 2), range(0, 2))
    assert g.count_tiles((-90.01, 0, -89.99, 0.01), 1) == 2
    # a point (or a line) still selects the tile containing it
    assert g.tile_range((10, 10, 10, 10), 1) == (range(0, 1), range(2, 3))
    # whole world
    assert g.count_tiles((-180, -90, 180, 90), 3) == 16 * 8
    assert g.count_tiles((-500, -500, 500, 500), 3) == 16 * 8
    g2 = Grid.from_name("geodetic", metatiling=2)
    assert g2.tile_range((-91, -1, -89, 1), 1) == (range(0, 1), range(0, 1))
    assert g2.tile_range((-1, -1, 1, 1), 1) == (range(0, 1), range(0, 2))


@pytest.mark.parametrize("box", [(190, 0, 200, 10), (-200, 0, -181, 10), (0, 91, 10, 95), (0, -99, 10, -91),
                                 (180, 0, 190, 10), (-190, 0, -180, 10), (0, 90, 10, 100)])
def test_bounds_outside_the_grid_give_no_tiles(box):
    g = Grid.from_name("geodetic")
    assert g.count_tiles(box, 3) == 0
    assert list(g.tiles_in_bounds(box, 3)) == []


@pytest.mark.parametrize("grid_name,box,zoom", [
    ("geodetic", (-10, -200, 10, -100), 0),     # south of -90 inside the nominal 2x2 metatile
    ("mercator", (2.1e7, 0, 2.2e7, 1e6), 0),    # east of the antimeridian
    ("UTM31WGS84Quad", (1.2e7, 0, 1.3e7, 1e6), 1),  # east of the single column of tiles
])
def test_bounds_outside_the_grid_give_no_metatiles(grid_name, box, zoom):
    g = Grid.from_name(grid_name, metatiling=2)
    assert g.count_tiles(box, zoom) == 0


def test_tile_at_outside_the_grid_with_metatiling():
    with pytest.raises(GridError):
        Grid.from_name("geodetic", metatiling=2).tile_at(0, -100, 0)


def test_tiles_in_geometry_skips_the_hole_and_costs_only_the_bbox(monkeypatch):
    g = Grid.from_name("geodetic")
    zoom, span = 6, 180 / 64
    hole = shapely.box(-5, -5, 5, 5)
    poly = shapely.box(-10, -10, 10, 10).difference(hole)
    rows, cols = g.tile_range(poly.bounds, zoom)
    assert (rows, cols) == (range(28, 36), range(60, 68))
    calls = []
    real = Grid.tile_bounds

    def counting(self, z, r, c):
        calls.append((z, r, c))
        return real(self, z, r, c)

    monkeypatch.setattr(Grid, "tile_bounds", counting)
    got = {t.index for t in g.tiles_in_geometry(poly, zoom)}
    assert len(calls) == 64  # one per tile of the bbox, nothing else
    inside_hole = {TileIndex(zoom, r, c) for r in (31, 32) for c in (63, 64)}
    assert g.tile(zoom, 32, 64).bounds == Bounds(0, -span, span, 0)
    assert not got & inside_hole
    assert got == {TileIndex(zoom, r, c) for r in rows for c in cols} - inside_hole

    # a hole exactly on tile edges: those tiles only touch the polygon
    poly2 = shapely.box(-10, -10, 10, 10).difference(shapely.box(-span, -span, span, span))
    got2 = {t.index for t in g.tiles_in_geometry(poly2, zoom)}
    assert got2 == {TileIndex(zoom, r, c) for r in rows for c in cols} - inside_hole
    assert list(g.tiles_in_geometry(shapely.Polygon(), zoom)) == []
    assert list(g.tiles_in_geometry(shapely.box(200, 0, 210, 10), zoom)) == []


def test_tiles_in_geometry_at_high_zoom_is_cheap():
    g = Grid.from_name("geodetic")
    tri = shapely.Polygon([(10, 45), (10.001, 45), (10, 45.001)])
    start = time.perf_counter()
    tiles = list(g.tiles_in_geometry(tri, 20))
    assert time.perf_counter() - start < 2
    rows, cols = g.tile_range(tri.bounds, 20)
    assert 0 < len(tiles) < len(rows) * len(cols)


def test_tile_at():
    g = Grid.from_name("geodetic")
    assert g.tile_at(-90, 45, 0).index == TileIndex(0, 0, 0)
    assert g.tile_at(90, -45, 0).index == TileIndex(0, 0, 1)
    assert g.tile_at(0, 0, 1).index == TileIndex(1, 1, 2)  # on an edge: right and down
    assert g.tile_at(-180, 90, 1).index == TileIndex(1, 0, 0)
    for x, y in [(-181, 0), (0, 91), (0, -91), (181, 0)]:
        with pytest.raises(GridError):
            g.tile_at(x, y, 3)
    m = Grid.from_name("mercator", metatiling=2)
    assert m.tile_at(1, 1, 2).index == TileIndex(2, 0, 1)
    rng = random.Random(3)
    for _ in range(200):
        z = rng.randrange(0, 18)
        x, y = rng.uniform(-180, 180), rng.uniform(-90, 90)
        b = g.tile_at(x, y, z).bounds
        assert b.left <= x < b.right and b.bottom < y <= b.top


@pytest.mark.parametrize("grid_name", ["geodetic", "mercator"])
@pytest.mark.parametrize("metatiling", [1, 2, 4])
def test_parent_children_consistency(grid_name, metatiling):
    g = Grid.from_name(grid_name, metatiling=metatiling)
    rng = random.Random(metatiling)
    for _ in range(40):
        zoom = rng.randrange(0, 15)
        rows, cols = g.matrix_shape(zoom)
        tile = g.tile(zoom, rng.randrange(rows), rng.randrange(cols))
        kids = tile.children()
        assert kids and all(k.parent() == tile for k in kids)
        assert len(kids) <= 4
        # the children cover exactly the tile
        area = sum((k.bounds.right - k.bounds.left) * (k.bounds.top - k.bounds.bottom) for k in kids)
        b = tile.bounds
        assert area == pytest.approx((b.right - b.left) * (b.top - b.bottom), rel=1e-12)
        parent = tile.parent()
        if zoom == 0:
            assert parent is None
        else:
            pb = parent.bounds
            eps = 1e-9 * (pb.right - pb.left)
            assert pb.left - eps <= b.left and b.right <= pb.right + eps
            assert pb.bottom - eps <= b.bottom and b.top <= pb.top + eps
            assert tile in parent.children()
    top = g.tile(g.maxzoom, 0, 0)
    assert top.children() == []


def test_children_of_geodetic_level0():
    assert len(Grid.from_name("geodetic").tile(0, 0, 1).children()) == 4
    # one 512 x 256 metatile at zoom 0, two 512 x 512 metatiles at zoom 1
    kids = Grid.from_name("geodetic", metatiling=2).tile(0, 0, 0).children()
    assert [k.index for k in kids] == [TileIndex(1, 0, 0), TileIndex(1, 0, 1)]


# -- identity, serialisation ----------------------------------------------------------------

@pytest.mark.parametrize("grid", [
    Grid.from_name("geodetic", metatiling=2, pixelbuffer=1),
    Grid.from_name("mercator", tile_size=512),
    Grid.from_name("WGS1984Quad"),
    Grid(utm33_tms(), "utm33.json", metatiling=4, pixelbuffer=3),
    Grid(bottom_left_tms(), "bottom-left"),
], ids=["geodetic", "mercator512", "WGS1984Quad", "custom-utm", "custom-bottom-left"])
def test_to_dict_round_trip(grid):
    data = json.loads(json.dumps(grid.to_dict()))
    back = Grid.from_dict(data)
    assert back == grid and hash(back) == hash(grid)
    assert back.name == grid.name
    assert (back.metatiling, back.pixelbuffer, back.effective_tile_size) == (
        grid.metatiling, grid.pixelbuffer, grid.effective_tile_size)
    assert back.crs == grid.crs
    for zoom in (grid.minzoom, 5, 11):
        rows, cols = grid.matrix_shape(zoom)
        t = (zoom, rows - 1, cols // 2)
        assert back.tile(*t).bounds == grid.tile(*t).bounds
        assert back.tile(*t).buffered_affine == grid.tile(*t).buffered_affine
    assert ("tms" in data) == (grid.name not in ("geodetic", "mercator", "WGS1984Quad"))


def test_pickle_round_trip():
    for grid in (Grid.from_name("geodetic", metatiling=4, pixelbuffer=2), Grid(utm33_tms(), "utm", metatiling=2)):
        grid.tile(7, 0, 0)  # fill the level cache first
        back = pickle.loads(pickle.dumps(grid))
        assert back == grid
        tile = grid.tile(7, 3, 5)
        tback = pickle.loads(pickle.dumps(tile))
        assert tback == tile and tback.bounds == tile.bounds and tback.index == TileIndex(7, 3, 5)
    assert pickle.loads(pickle.dumps(TileIndex(3, 2, 1))) == (3, 2, 1)


def test_with_options_and_equality():
    g = Grid.from_name("geodetic", metatiling=4, pixelbuffer=2)
    out = g.with_options(metatiling=1, pixelbuffer=0)
    assert (out.metatiling, out.pixelbuffer, out.name) == (1, 0, "geodetic")
    assert out == Grid.from_name("WorldCRS84Quad")
    assert g != out and g == Grid.from_name("geodetic", metatiling=4, pixelbuffer=2)
    assert g.with_options() == g
    assert str(g.tile(3, 1, 2)) == "(zoom 3, row 1, col 2)"
    assert repr(g.tile(3, 1, 2)) == "Tile(zoom=3, row=1, col=2, grid='geodetic')"
    assert isinstance(g.tile(3, 1, 2), Tile)


@pytest.mark.parametrize("kwargs", [dict(metatiling=3), dict(metatiling=0), dict(metatiling=32),
                                    dict(pixelbuffer=-1), dict(pixelbuffer=1.5), dict(tile_size=0)])
def test_bad_options_raise_grid_error(kwargs):
    with pytest.raises(GridError):
        Grid.from_name("geodetic", **kwargs)


def test_bad_zoom_tile_and_name_raise_grid_error():
    g = Grid.from_name("geodetic", metatiling=2)
    for zoom in (-1, 31, 99):
        with pytest.raises(GridError):
            g.tile(zoom, 0, 0)
        with pytest.raises(GridError):
            g.resolution(zoom)
    rows, cols = g.matrix_shape(3)
    for row, col in [(rows, 0), (0, cols), (-1, 0), (0, -1)]:
        with pytest.raises(GridError):
            g.tile(3, row, col)
    with pytest.raises(GridError, match="unknown grid"):
        Grid.from_name("nope")
    with pytest.raises(ValueError):  # GridError is a ValueError too
        Grid.from_name("geodetic", metatiling=5)
    with pytest.raises(GridError):  # minzoom of this registry grid is 1
        Grid.from_name("UTM31WGS84Quad").tile(0, 0, 0)


def test_tile_range_at_zoom_24_is_arithmetic_only():
    """A 0.5 degree box at the deepest zooms: ~5.4e8 tiles, counted without building any."""
    g = Grid.from_name("geodetic")  # maxzoom 23: tiles of 180 / 2^23 degree
    tracemalloc.start()
    start = time.perf_counter()
    rows, cols = g.tile_range((0, 0, 0.5, 0.5), 23)
    n = g.count_tiles((0, 0, 0.5, 0.5), 23)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # 0.5 degree = 0.5 * 2^23 / 180 = 23301.69 tiles; left and bottom edges sit on tile edges
    assert cols == range(2 ** 23, 2 ** 23 + 23302)
    assert rows == range(2 ** 22 - 23302, 2 ** 22)
    assert n == 23302 ** 2
    assert elapsed < 0.1 and peak < 100_000

    m = Grid.from_name("mercator")  # zoom 24: tiles of 2 pi R / 2^24
    box = transform_bounds("EPSG:4326", "EPSG:3857", 0, 0, 0.5, 0.5)
    rows, cols = m.tile_range(box, 24)
    # x: 0.5 / 360 * 2^24 = 23301.69; y: ln(tan(pi/4 + 0.25 deg)) / (2 pi) * 2^24 = 23301.98
    assert cols == range(2 ** 23, 2 ** 23 + 23302)
    assert rows == range(2 ** 23 - 23302, 2 ** 23)
    assert m.count_tiles(box, 24) == 23302 ** 2


def test_inverted_bounds_are_an_error():
    with pytest.raises(GridError, match="antimeridian"):
        Grid.from_name("geodetic").tile_range((170, 0, -170, 10), 3)


def test_zoom_must_be_an_integer():
    g = Grid.from_name("geodetic")
    g.tile(3, 0, 0)
    with pytest.raises(GridError, match="integer"):
        g.tile(3.0, 0, 0)
    assert g.tile(np.int64(3), 0, 0).zoom == 3


def test_registry_grids_extend_past_their_defined_levels():
    """WorldCRS84Quad defines zooms 0..23; deeper zooms halve the pixel like mapchete's grids."""
    g = Grid.from_name("geodetic")
    assert g.maxzoom == 30
    assert g.resolution(24)[0] == pytest.approx(g.resolution(23)[0] / 2, rel=1e-12)
    assert g.matrix_shape(24) == (2 ** 24, 2 ** 25)
    t = g.tile(24, 2 ** 23, 2 ** 24)  # the tile just south-east of (0, 0)
    assert t.bounds.left == pytest.approx(0.0, abs=1e-9) and t.bounds.top == pytest.approx(0.0, abs=1e-9)
    assert t.parent().index == (23, 2 ** 22, 2 ** 23)
    # a 0.5 degree box at zoom 24: 180 / 2**24 degrees per tile, counted without enumerating
    span = 180 / 2 ** 24
    expected = (math.ceil(45.5 / span) - math.floor(45.0 / span)) * (math.ceil(190.5 / span) - math.floor(190.0 / span))
    assert g.count_tiles((10.0, 44.5, 10.5, 45.0), 24) == expected
