"""TileDirectoryOutput (cutting, casting, atomic deterministic writes, metadata) and reading back."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject

import ziggurat
from ziggurat.core.errors import InputError, OutputError
from ziggurat.core.grid import Bounds, Grid, Tile, TileIndex
from ziggurat.io import TileDirectoryInput, TileDirectoryOutput, open_input, open_output
from ziggurat.recipe import InputConfig, OutputConfig

ZOOM = 5
NODATA = -999_999


def out_config(path: Path, *, dtype: str = "int32", bands: int = 1, nodata: Any = NODATA,
               compress: str = "deflate", metatiling: int = 1, **options: Any) -> OutputConfig:
    return OutputConfig(path=Path(path), format="GTiff", dtype=dtype, bands=bands, nodata=nodata,
                        compress=compress, metatiling=metatiling, options=options)


def in_config(path: Path, **options: Any) -> InputConfig:
    return InputConfig(name="pyramid", path=Path(path), format="tiledir", options=options)


def process_grid(metatiling: int = 2, pixelbuffer: int = 2) -> Grid:
    return Grid.from_name("geodetic", metatiling=metatiling, pixelbuffer=pixelbuffer)


def global_pixels(tile: Tile, buffered: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Global (row, col) pixel indices of a tile's pixels at its zoom."""
    xres, yres = tile.resolution
    world = tile.grid.bounds(tile.zoom)
    b = tile.buffered_bounds if buffered else tile.bounds
    h, w = tile.buffered_shape if buffered else tile.shape
    r0 = round((world.top - b.top) / yres)
    c0 = round((b.left - world.left) / xres)
    return np.mgrid[r0:r0 + h, c0:c0 + w]


def position_values(tile: Tile, buffered: bool = True) -> np.ndarray:
    """value = global_row * 20000 + global_col: a misplaced pixel is obvious."""
    rows, cols = global_pixels(tile, buffered)
    return (rows * 20000 + cols).astype("int32")


def tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


@pytest.fixture
def output(tmp_path: Path) -> TileDirectoryOutput:
    out = TileDirectoryOutput(out_config(tmp_path / "out"), process_grid())
    out.prepare(overwrite=False)
    return out


# -- cutting and writing --------------------------------------------------------------------------
def test_metatile_with_buffer_becomes_four_output_tiles(output):
    ptile = output.grid.tile(ZOOM, 4, 17)
    data = position_values(ptile)
    assert data.shape == (516, 516)
    written = output.write(ptile, data)
    tiles = output.output_tiles(ptile)
    assert [t.index for t in tiles] == written == [
        TileIndex(5, 8, 34), TileIndex(5, 8, 35), TileIndex(5, 9, 34), TileIndex(5, 9, 35)]
    assert output.exists(ptile)
    for tile in tiles:
        path = output.tile_path(tile)
        assert path == output.path / "5" / str(tile.row) / f"{tile.col}.tif"
        assert output.tile_path(tile.index) == path
        with rasterio.open(path) as src:
            assert src.shape == (256, 256) and src.count == 1 and src.dtypes[0] == "int32"
            assert src.nodata == NODATA
            assert src.transform.almost_equals(tile.affine)
            assert Bounds(*src.bounds) == pytest.approx(tile.bounds)
            np.testing.assert_array_equal(src.read(1), position_values(tile, buffered=False))
        back = output.read(tile)
        assert back.shape == (1, 256, 256) and not back.mask.any()


def test_unbuffered_and_3d_input_give_the_same_files(output, tmp_path):
    ptile = output.grid.tile(ZOOM, 4, 17)
    output.write(ptile, position_values(ptile))
    other = TileDirectoryOutput(out_config(tmp_path / "other"), process_grid())
    other.write(ptile, position_values(ptile, buffered=False)[np.newaxis])
    for tile in output.output_tiles(ptile):
        assert output.tile_path(tile).read_bytes() == other.tile_path(tile).read_bytes()


