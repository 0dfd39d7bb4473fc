"""The compiled kernels: equal to gdaldem (terrain), scipy.ndimage (focal) and numpy (the numpy
versions they replaced, and the composite's nan-reductions), cached on disk for every worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from kernel_refs import hillshade_numpy
from ziggurat.engine.run import execute
from ziggurat.kernels import aspect, best, focal, gapfill, hillshade, median, quantile, slope, window_offsets

from conftest import SAMPLE_DEM

GDALDEM = shutil.which("gdaldem")
needs_gdaldem = pytest.mark.skipif(GDALDEM is None, reason="gdaldem not installed (apt-get install gdal-bin)")


def terrain(h: int = 90, w: int = 110, seed: int = 1) -> np.ma.MaskedArray:
    """Hills with noise, a masked block and a NaN: every branch of the window test."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:h, 0:w]
    dem = (300 * np.sin(cols / 9) * np.cos(rows / 7) + rng.normal(0, 20, rows.shape) + 400).astype(np.float32)
    dem[40, 50] = np.nan
    mask = np.zeros((h, w), dtype=bool)
    mask[10:14, 20:25] = True
    return np.ma.masked_array(dem, mask)


@pytest.mark.parametrize("options", [{}, {"scale": 111120.0}, {"latitudes": np.linspace(61.0, 60.9, 90)},
                                     {"z": 3.0, "azimuth": 100.0, "altitude": 30.0}])
def test_hillshade_equals_the_numpy_version_bit_for_bit(options):
    dem = terrain()
    ours, ref = hillshade(dem, 0.001, -0.001, **options), hillshade_numpy(dem, 0.001, -0.001, **options)
    assert (ours.mask == ref.mask).all() and ours.mask.sum() > 2 * 90 + 2 * 110   # edges, block, NaN
    assert np.array_equal(ours.filled(0), ref.filled(0))
    ints = np.ma.masked_array(np.nan_to_num(dem.filled(0)).astype(np.int16), dem.mask | np.isnan(dem.data))
    assert np.array_equal(hillshade(ints, 30, -30).filled(0), hillshade_numpy(ints, 30, -30).filled(0))


def gdaldem(tmp_path: Path, mode: str, dem: np.ma.MaskedArray, *args: str, res: tuple[float, float] = (30.0, -20.0)
            ) -> np.ma.MaskedArray:
    src, dst = tmp_path / f"dem-{mode}.tif", tmp_path / f"{mode}.tif"
    profile = dict(driver="GTiff", dtype="float32", width=dem.shape[1], height=dem.shape[0], count=1,
                   crs="EPSG:32633", transform=Affine(res[0], 0, 500000, 0, res[1], 4000000), nodata=-9999.0)
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(np.ma.masked_invalid(dem).filled(-9999.0).astype("float32"), 1)   # NaN: nodata too
    assert GDALDEM is not None
    subprocess.run([GDALDEM, mode, str(src), str(dst), "-q", *args], check=True)
    with rasterio.open(dst) as ds:
        return ds.read(1, masked=True)


def close_in_all_but_a_few(ours: np.ma.MaskedArray, ref: np.ma.MaskedArray, tolerance: float) -> None:
    """Same masks; values within `tolerance` in all but 0.01 % of the pixels (none here)."""
    assert (ours.mask == ref.mask).all()
    diff = np.abs(ours.filled(0).astype(np.float64) - ref.filled(0).astype(np.float64))
    assert (diff > tolerance).sum() <= 0.0001 * diff.size


@needs_gdaldem
@pytest.mark.parametrize("percent", [False, True])
def test_slope_equals_gdaldem(tmp_path, percent):
    dem = terrain()
    ref = gdaldem(tmp_path, "slope", dem, *(["-p"] if percent else []))
    close_in_all_but_a_few(slope(dem, 30.0, -20.0, percent=percent), ref, 0.01)
    scaled = gdaldem(tmp_path, "slope", dem, "-s", "111120", res=(1 / 1200, -1 / 1200))
    close_in_all_but_a_few(slope(dem, 1 / 1200, -1 / 1200, scale=111120), scaled, 0.01)


@needs_gdaldem
@pytest.mark.parametrize("args,options", [((), {}), (("-trigonometric",), {"trigonometric": True}),
                                          (("-zero_for_flat",), {"zero_for_flat": True})])
