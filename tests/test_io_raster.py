"""RasterInput: fast and general read paths, masks, edges of the world, threads, pickling."""

from __future__ import annotations

import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject

import ziggurat.io.inputs.raster as raster_mod
from ziggurat.core.errors import InputError
from ziggurat.core.grid import Bounds, Grid, Tile
from ziggurat.io import RasterInput, RasterTileInput, open_input
from ziggurat.recipe import InputConfig

DATA = Path(__file__).parent / "data"
ZOOM = 8
RES = 180 / (256 * 2**ZOOM)  # geodetic pixel size at ZOOM (exact in binary)


def make_raster(path: Path, transform: Affine, crs: str, shape: tuple[int, int], *, count: int = 1,
                dtype: str = "int32", nodata: float | None = None) -> np.ndarray:
    """value = band * 1_000_000 + row * 1000 + col: a misplaced pixel is obvious."""
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    data = np.stack([(b * 1_000_000 + rows * 1000 + cols) for b in range(count)]).astype(dtype)
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=count, dtype=dtype,
                       crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data)
    return data


def config(path: Path, name: str = "dem", **options: Any) -> InputConfig:
    return InputConfig(name=name, path=Path(path), format="raster", options=options)


def geodetic(pixelbuffer: int = 2, metatiling: int = 1) -> Grid:
    return Grid.from_name("geodetic", pixelbuffer=pixelbuffer, metatiling=metatiling)


@pytest.fixture
def aligned(tmp_path: Path) -> tuple[Path, Affine, np.ndarray]:
    """A source on the geodetic z8 pixel grid, starting mid-tile so buffers reach outside it."""
    grid = geodetic()
    t = grid.tile(ZOOM, 40, 300)
    left = t.bounds.left + 100 * RES
    top = t.bounds.top - 50 * RES
    transform = Affine(RES, 0, left, 0, -RES, top)
    path = tmp_path / "aligned.tif"
    data = make_raster(path, transform, "EPSG:4326", (300, 400), count=2, nodata=-1)
    return path, transform, data


def expected_window(tile: Tile, transform: Affine, data: np.ndarray) -> np.ma.MaskedArray:
    """Pixel-by-pixel expectation for an aligned source (independent of the reader)."""
    h, w = tile.buffered_shape
    row0 = round((transform.f - tile.buffered_bounds.top) / RES)
    col0 = round((tile.buffered_bounds.left - transform.c) / RES)
    out = np.ma.masked_all((data.shape[0], h, w), dtype=data.dtype)
    for i in range(h):
        r = row0 + i
        if not 0 <= r < data.shape[1]:
            continue
        for j in range(w):
            c = col0 + j
            if 0 <= c < data.shape[2]:
                out[:, i, j] = data[:, r, c]
    return out


def assert_masked_equal(a: np.ma.MaskedArray, b: np.ma.MaskedArray) -> None:
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b))
    valid = ~np.ma.getmaskarray(a)
    np.testing.assert_array_equal(np.ma.getdata(a)[valid], np.ma.getdata(b)[valid])