def test_empty_output_tiles_are_not_written(output):
    ptile = output.grid.tile(ZOOM, 4, 17)
    data = np.ma.masked_array(position_values(ptile), mask=False)
    data[2:258, 2:258] = np.ma.masked       # top-left output tile: all masked
    data[2:258, 258:514] = NODATA           # top-right: all nodata values
    data[258:300, 2:10] = np.ma.masked      # bottom-left: partly masked
    written = output.write(ptile, data)
    assert written == [TileIndex(5, 9, 34), TileIndex(5, 9, 35)]
    assert output.read(TileIndex(5, 8, 34)) is None and output.read(TileIndex(5, 8, 35)) is None
    assert not output.tile_path(TileIndex(5, 8, 34)).exists()
    assert not output.exists(ptile)
    back = output.read(TileIndex(5, 9, 34))[0]
    assert back.mask[:42, :8].all() and back.mask.sum() == 42 * 8
    with rasterio.open(output.tile_path(TileIndex(5, 9, 34))) as src:
        assert (src.read(1)[:42, :8] == NODATA).all()
    # nothing at all: nothing written, no folders needed
    assert output.write(output.grid.tile(ZOOM, 0, 0), np.ma.masked_all((516, 516), "int32")) == []
    assert not (output.path / "5" / "0").exists()


def test_float_nan_and_masked_become_nan_nodata(tmp_path):
    grid = process_grid(metatiling=1, pixelbuffer=0)
    out = TileDirectoryOutput(out_config(tmp_path, dtype="float32", nodata=float("nan")), grid)
    out.prepare(False)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["output"]["nodata"] == "nan"
    tile = grid.tile(ZOOM, 4, 17)
    data = np.ma.masked_array(np.arange(256 * 256, dtype="float64").reshape(256, 256), mask=False)
    data[0, :5] = np.nan
    data[1, :3] = np.ma.masked
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out.write(tile, data)
    back = out.read(tile)[0]
    assert back.mask[0, :5].all() and back.mask[1, :3].all() and back.mask.sum() == 8
    with rasterio.open(out.tile_path(tile)) as src:
        raw = src.read(1)
        assert math.isnan(src.nodata) and np.isnan(raw[0, :5]).all() and np.isnan(raw[1, :3]).all()
        assert raw[2, 0] == 512.0


@pytest.mark.parametrize("src_dtype, values, dtype, expected, notes", [
    ("float64", [-5.7, 300.2, 12.5, 12.51, -np.inf, np.nan], "uint8", [0, 255, 12, 13, 0, 100],
     (("clipped", 3),)),  # rounded to nearest (half to even), not truncated; NaN is nodata
    ("int64", [-40000, 40000, 7, 2**40, -(2**40), 100], "int16",
     [-32768, 32767, 7, 32767, -32768, 100], (("clipped", 4), ("nodata", 1))),
    ("uint16", [0, 65535, 127, 128, 1, 100], "int8", [0, 127, 127, 127, 1, 100], (("clipped", 2), ("nodata", 1))),
    ("float64", [1e300, -1e300, 0.5, 2.0, 3.0, np.nan], "float32",
     [np.inf, -np.inf, 0.5, 2.0, 3.0, 100], (("clipped", 2),)),
])
def test_casting_rounds_clips_and_counts(tmp_path, src_dtype, values, dtype, expected, notes):
    """No numpy warning per tile; what the cast changed is counted for one warning per run."""
    grid = process_grid(metatiling=1, pixelbuffer=0)
    out = TileDirectoryOutput(out_config(tmp_path, dtype=dtype, nodata=100), grid)
    tile = grid.tile(ZOOM, 4, 17)
    data = np.ones((256, 256), dtype=src_dtype)
    data[0, :6] = np.array(values).astype(src_dtype) if src_dtype != "float64" else values
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out.write(tile, data)
    with rasterio.open(out.tile_path(tile)) as src:
        raw = src.read(1)
        assert raw.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(raw[0, :6], np.array(expected, dtype=dtype))
    assert out.take_notes() == notes and out.take_notes() == ()