def test_aspect_equals_gdaldem_with_its_options(tmp_path, args, options):
    dem = terrain()
    dem[60:70, 60:75] = 100.0   # a flat: nodata, or 0 with -zero_for_flat
    ref = gdaldem(tmp_path, "aspect", dem, *args)
    ours = aspect(dem, **options)
    if options.get("zero_for_flat"):   # gdaldem then writes 0 for nodata too, and declares none
        assert (ref.data[ours.mask] == 0).all()
        ref = np.ma.masked_array(ref.data, mask=ours.mask)
    close_in_all_but_a_few(ours, ref, 0.01)
    flat = ours[62:68, 62:73]
    assert flat.mask.all() if not options.get("zero_for_flat") else (flat == 0).all()


@needs_gdaldem
def test_terrain_on_the_real_dem_equals_gdaldem_with_its_scale(tmp_path):
    """srtm_dallas.tif (int16 metres in degrees): hillshade within 1 DN, slope and aspect within 0.01 degree."""
    with rasterio.open(SAMPLE_DEM) as src:
        dem = src.read(1, masked=True)
        res = (src.transform.a, src.transform.e)
    for mode, ours, tolerance in (("hillshade", hillshade(dem, *res, scale=111120), 1),
                                  ("slope", slope(dem, *res, scale=111120), 0.01),
                                  ("aspect", aspect(dem), 0.01)):
        dst = tmp_path / f"{mode}.tif"
        subprocess.run([GDALDEM, mode, str(SAMPLE_DEM), str(dst), "-q", "-s", "111120"], check=True)
        with rasterio.open(dst) as ds:
            ref = ds.read(1, masked=True)
        if mode == "hillshade":   # gdaldem writes 0 for nodata without declaring it
            ref = np.ma.masked_equal(ref, 0)
        close_in_all_but_a_few(ours, ref, tolerance)


def test_slope_uses_each_rows_latitude_on_a_geographic_grid():
    rows = np.arange(5, dtype=np.float64)[:, None] * np.ones((1, 5))
    metres_per_degree = 6371008.8 * np.pi / 180
    dem = np.ma.masked_array(rows * metres_per_degree / 1200 * -1)   # 1 m per metre southwards: 45 degrees
    out = slope(dem, 1 / 1200, -1 / 1200, latitudes=np.full(5, 60.0))
    assert np.allclose(out[1:-1, 1:-1], 45.0, atol=1e-4)


@pytest.mark.parametrize("shape", ["square", "circle"])
@pytest.mark.parametrize("statistic,reference", [("mean", np.mean), ("min", np.min), ("max", np.max),
                                                 ("std", np.std), ("sum", np.sum), ("median", np.median)])
def test_focal_equals_scipy_ndimage(statistic, reference, shape):
    ndimage = pytest.importorskip("scipy.ndimage")
    data = np.random.default_rng(3).normal(50, 10, (40, 50))
    radius = 3
    offsets = window_offsets(radius, shape)
    footprint = np.zeros((2 * radius + 1,) * 2, dtype=bool)
    footprint[offsets[:, 0] + radius, offsets[:, 1] + radius] = True
    assert footprint.sum() == (49 if shape == "square" else 29)
    ref = ndimage.generic_filter(data, reference, footprint=footprint, mode="constant")
    got = focal(data, statistic, radius, shape)
    inner = (slice(radius, -radius), slice(radius, -radius))
    assert not got.mask[inner].any() and got.mask.sum() == data.size - got.mask[inner].size
    np.testing.assert_allclose(got.data[inner], ref[inner], rtol=1e-6, atol=1e-4)


def test_focal_leaves_nodata_out_and_masks_empty_windows():
    data = np.ma.masked_array(np.arange(49, dtype=np.float32).reshape(7, 7), mask=False)
    data[2:5, 2:5] = np.ma.masked
    data[1, 1] = np.nan
    got = focal(data, "mean", 1)
    assert got.mask[3, 3]   # nothing valid around the centre of the masked block
    assert got[2, 2] == pytest.approx(np.mean([9, 10, 15, 22]))   # (1, 1) NaN, the block masked
    assert got[1, 2] == pytest.approx(np.mean([1, 2, 3, 9, 10, 15]))
    assert focal(data, "max", 1)[1, 2] == 15 and focal(data, "median", 1)[2, 2] == 12.5
    with pytest.raises(ValueError, match="statistic must be one of"):
        focal(data, "mode", 1)
    with pytest.raises(ValueError, match="radius must be"):
        focal(data, "mean", 0)