def no_warp(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("the fast path must not warp")


# -- fast path ----------------------------------------------------------------------------------
def test_fast_path_is_exact_with_pixelbuffer(aligned, monkeypatch):
    path, transform, data = aligned
    grid = geodetic(pixelbuffer=2)
    inp = RasterInput(config(path), grid)
    monkeypatch.setattr(raster_mod, "warp_to_tile", no_warp)
    for tile in (grid.tile(ZOOM, 40, 300), grid.tile(ZOOM, 40, 301), grid.tile(ZOOM, 41, 300)):
        assert inp.aligned_offset(tile) is not None
        got = inp.for_tile(tile).read()
        assert got.shape == (2, 260, 260) and got.dtype == np.int32
        assert_masked_equal(got, expected_window(tile, transform, data))
    tile = grid.tile(ZOOM, 40, 300)
    got = inp.for_tile(tile).read(1)
    # the source starts 100 px right / 50 px down of the tile: buffer + that area is masked
    assert got.mask[:, : 2 + 100].all() and got.mask[: 2 + 50].all()
    assert not got.mask[2 + 50:, 2 + 100:].any()
    assert got[52, 102] == 0 and got[53, 105] == 1003


def test_fast_path_metatile_crossing_source_edge(aligned, monkeypatch):
    path, transform, data = aligned
    grid = geodetic(pixelbuffer=3, metatiling=2)
    inp = RasterInput(config(path), grid)
    monkeypatch.setattr(raster_mod, "warp_to_tile", no_warp)
    tile = grid.tile(ZOOM, 20, 150)
    assert_masked_equal(inp.read(tile), expected_window(tile, transform, data))


def test_fast_and_general_paths_agree(aligned, tmp_path):
    path, transform, data = aligned
    grid = geodetic(pixelbuffer=2, metatiling=2)
    inp = RasterInput(config(path), grid)
    tile = grid.tile(ZOOM, 20, 150)
    fast = inp.read(tile)
    assert_masked_equal(inp.read(tile, method="warp"), fast)
    # a source shifted by 1e-4 px cannot take the fast path; nearest gives the same pixels
    shifted = tmp_path / "shifted.tif"
    make_raster(shifted, transform @ Affine.translation(1e-4, -1e-4), "EPSG:4326", (300, 400),
                count=2, nodata=-1)
    inp2 = RasterInput(config(shifted), grid)
    assert inp2.aligned_offset(tile) is None
    assert_masked_equal(inp2.read(tile), fast)


def test_bilinear_general_path_keeps_values_between_neighbours(aligned):
    path, _, _ = aligned
    grid = geodetic(pixelbuffer=0)
    inp = RasterInput(config(path), grid)
    tile = grid.tile(ZOOM, 40, 300)
    near = inp.read(tile, 1, method="warp")
    bil = inp.read(tile, 1, "bilinear", method="warp")
    inner = ~near.mask
    inner[:60, :] = inner[:, :110] = False  # away from the source edge
    assert np.abs(bil[inner] - near[inner]).max() <= 1001


# -- general path -------------------------------------------------------------------------------
def test_general_path_matches_independent_reproject(tmp_path):
    path = tmp_path / "merc.tif"
    transform = Affine(100.0, 0, 1_000_000, 0, -100.0, 5_000_000)
    data = make_raster(path, transform, "EPSG:3857", (200, 300), nodata=-1)
    grid = geodetic(pixelbuffer=4)
    inp = RasterInput(config(path), grid)
    assert inp.bounds.left == pytest.approx(8.983, abs=1e-3)
    tiles = list(grid.tiles_in_bounds(inp.bounds, 10))
    assert len(tiles) >= 2
    for tile in tiles:
        got = inp.for_tile(tile).read()
        expected = np.full((1, *tile.buffered_shape), -1, dtype="int32")
        reproject(data, expected, src_transform=transform, src_crs="EPSG:3857", src_nodata=-1,
                  dst_transform=tile.buffered_affine, dst_crs=grid.crs, dst_nodata=-1,
                  resampling=Resampling.nearest)
        assert_masked_equal(got, np.ma.masked_equal(expected, -1))
        assert (~got.mask).sum() > 100


def test_source_without_nodata_is_masked_outside_footprint(tmp_path):
    path = tmp_path / "merc.tif"
    transform = Affine(100.0, 0, 1_000_000, 0, -100.0, 5_000_000)
    data = make_raster(path, transform, "EPSG:3857", (200, 300), nodata=None)
    grid = geodetic(pixelbuffer=4)
    inp = RasterInput(config(path), grid)
    assert inp.nodata is None
    for tile in grid.tiles_in_bounds(inp.bounds, 10):
        got = inp.for_tile(tile).read(1)
        ones = np.zeros(tile.buffered_shape, dtype="uint8")
        reproject(np.ones(data.shape[1:], "uint8"), ones, src_transform=transform,
                  src_crs="EPSG:3857", dst_transform=tile.buffered_affine, dst_crs=grid.crs,
                  dst_nodata=0, resampling=Resampling.nearest)
        np.testing.assert_array_equal(got.mask, ones == 0)
        assert got.mask.any() and not got.mask.all()
        # pixel value 0 (source row 0, col 0) is data, not nodata
        assert got.min() >= 0


def test_source_without_nodata_fast_path(tmp_path):
    grid = geodetic(pixelbuffer=2)
    tile = grid.tile(ZOOM, 40, 300)
    transform = Affine(RES, 0, tile.bounds.left + 10 * RES, 0, -RES, tile.bounds.top)
    path = tmp_path / "nonodata.tif"
    data = make_raster(path, transform, "EPSG:4326", (20, 20))
    got = RasterInput(config(path), grid).read(tile)
    assert_masked_equal(got, expected_window(tile, transform, data))
    assert got[0, 2, 12] == 0 and not got.mask[0, 2, 12]


def test_nodata_becomes_mask_on_both_paths(aligned, tmp_path):
    path, transform, data = aligned
    holed = tmp_path / "holed.tif"
    data = data.copy()
    data[:, 60:70, 110:130] = -1
    with rasterio.open(path) as src:
        profile = src.profile
    with rasterio.open(holed, "w", **profile) as dst:
        dst.write(data)
    grid = geodetic(pixelbuffer=2)
    inp = RasterInput(config(holed), grid)
    tile = grid.tile(ZOOM, 40, 300)
    row0 = round((transform.f - tile.buffered_bounds.top) / RES)
    col0 = round((tile.buffered_bounds.left - transform.c) / RES)
    for method in ("auto", "warp"):
        got = inp.read(tile, 2, method=method)
        assert got.mask[60 - row0:70 - row0, 110 - col0:130 - col0].all()
        assert not got.mask[59 - row0, 110 - col0]
        assert got.fill_value == -1


def test_indexes_and_resampling_arguments(aligned):
    path, _, data = aligned
    grid = geodetic()
    tile_input = RasterInput(config(path), grid).for_tile(grid.tile(ZOOM, 40, 300))
    assert isinstance(tile_input, RasterTileInput)
    assert tile_input.read(2).shape == (260, 260)
    assert tile_input.read([2]).shape == (1, 260, 260)
    assert tile_input.read([2, 1]).shape == (2, 260, 260)
    assert tile_input.read().shape == (2, 260, 260)
    np.testing.assert_array_equal(tile_input.read([2, 1])[0], tile_input.read(2))
    assert tile_input.read(np.int64(1)).ndim == 2
    with pytest.raises(InputError, match="out of range"):
        tile_input.read(3)
    with pytest.raises(InputError, match="unknown resampling"):
        tile_input.read(1, resampling="fancy")
    assert tile_input.read(1, resampling="bilinear").shape == (260, 260)


def test_default_resampling_from_options(aligned):
    path, _, _ = aligned
    inp = RasterInput(config(path, resampling="cubic"), geodetic())
    assert inp.default_resampling is Resampling.cubic
    with pytest.raises(InputError, match="unknown resampling"):
        RasterInput(config(path, resampling="nope"), geodetic())


def test_is_empty_is_a_bounds_test(aligned, monkeypatch):
    path, _, _ = aligned
    grid = geodetic(pixelbuffer=2)
    inp = RasterInput(config(path), grid)
    assert not inp.for_tile(grid.tile(ZOOM, 40, 300)).is_empty()
    far = grid.tile(ZOOM, 200, 10)
    monkeypatch.setattr(inp._datasets, "get", no_warp)  # no pixel access for empty tiles
    assert inp.for_tile(far).is_empty()
    got = inp.for_tile(far).read(1)
    assert got.mask.all() and got.shape == (260, 260)
    # the source ends 300 px below row 40's top + 50 px: row 42 is only reached by the buffer
    src_bottom = inp.bounds.bottom
    tile = grid.tile_at(grid.tile(ZOOM, 40, 300).bounds.left + 1e-9, src_bottom - 1e-9, ZOOM)
    assert tile.buffered_bounds.top > src_bottom and not inp.for_tile(tile).is_empty()
    assert inp.for_tile(grid.tile(ZOOM, tile.row + 1, 300)).is_empty()


def test_open_errors_name_input_and_path(tmp_path):
    with pytest.raises(InputError, match=r"'dem'.*missing\.tif"):
        RasterInput(config(tmp_path / "missing.tif"), geodetic())
    junk = tmp_path / "junk.tif"
    junk.write_text("not a tiff")
    with pytest.raises(InputError, match="junk.tif"):
        RasterInput(config(junk), geodetic())


def test_open_input_dispatch(aligned, tmp_path):
    path, _, _ = aligned
    assert isinstance(open_input(config(path), geodetic()), RasterInput)
    with pytest.raises(InputError, match="cannot open .* as a vector file"):  # a GeoTIFF
        open_input(InputConfig(name="v", path=path, format="vector", options={}), geodetic())
    with pytest.raises(InputError, match="supported formats: raster, tiledir"):
        open_input(InputConfig(name="v", path=path, format="netcdf", options={}), geodetic())
    with pytest.raises(InputError, match="no metadata.json"):
        open_input(InputConfig(name="t", path=tmp_path, format="tiledir", options={}),
                   geodetic())


# -- bounds --------------------------------------------------------------------------------------
def test_bounds_polar_source_into_mercator_and_geodetic(tmp_path):
    path = tmp_path / "polar.tif"
    make_raster(path, Affine(30_000.0, 0, -3_000_000, 0, -30_000.0, 3_000_000), "EPSG:3031",
                (200, 200), nodata=-1)
    merc = Grid.from_name("mercator", pixelbuffer=2)
    inp = RasterInput(config(path), merc)
    world = merc.bounds()
    b = inp.bounds
    assert b is not None and all(np.isfinite(b))
    assert world.left <= b.left < b.right <= world.right and world.bottom <= b.bottom < b.top
    tile = merc.tile(3, 7, 2)
    got = inp.for_tile(tile).read(1)
    assert got.shape == tile.buffered_shape and not got.mask.all()
    geo = RasterInput(config(path), geodetic())
    assert geo.bounds == Bounds(-180.0, -90.0, 180.0, geo.bounds.top)
    assert -60 < geo.bounds.top < -45  # the corners lie ~4243 km from the pole
    assert not geo.for_tile(geodetic().tile(2, 3, 0)).read(1).mask.all()


# -- real data at the antimeridian and the poles --------------------------------------------------
@pytest.mark.parametrize("name", ["cleantopo_br", "cleantopo_tl"])
@pytest.mark.parametrize("metatiling, pixelbuffer", [(1, 0), (1, 8), (2, 16)])
def test_world_edges_geodetic(name, metatiling, pixelbuffer):
    grid = geodetic(pixelbuffer=pixelbuffer, metatiling=metatiling)
    inp = RasterInput(config(DATA / f"{name}.tif", name), grid)
    with rasterio.open(DATA / f"{name}.tif") as src:
        full = src.read(1)
        left, bottom, right, top = src.bounds
    for zoom in range(1, 5):
        tiles = list(grid.tiles_in_bounds(inp.bounds, zoom))
        assert tiles
        for tile in tiles:
            got = inp.for_tile(tile).read(1)
            assert got.shape == tile.buffered_shape and got.dtype == np.uint16
            if pixelbuffer:  # beyond lon +-180 / lat +-90 nothing is read (no wrapping)
                b, pb = tile.buffered_bounds, pixelbuffer
                if b.left < -180:
                    assert got.mask[:, :pb].all()
                if b.right > 180:
                    assert got.mask[:, -pb:].all()
                if b.top > 90:
                    assert got.mask[:pb].all()
                if b.bottom < -90:
                    assert got.mask[-pb:].all()
            valid = got.compressed()
            assert valid.size > 0 and valid.min() > 0  # nodata 0 is masked
            assert full[full > 0].min() <= valid.min() and valid.max() <= full.max()
            # never more valid pixels than the source footprint holds
            xres, yres = tile.resolution
            assert valid.size <= ((right - left) / xres + 2) * ((top - bottom) / yres + 2)


@pytest.mark.parametrize("name", ["cleantopo_br", "cleantopo_tl"])
def test_world_edges_mercator(name):
    grid = Grid.from_name("mercator", pixelbuffer=8)
    inp = RasterInput(config(DATA / f"{name}.tif", name), grid)
    world = grid.bounds()
    assert world.left <= inp.bounds.left and inp.bounds.right <= world.right
    seen = 0
    for zoom in range(1, 5):
        for tile in grid.tiles_in_bounds(inp.bounds, zoom):
            got = inp.for_tile(tile).read()
            assert got.shape == (1, *tile.buffered_shape)
            b = tile.buffered_bounds
            if b.left < world.left:
                assert got.mask[0, :, :8].all()
            if b.right > world.right:
                assert got.mask[0, :, -8:].all()
            seen += (~got.mask).sum()
    assert seen > 0


@pytest.mark.parametrize("grid", [geodetic(pixelbuffer=8), Grid.from_name("mercator", pixelbuffer=8)],
                         ids=["geodetic", "mercator"])
@pytest.mark.parametrize("name", ["cleantopo_br", "cleantopo_tl"])
def test_real_data_general_path_matches_reproject(grid, name):
    """Buffered tiles past the antimeridian: GDAL once dropped valid columns here."""
    path = DATA / f"{name}.tif"
    inp = RasterInput(config(path), grid)
    with rasterio.open(path) as src:
        data, transform, crs = src.read(1), src.transform, src.crs
    for tile in (t for z in (2, 3) for t in grid.tiles_in_bounds(inp.bounds, z)):
        got = inp.for_tile(tile).read(1)
        expected = np.zeros(tile.buffered_shape, dtype="uint16")
        reproject(data, expected, src_transform=transform, src_crs=crs, src_nodata=0,
                  dst_transform=tile.buffered_affine, dst_crs=grid.crs, dst_nodata=0)
        assert_masked_equal(got, np.ma.masked_equal(expected, 0))


# -- threads and pickling --------------------------------------------------------------------------
def test_threads_share_nothing_and_reuse_handles(aligned, monkeypatch):
    path, _, _ = aligned
    grid = geodetic(pixelbuffer=2)
    inp = RasterInput(config(path), grid)
    tiles = [grid.tile(ZOOM, r, c) for r in (40, 41) for c in (300, 301)]
    serial = {t.index: (inp.read(t), inp.read(t, method="warp")) for t in tiles}
    opens: list[int] = []
    real_open = rasterio.open

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        opens.append(threading.get_ident())
        return real_open(*args, **kwargs)

    monkeypatch.setattr(raster_mod.rasterio, "open", counting_open)
    barrier = threading.Barrier(4)

    def work(_: int) -> list[tuple[np.ma.MaskedArray, np.ma.MaskedArray]]:
        barrier.wait()
        return [(inp.read(t), inp.read(t, method="warp")) for t in tiles * 5]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    for result in results:
        for t, (fast, warped) in zip(tiles * 5, result):
            assert_masked_equal(fast, serial[t.index][0])
            assert_masked_equal(warped, serial[t.index][1])
    assert len(opens) == 4 and len(set(opens)) == 4  # once per thread, never per tile
    inp.close()


def test_pickling_drops_handles(aligned):
    path, _, _ = aligned
    grid = geodetic(pixelbuffer=2)
    inp = RasterInput(config(path), grid)
    tile = grid.tile(ZOOM, 40, 300)
    before = inp.read(tile)
    blob = pickle.dumps(inp)
    clone = pickle.loads(blob)
    assert len(clone._datasets._handles) == 0
    assert_masked_equal(clone.read(tile), before)
    assert clone.bounds == inp.bounds and clone.dtype == "int32" and clone.count == 2
    tile_input = pickle.loads(pickle.dumps(inp.for_tile(tile)))
    assert_masked_equal(tile_input.read(), before)
    clone.close()
    inp.close()
    assert_masked_equal(inp.read(tile), before)  # reopens lazily after close


def test_untransformable_source_does_not_crash(tmp_path, caplog):
    """An orthographic source reaching past the visible disk: no bounds, far-side tiles empty."""
    path = tmp_path / "ortho.tif"
    make_raster(path, Affine(70_000.0, 0, -7_000_000, 0, -70_000.0, 7_000_000),
                "+proj=ortho +lat_0=0 +lon_0=0 +datum=WGS84", (200, 200), nodata=-1)
    grid = geodetic(pixelbuffer=4)
    with caplog.at_level("WARNING", logger="ziggurat.io.inputs.raster"):
        inp = RasterInput(config(path), grid)
    assert inp.bounds == grid.bounds()
    assert "assuming the whole grid" in caplog.text
    far = inp.for_tile(grid.tile(2, 0, 0)).read(1)  # lon -180..-135: the far side
    assert far.mask.all()
    near = inp.for_tile(grid.tile(2, 1, 3)).read(1)  # lon -45..0, lat 0..45
    assert near.mask.sum() < near.size / 2 and near.min() >= 0