def test_wrong_shapes_and_band_counts_are_clear_errors(output):
    ptile = output.grid.tile(ZOOM, 4, 17)
    with pytest.raises(OutputError, match=r"\(zoom 5, row 4, col 17\).*\(500, 516\).*\(516, 516\)"
                       r".*\(512, 512\)"):
        output.write(ptile, np.zeros((500, 516), "int32"))
    with pytest.raises(OutputError, match="1 band.*data has 3"):
        output.write(ptile, np.zeros((3, 516, 516), "int32"))
    with pytest.raises(OutputError, match="2D or 3D"):
        output.write(ptile, np.zeros((1, 1, 516, 516), "int32"))
    assert not list(output.path.rglob("*.tif"))


def test_multiband_output(tmp_path):
    grid = process_grid(metatiling=1, pixelbuffer=4)
    out = TileDirectoryOutput(out_config(tmp_path, dtype="uint8", bands=3, nodata=0), grid)
    tile = grid.tile(ZOOM, 4, 17)
    data = np.ma.masked_array(np.stack([np.full((264, 264), v, "uint8") for v in (1, 2, 3)]),
                              mask=False)
    data[1, 4:10, 4:10] = np.ma.masked
    out.write(tile, data)
    back = out.read(tile)
    assert back.shape == (3, 256, 256)
    assert back.mask[1, :6, :6].all() and not back.mask[0].any() and back[2].min() == 3


# -- atomic, deterministic, GeoTIFF profile --------------------------------------------------------
def test_writes_leave_no_temporary_files(output):
    for row, col in ((4, 17), (4, 18)):
        ptile = output.grid.tile(ZOOM, row, col)
        output.write(ptile, position_values(ptile))
    assert tmp_files(output.path) == []
    assert len(list(output.path.rglob("*.tif"))) == 8