def scenes(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(1000, 300, (17, 3, 30, 40)).astype(np.float32)
    obs[:, :, ::7] = np.round(obs[:, :, ::7], -2)   # ties
    valid = rng.random((17, 30, 40)) > 0.4
    valid[:, 0, 0] = False   # no valid observation
    valid[:, 0, 1] = False
    valid[3, 0, 1] = True    # exactly one
    return obs, valid


def test_temporal_reductions_equal_numpy_bit_for_bit():
    obs, valid = scenes()
    masked = np.where(valid[:, None], obs, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.array_equal(median(obs, valid), np.nanmedian(masked, axis=0), equal_nan=True)
        for q in (0.0, 0.1, 0.25, 1 / 3, 0.5, 0.75, 0.9, 1.0):
            assert np.array_equal(quantile(obs, valid, q), np.nanquantile(masked, q, axis=0), equal_nan=True), q
    score = (obs[:, 1] - obs[:, 0]) / (obs[:, 1] + obs[:, 0])
    s = np.where(valid, score, -np.inf)
    pick = np.argmax(np.where(np.isnan(s), -np.inf, s), axis=0)
    assert np.array_equal(best(obs, valid, score), np.take_along_axis(obs, pick[None, None], axis=0)[0])
    with pytest.raises(ValueError, match="q must be in 0..1"):
        quantile(obs, valid, 1.5)


def test_gapfill_interpolates_within_max_gap_and_never_extrapolates():
    times = np.array([0.0, 10.0, 20.0, 30.0, 70.0, 80.0])
    series = np.array([np.nan, 1.0, np.nan, 4.0, np.nan, 9.0], dtype=np.float32)
    values = np.broadcast_to(series[:, None, None, None], (6, 2, 3, 4)).copy()
    linear = gapfill(values, times, max_gap=25.0)[:, 0, 1, 2]
    # step 2 lies between 10 and 30 (20 apart): 1 + 3 * 0.5; step 4 between 30 and 80 (50 > 25)
    np.testing.assert_array_equal(linear, np.array([np.nan, 1.0, 2.5, 4.0, np.nan, 9.0], dtype=np.float32))
    assert np.isnan(gapfill(values, times, max_gap=19.0)[2]).all()
    np.testing.assert_allclose(gapfill(values, times)[4, 0, 0, 0], 4 + 5 * 40 / 50)
    nearest = gapfill(values, times, max_gap=10.0, method="nearest")[:, 1, 2, 3]
    np.testing.assert_array_equal(nearest, np.array([1, 1, 1, 4, 9, 9], dtype=np.float32))   # ties: the earlier
    assert np.isnan(gapfill(values, times, max_gap=9.0, method="nearest")[[0, 2, 4]]).all()


def test_kernels_are_compiled_once_and_then_loaded_from_the_disk_cache(tmp_path):
    code = textwrap.dedent("""\
        import numpy as np
        from ziggurat.kernels import _terrain, terrain
        terrain.hillshade(np.zeros((4, 4), np.float32), 1.0, -1.0)
        stats = _terrain._hillshade.stats
        print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
        """)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    first, second = ([int(n) for n in run.stdout.split()] for run in runs)
    assert first == [0, 1] and list((tmp_path / "numba").rglob("*.nbi"))   # compiled, written to disk
    assert second == [1, 0]   # the second process loaded it


def _recipe(tmp_path: Path, process: str, params: str, buffer: int = 1) -> Path:
    recipe = tmp_path / f"{process}.yaml"
    name = "raster" if process == "focal" else "dem"
    recipe.write_text(textwrap.dedent(f"""\
        process: {process}
        zoom_levels: [1, 1]   # the DEM's own pixels: the native grid's finest zoom
        pyramid: {{grid: {{like: {name}}}, pixelbuffer: {buffer}, metatiling: 2}}
        input: {{{name}: {SAMPLE_DEM}}}
        output: {{path: {process}.tif, dtype: float32, nodata: -9999}}
        process_parameters: {{{params}}}
        """))
    return recipe


@needs_gdaldem
@pytest.mark.parametrize("process,params,args", [("slope", "scale: 111120", ("-s", "111120")),
                                                 ("aspect", "zero_for_flat: true", ("-zero_for_flat",))])
def test_the_slope_and_aspect_processes_equal_gdaldem_on_the_dems_native_grid(tmp_path, process, params, args):
    recipe = _recipe(tmp_path, process, params + ", resampling: nearest")
    assert execute(recipe, executor="sequential").ok
    ref_path = tmp_path / f"{process}-gdaldem.tif"
    subprocess.run([GDALDEM, process, str(SAMPLE_DEM), str(ref_path), "-q", *args], check=True)
    with rasterio.open(tmp_path / f"{process}.tif") as ours_ds, rasterio.open(ref_path) as ref_ds:
        assert ours_ds.transform.almost_equals(ref_ds.transform) and ours_ds.shape == ref_ds.shape
        ours, ref = ours_ds.read(1, masked=True), ref_ds.read(1, masked=True)
    if process == "aspect":   # -zero_for_flat: gdaldem writes 0 for nodata too, and declares none
        assert (ref.data[ours.mask] == 0).all()
        ref = np.ma.masked_array(ref.data, mask=ours.mask)
    close_in_all_but_a_few(ours, ref, 0.01)


def test_a_buffer_smaller_than_the_process_declares_is_refused_before_any_tile(tmp_path):
    """Processes declare the buffer their windows need (`pixelbuffer`); hillshade with
    `pixelbuffer: 0` used to write nodata seams at every tile edge and exit 0."""
    from ziggurat.core.errors import RecipeError

    recipe = _recipe(tmp_path, "focal", "statistic: median, radius: 2")
    with pytest.raises(RecipeError, match=r"pyramid.pixelbuffer: process 'focal' needs a pixel buffer of at least 2 "
                                          r".*found 1"):
        execute(recipe, executor="sequential")
    assert not (tmp_path / "focal.tif").exists()
    for process in ("hillshade", "slope", "aspect"):
        with pytest.raises(RecipeError, match=f"process '{process}' needs a pixel buffer of at least 1"):
            execute(_recipe(tmp_path, process, "", buffer=0), executor="sequential")
    ok = _recipe(tmp_path, "focal", "statistic: median, radius: 2", buffer=2)
    assert execute(ok, executor="sequential", overwrite=True).ok
    with rasterio.open(tmp_path / "focal.tif") as ds, rasterio.open(SAMPLE_DEM) as src:
        dem = src.read(1, masked=True)
        ref = focal(dem, "median", 2)
        got = ds.read(1, masked=True)
    assert (got.mask[2:-2, 2:-2] == ref.mask[2:-2, 2:-2]).all()
    assert np.array_equal(got[2:-2, 2:-2].filled(0), ref[2:-2, 2:-2].filled(0))


def test_loading_a_process_that_uses_kernels_does_not_import_numba():
    """The parent of a pool run loads the process module (to check its signature) but never calls
    its kernels: numba (a quarter of a second) is imported on a kernel's first call only."""
    code = ("import sys\n"
            "import ziggurat_processes.hillshade, ziggurat_processes.slope, ziggurat_processes.aspect\n"
            "import ziggurat_processes.focal, ziggurat_processes.composite, ziggurat_processes.timeseries\n"
            "from ziggurat.kernels import hillshade\n"
            "print('numba' in sys.modules)\n"
            "import numpy as np\n"
            "hillshade(np.zeros((3, 3), np.float32), 1.0, -1.0)\n"
            "print('numba' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "True"]


@pytest.mark.parametrize("shape", ["square", "circle"])
def test_the_sliding_focal_median_equals_numpys_nanmedian_of_each_window(shape):
    """The median keeps each row's window sorted as it slides (cells leave on the left, enter on
    the right); with NaN, masked cells and ties, every pixel equals numpy's median of its window."""
    rng = np.random.default_rng(17)
    for radius in (1, 2, 4):
        values = rng.integers(0, 7, (23, 31)).astype(np.float32)   # ties
        values[rng.random(values.shape) < 0.1] = np.nan
        data = np.ma.masked_array(values, mask=rng.random(values.shape) < 0.15)
        data[5:5 + 2 * radius + 2, 9:9 + 2 * radius + 2] = np.ma.masked   # windows with nothing valid
        got = focal(data, "median", radius, shape)
        offsets = window_offsets(radius, shape)
        filled = data.filled(np.nan).astype(np.float64)
        for r in range(radius, values.shape[0] - radius):
            for c in range(radius, values.shape[1] - radius):
                window = filled[r + offsets[:, 0], c + offsets[:, 1]]
                if np.isnan(window).all():
                    assert got.mask[r, c]
                else:
                    assert not got.mask[r, c] and got[r, c] == np.float32(np.nanmedian(window))
        assert got.mask[:radius].all() and got.mask[:, -radius:].all()