def test_failed_write_removes_temporary_file_and_keeps_old_tile(output, monkeypatch):
    import ziggurat.io.outputs.folder as folder_module

    ptile = output.grid.tile(ZOOM, 4, 17)
    output.write(ptile, position_values(ptile))
    target = output.tile_path(output.output_tiles(ptile)[0])
    before = target.read_bytes()
    seen: list[Path] = []

    def half_write(path: Path, data: bytes) -> None:
        """Writes half the bytes of the encoded tile, then the disk fails (a full disk, say)."""
        seen.append(Path(path))
        Path(path).write_bytes(data[: len(data) // 2])
        raise OSError(28, "disk on fire")

    monkeypatch.setattr(folder_module, "write_all", half_write)
    with pytest.raises(OutputError, match=r"cannot write .*disk on fire"):
        output.write(ptile, np.zeros((516, 516), "int32"))
    assert seen and seen[0].name.startswith(f"{os.getpid()}-") and seen[0].suffix == ".tif"
    assert seen[0].parent == output.path / ".ziggurat" / "tmp"  # same file system, swept by runs
    assert list(seen[0].parent.iterdir()) == []
    assert tmp_files(output.path) == []
    assert target.read_bytes() == before


def test_write_all_raises_rather_than_leave_a_short_file(tmp_path, monkeypatch):
    from ziggurat.io.storage.atomic import write_all

    path = tmp_path / "t.bin"
    write_all(path, b"x" * 1000)
    assert path.read_bytes() == b"x" * 1000
    monkeypatch.setattr(os.path, "getsize", lambda p: 10)   # as if the file system kept only 10 bytes
    with pytest.raises(OSError, match="wrote 1000 of 1000 bytes|of 1000 bytes"):
        write_all(path, b"x" * 1000)


def test_bytes_are_deterministic(tmp_path):
    grid = process_grid()
    ptile = grid.tile(ZOOM, 4, 17)
    data = position_values(ptile)
    paths = []
    for name in ("a", "b"):
        out = TileDirectoryOutput(out_config(tmp_path / name), grid)
        out.write(ptile, data)
        paths.append(out.tile_path(TileIndex(5, 8, 34)))
    first = paths[0].read_bytes()
    assert first == paths[1].read_bytes()
    out.write(ptile, data)  # rewrite in place
    assert paths[1].read_bytes() == first


def image_structure(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    with rasterio.open(path) as src:
        return src.profile, src.tags(ns="IMAGE_STRUCTURE")


def test_geotiff_profile(tmp_path):
    grid = process_grid(metatiling=2, pixelbuffer=0)
    ptile = grid.tile(ZOOM, 4, 17)
    cases = [
        (dict(dtype="int32"), "DEFLATE", "2", 256),
        (dict(dtype="float32", compress="lzw"), "LZW", "3", 256),
        (dict(dtype="int32", compress="none"), None, None, 256),
        (dict(dtype="int32", metatiling=2), "DEFLATE", "2", 512),
        (dict(dtype="int32", compress="ZSTD"), "ZSTD", "2", 256),
        (dict(dtype="int32", creation_options={"predictor": 1, "blockxsize": 128,
                                               "blockysize": 128}), "DEFLATE", None, 128),
    ]
    for i, (kwargs, compress, predictor, block) in enumerate(cases):
        out = TileDirectoryOutput(out_config(tmp_path / str(i), **kwargs), grid)
        out.write(ptile, np.ones((512, 512), kwargs["dtype"]))
        tile = out.output_tiles(ptile)[0]
        profile, tags = image_structure(out.tile_path(tile))
        assert tags.get("COMPRESSION") == compress, kwargs
        assert tags.get("PREDICTOR") == predictor, kwargs
        # (rasterio's profile calls a single 256 x 256 block "not tiled"; a strip would be short)
        assert profile["blockxsize"] == block == profile["blockysize"]
        assert profile["width"] == (512 if kwargs.get("metatiling") == 2 else 256)


def test_tile_sizes_not_multiple_of_16_are_striped(tmp_path):
    grid = Grid.from_name("geodetic", tile_size=100)
    out = TileDirectoryOutput(out_config(tmp_path), grid)
    tile = grid.tile(3, 1, 2)
    out.write(tile, np.ones((100, 100), "int32"))
    profile, _ = image_structure(out.tile_path(tile))
    assert profile["width"] == 100 and profile["blockysize"] < 100  # strips


# -- metadata and configuration --------------------------------------------------------------------
def test_metadata_json_is_written_and_validated(tmp_path):
    grid = process_grid()
    out = TileDirectoryOutput(out_config(tmp_path / "o"), grid)
    out.prepare(False)
    meta = json.loads((tmp_path / "o" / "metadata.json").read_text())
    settings = {"format": "GTiff", "dtype": "int32", "bands": 1, "nodata": NODATA, "compress": "deflate"}
    mapchete_keys = {"driver": meta.pop("driver"), "pyramid": meta.pop("pyramid")}
    assert meta == {
        "ziggurat": {"version": ziggurat.__version__},
        "grid": grid.with_options(metatiling=1, pixelbuffer=0).to_dict(),
        "process_grid": grid.to_dict(),
        "output": settings,
    }
    # what mapchete's TileDirectory reader needs (see test_mapchete_compat for mapchete reading it)
    assert mapchete_keys["driver"] == settings
    assert mapchete_keys["pyramid"]["grid"]["grid"] == "geodetic" and mapchete_keys["pyramid"]["metatiling"] == 1
    assert tmp_files(tmp_path) == []
    ptile = grid.tile(ZOOM, 4, 17)
    out.write(ptile, position_values(ptile))
    # same output settings (another process grid is fine): accepted as is
    TileDirectoryOutput(out_config(tmp_path / "o", compress="lzw"),
                        process_grid(metatiling=4, pixelbuffer=0)).prepare(False)
    with pytest.raises(OutputError, match=r"dtype: 'int32' on disk, 'uint8' now"):
        TileDirectoryOutput(out_config(tmp_path / "o", dtype="uint8", nodata=0), grid).prepare(False)
    with pytest.raises(OutputError, match="bands: 1 on disk, 3 now"):
        TileDirectoryOutput(out_config(tmp_path / "o", bands=3), grid).prepare(False)
    with pytest.raises(OutputError, match="grid"):
        TileDirectoryOutput(out_config(tmp_path / "o", metatiling=2), grid).prepare(False)
    with pytest.raises(OutputError, match="grid"):
        TileDirectoryOutput(out_config(tmp_path / "o"),
                            Grid.from_name("mercator", metatiling=2)).prepare(False)
    # tiles of two settings never mix: a narrowed --overwrite is refused, nothing is touched ...
    with pytest.raises(OutputError, match="whole recipe"):
        TileDirectoryOutput(out_config(tmp_path / "o", dtype="uint8", nodata=0), grid).prepare(True, narrowed=True)
    assert len(list((tmp_path / "o").rglob("*.tif"))) == 4
    # ... one over the whole recipe replaces metadata.json and removes the earlier tiles
    assert TileDirectoryOutput(out_config(tmp_path / "o", dtype="uint8", nodata=0), grid).prepare(True)
    meta = json.loads((tmp_path / "o" / "metadata.json").read_text())
    assert meta["output"]["dtype"] == "uint8"
    assert len(list((tmp_path / "o").rglob("*.tif"))) == 0
    (tmp_path / "o" / "metadata.json").write_text("{not json")
    with pytest.raises(OutputError, match="other settings"):
        out.prepare(False)
    out.prepare(True)
    assert json.loads((tmp_path / "o" / "metadata.json").read_text())["output"]["dtype"] == "int32"


def test_output_metatiling_and_config_errors(tmp_path):
    grid = process_grid(metatiling=4, pixelbuffer=0)
    out = TileDirectoryOutput(out_config(tmp_path, metatiling=2), grid)
    ptile = grid.tile(ZOOM, 2, 8)
    tiles = out.output_tiles(ptile)
    assert [t.index for t in tiles] == [TileIndex(5, r, c) for r in (4, 5) for c in (16, 17)]
    assert all(t.shape == (512, 512) for t in tiles)
    assert out.write(ptile, position_values(ptile)) == [t.index for t in tiles]
    with pytest.raises(OutputError, match="does not divide"):
        TileDirectoryOutput(out_config(tmp_path, metatiling=4), process_grid(metatiling=2))
    with pytest.raises(OutputError, match="does not fit dtype uint8"):
        TileDirectoryOutput(out_config(tmp_path, dtype="uint8", nodata=-1), grid)
    with pytest.raises(OutputError, match="unknown dtype"):
        TileDirectoryOutput(out_config(tmp_path, dtype="int33"), grid)


def test_open_output_dispatch(tmp_path):
    assert isinstance(open_output(out_config(tmp_path), process_grid()), TileDirectoryOutput)
    with pytest.raises(OutputError, match="supported formats: GTiff"):
        open_output(dataclasses.replace(out_config(tmp_path), format="JPEG"),
                    process_grid())


# -- reading a tile directory back ------------------------------------------------------------------
BLOCK = [(4, 17), (4, 18), (5, 17), (5, 18)]  # process tiles: lon 11.25..33.75, lat 22.5..45


@pytest.fixture
def pyramid(tmp_path: Path) -> Path:
    out = TileDirectoryOutput(out_config(tmp_path / "pyr"), process_grid())
    out.prepare(False)
    for row, col in BLOCK:
        ptile = out.grid.tile(ZOOM, row, col)
        out.write(ptile, position_values(ptile))
    return out.path


def test_read_back_same_grid_is_exact(pyramid):
    grid = Grid.from_name("geodetic", pixelbuffer=3)
    inp = open_input(in_config(pyramid), grid)
    assert isinstance(inp, TileDirectoryInput)
    assert inp.bounds == Bounds(11.25, 22.5, 33.75, 45.0)
    assert inp.zooms == [ZOOM] and inp.count == 1 and inp.dtype == "int32"
    for row in range(7, 13):
        for col in range(33, 39):
            tile = grid.tile(ZOOM, row, col)
            got = inp.for_tile(tile).read(1)
            rows, cols = global_pixels(tile)
            inside = (rows >= 8 * 256) & (rows < 12 * 256) & (cols >= 34 * 256) & (cols < 38 * 256)
            assert inp.for_tile(tile).is_empty() == (not inside.any())
            np.testing.assert_array_equal(got.mask, ~inside)
            np.testing.assert_array_equal(got.data[inside], position_values(tile)[inside])


def test_read_back_with_metatiling_and_missing_tiles(pyramid):
    grid = Grid.from_name("geodetic", metatiling=4, pixelbuffer=5)
    inp = TileDirectoryInput(in_config(pyramid), grid)
    (pyramid / "5" / "9" / "35.tif").unlink()
    tile = grid.tile(ZOOM, 2, 8)  # rows 8..11, cols 32..35
    got = inp.for_tile(tile).read([1])
    assert got.shape == (1, 1034, 1034)
    rows, cols = global_pixels(tile)
    inside = (rows >= 8 * 256) & (rows < 12 * 256) & (cols >= 34 * 256) & (cols < 38 * 256)
    missing = (rows // 256 == 9) & (cols // 256 == 35)
    np.testing.assert_array_equal(got.mask[0], ~inside | missing)
    valid = inside & ~missing
    np.testing.assert_array_equal(got.data[0][valid], position_values(tile)[valid])


def mosaic_reprojected(pyramid: Path, tile: Tile, resampling: Resampling) -> np.ma.MaskedArray:
    """Independent expectation: the whole written area as one array, reprojected with GDAL."""
    geo = Grid.from_name("geodetic")
    rows, cols = np.mgrid[8 * 256:12 * 256, 34 * 256:38 * 256]
    mosaic = (rows * 20000 + cols).astype("int32")
    xres, yres = geo.resolution(ZOOM)
    affine = Affine(xres, 0, -180 + 34 * 256 * xres, 0, -yres, 90 - 8 * 256 * yres)
    dest = np.full(tile.buffered_shape, NODATA, "int32")
    reproject(mosaic, dest, src_transform=affine, src_crs=geo.crs, src_nodata=NODATA,
              dst_transform=tile.buffered_affine, dst_crs=tile.crs, dst_nodata=NODATA,
              resampling=resampling)
    return np.ma.masked_equal(dest, NODATA)


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_read_back_into_mercator(pyramid, resampling):
    merc = Grid.from_name("mercator", pixelbuffer=4)
    inp = TileDirectoryInput(in_config(pyramid, resampling=resampling), merc)
    b = inp.bounds
    assert b.left == pytest.approx(1252344.27, abs=1) and b.top == pytest.approx(5621521.49, abs=1)
    tiles = list(merc.tiles_in_bounds(inp.bounds, 5))
    assert len(tiles) >= 4
    interior = 0
    for tile in tiles:
        got = inp.for_tile(tile).read(1)
        expected = mosaic_reprojected(pyramid, tile, Resampling[resampling])
        both = ~got.mask & ~expected.mask
        # footprints agree up to a pixel at the edge; values agree where both have data
        assert abs(int(got.mask.sum()) - int(expected.mask.sum())) <= 2 * sum(got.shape)
        diff = np.abs(got.data[both].astype("int64") - expected.data[both])
        if resampling == "nearest":
            assert (diff == 0).mean() > 0.999
        else:  # GDAL's approximate transformer: up to ~0.125 px, i.e. 2500 across rows
            assert np.quantile(diff, 0.99) <= 5000
        interior += both.sum()
    assert interior > 100_000


def test_zoom_selection(tmp_path):
    grid = process_grid(metatiling=1, pixelbuffer=0)
    out = TileDirectoryOutput(out_config(tmp_path / "z"), grid)
    out.prepare(False)
    for zoom in (3, 4, 5):
        for tile in grid.tiles_in_bounds(Bounds(11.25, 22.5, 33.75, 45.0), zoom):
            out.write(tile, np.full(tile.shape, zoom * 10, "int32"))
    geo = Grid.from_name("geodetic", pixelbuffer=1)
    inp = TileDirectoryInput(in_config(out.path), geo)
    assert inp.zooms == [3, 4, 5]
    point = (20.0, 30.0)
    for zoom, expected in ((2, 30), (3, 30), (4, 40), (5, 50), (7, 50)):
        got = inp.for_tile(geo.tile_at(*point, zoom)).read(1)
        assert set(got.compressed().tolist()) == {expected}, zoom
    merc = Grid.from_name("mercator")
    minp = TileDirectoryInput(in_config(out.path), merc)
    x, y = 2226389.8, 3503549.8  # lon 20, lat 30
    # mercator z4 ~0.088 deg in x, ~0.076 in y at lat 30: geodetic z3 (0.088) is too coarse
    got = minp.for_tile(merc.tile_at(x, y, 4)).read(1)
    assert set(got.compressed().tolist()) == {40}
    got = minp.for_tile(merc.tile_at(x, y, 3)).read(1)
    assert set(got.compressed().tolist()) == {30}


def test_nodata_none_and_pickling(tmp_path):
    grid = process_grid(metatiling=1, pixelbuffer=0)
    out = TileDirectoryOutput(out_config(tmp_path / "n", dtype="uint8", bands=2, nodata=None), grid)
    out.prepare(False)
    tile = grid.tile(ZOOM, 8, 34)
    data = np.ma.masked_array(np.full((2, 256, 256), 7, "uint8"), mask=False)
    data[:, :10] = np.ma.masked
    out.write(tile, data)
    with rasterio.open(out.tile_path(tile)) as src:
        assert src.nodata is None and (src.read()[:, :10] == 0).all()
    inp = TileDirectoryInput(in_config(out.path), Grid.from_name("geodetic", pixelbuffer=2))
    got = pickle.loads(pickle.dumps(inp)).for_tile(inp.grid.tile(ZOOM, 8, 34)).read()
    assert got.shape == (2, 260, 260) and got.compressed().min() == 0  # no mask on disk
    minp = TileDirectoryInput(in_config(out.path), Grid.from_name("mercator"))
    mtile = minp.grid.tile_at(1558472.9, 5160979.4, 5)  # lon 14, lat 42
    got = minp.for_tile(mtile).read(2)
    assert got.mask.any() and not got.mask.all() and set(got.compressed().tolist()) <= {0, 7}


def test_tiledir_input_errors(tmp_path):
    with pytest.raises(InputError, match="no metadata.json"):
        TileDirectoryInput(in_config(tmp_path), process_grid())
    (tmp_path / "metadata.json").write_text('{"grid": 1}')
    with pytest.raises(InputError, match="invalid .*metadata.json"):
        TileDirectoryInput(in_config(tmp_path), process_grid())
    out = TileDirectoryOutput(out_config(tmp_path / "empty"), process_grid())
    out.prepare(False)
    inp = TileDirectoryInput(in_config(out.path), process_grid())
    tile = process_grid().tile(ZOOM, 4, 17)
    assert inp.bounds is None and inp.for_tile(tile).is_empty()
    assert inp.for_tile(tile).read(1).mask.all()
    with pytest.raises(InputError, match="out of range"):
        inp.for_tile(tile).read(2)
