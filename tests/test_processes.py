"""The ready-made processes on synthetic arrays whose hillshade can be worked out by hand."""

from __future__ import annotations

import inspect
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ziggurat import Empty
from ziggurat.core.grid import Grid
from ziggurat_processes import aspect as aspect_process
from ziggurat_processes import convert
from ziggurat_processes import focal as focal_process
from ziggurat_processes import hillshade as hs
from ziggurat_processes import slope as slope_process
from ziggurat_processes.hillshade import EARTH_RADIUS, hillshade

from conftest import SAMPLE_DEM

DEG = math.pi / 180


def plane(p: float, q: float, xres: float = 10.0, yres: float = 10.0, shape=(6, 7)) -> np.ndarray:
    """Elevation rising `p` per unit east and `q` per unit north; row 0 is the northern row."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    return 100.0 + p * cols * xres - q * rows * yres


def gdal_value(cang: float) -> int:
    """gdaldem's byte: 1 + 254 * cos(incidence), 1 in shadow, rounded to nearest."""
    return 1 if cang <= 0 else min(255, math.floor(1 + 254 * cang + 0.5))


def interior(a: np.ma.MaskedArray) -> np.ma.MaskedArray:
    return a[1:-1, 1:-1]


# -- hillshade ------------------------------------------------------------------------------

@pytest.mark.parametrize("altitude", [45.0, 30.0, 90.0, 10.0])
def test_flat_is_sin_altitude(altitude):
    out = hillshade(np.full((5, 6), 250.0), 30.0, 30.0, altitude=altitude)
    expected = gdal_value(math.sin(altitude * DEG))
    assert out.dtype == np.uint8
    assert (interior(out) == expected).all() and not interior(out).mask.any()
    assert expected == {45.0: 181, 30.0: 128, 90.0: 255, 10.0: 45}[altitude]  # 1 + 254 sin(alt), rounded


def test_edges_are_masked_with_nodata_zero():
    out = hillshade(np.full((4, 5), 1.0), 1.0, 1.0)
    assert out.mask[0].all() and out.mask[-1].all() and out.mask[:, 0].all() and out.mask[:, -1].all()
    assert not out.mask[1:-1, 1:-1].any()
    assert (out.filled()[out.mask] == 0).all() and out.fill_value == 0
    assert hillshade(np.ones((2, 9)), 1, 1).mask.all()


@pytest.mark.parametrize("azimuth,altitude", [(315, 45), (90, 30), (200, 60), (0, 20)])
def test_plane_facing_the_sun_is_255(azimuth, altitude):
    # the normal (-p, -q, 1) points at the sun (sin az cos alt, cos az cos alt, sin alt)
    p = -math.sin(azimuth * DEG) / math.tan(altitude * DEG)
    q = -math.cos(azimuth * DEG) / math.tan(altitude * DEG)
    out = hillshade(plane(p, q), 10.0, 10.0, azimuth=azimuth, altitude=altitude)
    assert (interior(out) == 255).all()
    # the mirrored slope: the angle to the sun grows by 2 * (90 - alt), so cang = -cos(2 alt),
    # in shadow (1) for a sun at 45 degrees or lower
    away = hillshade(plane(-p, -q), 10.0, 10.0, azimuth=azimuth, altitude=altitude)
    assert (interior(away) == gdal_value(-math.cos(2 * altitude * DEG))).all()
    assert (interior(away) == 1).all() == (altitude <= 45)


def test_hand_computed_slopes():
    # rising 0.5 m per m to the east, sun from the NW at 45 degrees:
    # (sin45 - 0.5 * sin315 * cos45) / sqrt(1 + 0.25) = (0.70711 + 0.25) / 1.11803 = 0.85607
    # -> 1 + 254 * 0.85607 = 218.44 -> 218
    assert (interior(hillshade(plane(0.5, 0), 10, 10)) == 218).all()
    # rising 1 m per m to the north (faces south, away from a NW sun):
    # (0.70711 - 1 * cos315 * cos45) / sqrt(2) = (0.70711 - 0.5) / 1.41421 = 0.14645 -> 38.20 -> 38
    assert (interior(hillshade(plane(0, 1), 10, 10)) == 38).all()
    # falling to the north (faces north-ish): (0.70711 + 0.5) / 1.41421 = 0.85355 -> 217.80 -> 218
    assert (interior(hillshade(plane(0, -1), 10, 10)) == 218).all()
    # sun from the east at 45 degrees on a slope rising 1:1 to the east: grazing, cang = 0 -> 1
    assert (interior(hillshade(plane(1, 0), 10, 10, azimuth=90)) == 1).all()
    # ... and on the slope falling to the east it is lit head-on
    assert (interior(hillshade(plane(-1, 0), 10, 10, azimuth=90)) == 255).all()


def test_pixel_size_and_vertical_exaggeration():
    dem = plane(0.5, 0)  # built with 10 m pixels
    # the same numbers read as 20 m pixels halve the slope
    assert (interior(hillshade(dem, 20, 20)) == interior(hillshade(plane(0.25, 0), 10, 10))).all()
    # z = 2 doubles it
    assert (interior(hillshade(dem, 10, 10, z=2)) == interior(hillshade(plane(1.0, 0), 10, 10))).all()
    # signs of the pixel sizes (affine e < 0) do not matter
    assert (hillshade(dem, 10, -10) == hillshade(dem, 10, 10)).all()


def test_masked_and_nan_neighbours_propagate():
    dem = np.ma.masked_array(plane(0.3, 0.2, shape=(10, 10)), mask=False)
    dem[5, 5] = np.ma.masked
    dem.data[5, 5] = -32768  # a typical nodata value must not leak into neighbours
    out = hillshade(dem, 10, 10)
    expected_mask = np.zeros((10, 10), dtype=bool)
    expected_mask[[0, -1], :] = expected_mask[:, [0, -1]] = True
    expected_mask[4:7, 4:7] = True
    assert (out.mask == expected_mask).all()
    reference = hillshade(plane(0.3, 0.2, shape=(10, 10)), 10, 10)
    assert (out[~expected_mask] == reference[~expected_mask]).all()

    nan_dem = plane(0.3, 0.2, shape=(10, 10))
    nan_dem[5, 5] = np.nan
    assert (hillshade(nan_dem, 10, 10).mask == expected_mask).all()


def test_geographic_latitudes_scale_x_by_cos_lat():
    xres = yres = 1 / 1200  # degrees, like SRTM 3 arc-second
    metres = xres * DEG * EARTH_RADIUS  # 92.66 m
    dem = plane(0.2, 0.1, xres=metres, yres=metres)  # 0.2 m/m east at the equator
    shape = dem.shape
    at0 = hillshade(dem, xres, yres, latitudes=np.zeros(shape[0]))
    at60 = hillshade(dem, xres, yres, latitudes=np.full(shape[0], 60.0))
    # at the equator a degree-pixel is `metres` wide; at 60 degrees half that: twice the x slope
    assert (at0 == hillshade(dem, metres, metres)).all()
    assert (interior(at0) == interior(hillshade(plane(0.2, 0.1), 10, 10))).all()
    assert (interior(at60) == interior(hillshade(plane(0.4, 0.1), 10, 10))).all()
    assert (interior(at60) != interior(at0)).all()
    # one latitude per row: each row is shaded with its own cos(lat)
    lats = np.linspace(0, 70, shape[0])
    mixed = hillshade(dem, xres, yres, latitudes=lats)
    for r in range(1, shape[0] - 1):
        row_ref = hillshade(dem, xres, yres, latitudes=np.full(shape[0], lats[r]))
        assert (mixed[r] == row_ref[r]).all()
    with pytest.raises(ValueError):
        hillshade(dem, xres, yres, latitudes=np.zeros(3))


def test_scale_overrides_latitudes():
    dem = plane(0.2, 0.1, shape=(5, 5))
    xres = 1 / 1200
    by_scale = hillshade(dem, xres, xres, scale=111120, latitudes=np.full(5, 60.0))
    assert (by_scale == hillshade(dem, xres * 111120, xres * 111120)).all()
    assert (by_scale != hillshade(dem, xres, xres, latitudes=np.full(5, 60.0))).any()


def test_rejects_3d():
    with pytest.raises(ValueError):
        hillshade(np.zeros((1, 5, 5)), 1, 1)


@pytest.mark.skipif(shutil.which("gdaldem") is None, reason="gdaldem not installed (apt-get install gdal-bin)")
def test_matches_gdaldem(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import Affine

    rng = np.random.default_rng(1)
    rows, cols = np.mgrid[0:60, 0:70]
    dem = (300 * np.sin(cols / 9) * np.cos(rows / 7) + rng.normal(0, 20, rows.shape)).astype("float32")
    dem[5:9, 30:33] = np.nan
    profile = dict(driver="GTiff", dtype="float32", width=70, height=60, count=1, crs="EPSG:32633",
                   transform=Affine(30.0, 0, 500000, 0, -20.0, 4000000), nodata=np.nan)
    src, dst = tmp_path / "dem.tif", tmp_path / "hs.tif"
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(dem, 1)
    subprocess.run(["gdaldem", "hillshade", str(src), str(dst), "-q", "-z", "2", "-az", "100", "-alt", "35"],
                   check=True)
    with rasterio.open(dst) as ds:
        ref = ds.read(1, masked=True)
    ours = hillshade(np.ma.masked_invalid(dem), 30.0, -20.0, z=2, azimuth=100, altitude=35)
    assert (ours.mask == ref.mask).all()
    assert np.abs(ours.filled(0).astype(int) - ref.filled(0).astype(int)).max() <= 1


class StubInput:
    """Stands in for the engine's tile input: read() and is_empty() only."""

    def __init__(self, data: np.ma.MaskedArray | np.ndarray, empty: bool = False) -> None:
        self.data = np.ma.asarray(data)
        self.empty = empty
        self.calls: list[tuple] = []

    def is_empty(self) -> bool:
        return self.empty

    def read(self, indexes=None, resampling=None) -> np.ma.MaskedArray:
        self.calls.append((indexes, resampling))
        if isinstance(indexes, int):
            return self.data[indexes - 1]
        if indexes is None:
            return self.data
        return self.data[[i - 1 for i in indexes]]


def test_execute_geographic_tile_uses_row_latitudes():
    grid = Grid.from_name("geodetic", pixelbuffer=1)
    tile = grid.tile_at(10.0, 60.0, 10)
    h, w = tile.buffered_shape
    metres = tile.resolution[0] * DEG * EARTH_RADIUS
    dem = plane(0.2, 0.1, xres=metres, yres=metres, shape=(h, w))
    stub = StubInput(dem[None])
    out = hs.execute(stub, tile)
    assert out.shape == (h, w) and out.dtype == np.uint8
    aff = tile.buffered_affine
    lats = aff.f + aff.e * (np.arange(h) + 0.5)
    assert lats[1] == pytest.approx(tile.bounds.top - tile.resolution[1] / 2)
    assert (out == hillshade(dem, aff.a, aff.e, latitudes=lats)).all()
    assert stub.calls == [(1, "bilinear")]
    # near 60 degrees north the x slope is about twice what it is in metres at the equator
    assert abs(int(out[h // 2, w // 2]) - int(hillshade(plane(0.4, 0.1), 10, 10)[2, 2])) <= 2
    # an explicit scale switches the latitude handling off
    scaled = hs.execute(StubInput(dem[None]), tile, scale=111120, z=1, azimuth=315, altitude=45)
    assert (scaled == hillshade(dem, aff.a * 111120, aff.e * 111120)).all()


def test_execute_projected_tile_uses_metres():
    grid = Grid.from_name("mercator", pixelbuffer=1)
    tile = grid.tile(12, 1500, 2000)
    h, w = tile.buffered_shape
    dem = plane(0.1, 0.05, xres=tile.resolution[0], yres=tile.resolution[1], shape=(h, w))
    out = hs.execute(StubInput(dem[None]), tile, azimuth=200, altitude=30, z=3)
    assert (out == hillshade(dem, *tile.resolution, azimuth=200, altitude=30, z=3)).all()


def test_execute_empty():
    tile = Grid.from_name("geodetic", pixelbuffer=1).tile(5, 3, 3)
    h, w = tile.buffered_shape
    with pytest.raises(Empty):
        hs.execute(StubInput(np.zeros((1, h, w)), empty=True), tile)
    with pytest.raises(Empty):
        hs.execute(StubInput(np.ma.masked_all((1, h, w))), tile)
    # only a speck of data: nothing of it survives the 3x3 window
    speck = np.ma.masked_all((1, h, w))
    speck[0, 10, 10] = 5
    with pytest.raises(Empty):
        hs.execute(StubInput(speck), tile)


# -- convert --------------------------------------------------------------------------------

def test_convert_passes_data_through_by_default():
    data = np.ma.masked_array(np.arange(24, dtype=np.int16).reshape(2, 3, 4), mask=False)
    data[0, 0, 0] = np.ma.masked
    stub = StubInput(data)
    out = convert.execute(stub)
    assert out.dtype == np.int16 and (out == data).all() and out.mask[0, 0, 0]
    assert stub.calls == [(None, None)]   # the input decides: a mosaic source's own resampling, else nearest


def test_convert_scale_offset_bands_and_resampling():
    data = np.ma.masked_array(np.full((3, 2, 2), 30000, dtype=np.int16), mask=False)
    data[2] = 7
    data[1, 1, 1] = np.ma.masked
    stub = StubInput(data)
    out = convert.execute(stub, resampling="bilinear", bands=[3, 2], scale=2.0, offset=-1.5)
    assert stub.calls == [([3, 2], "bilinear")]
    assert out.shape == (2, 2, 2)
    assert (out[0] == 12.5).all()
    assert out[1, 0, 0] == 59998.5  # no int16 overflow
    assert out.mask[1, 1, 1] and out.mask.sum() == 1
    # an int band stays 3D
    assert convert.execute(StubInput(data), bands=1).shape == (1, 2, 2)
    assert convert.execute(StubInput(data), offset=1).dtype == np.float64
    with pytest.raises(ValueError):
        convert.execute(StubInput(data), bands=[])


def test_convert_empty():
    with pytest.raises(Empty):
        convert.execute(StubInput(np.zeros((1, 2, 2)), empty=True))
    with pytest.raises(Empty):
        convert.execute(StubInput(np.ma.masked_all((2, 3, 3), dtype=np.int16)))


# -- module contract ------------------------------------------------------------------------

@pytest.mark.parametrize("module,first", [(hs, "dem"), (convert, "inp"), (slope_process, "dem"),
                                          (aspect_process, "dem"), (focal_process, "raster")])
def test_module_contract(module, first):
    summary = module.__doc__.strip().splitlines()[0]
    assert summary and summary.endswith(".") and len(summary) < 100
    params = list(inspect.signature(module.execute).parameters)
    assert params[0] == first
    assert ("tile" in params) == (module is not convert)


def test_a_parameter_of_the_wrong_type_is_refused_before_any_tile(tmp_path):
    """Plain annotations of execute() are checked against the recipe at load, at every zoom (a
    wrong type used to surface as a TypeError on the first tile)."""
    import textwrap

    from ziggurat.core.errors import RecipeError
    from ziggurat.engine.run import execute

    (tmp_path / "proc.py").write_text(textwrap.dedent("""\
        from __future__ import annotations

        def execute(dem, gain: float = 1.0, bands: list[int] | None = None, label: str = "x", flag: bool = False,
                    anything: "SomeType" = None):
            return dem.read(1) * gain
        """))

    def recipe(params: str) -> Path:
        path = tmp_path / "recipe.yaml"
        path.write_text(textwrap.dedent(f"""\
            process: proc.py
            zoom_levels: [8, 9]
            pyramid: {{grid: geodetic}}
            input: {{dem: {SAMPLE_DEM}}}
            output: {{path: out, dtype: float32}}
            process_parameters: {params}
            """))
        return path

    for params, message in (("{gain: high}", r"process_parameters.gain: expected float .* found str 'high'"),
                            ("{gain: {zoom<9: 2, zoom>=9: two}}", r"expected float .* found str 'two'"),
                            ("{bands: 3}", r"expected list or None .* found int 3"),
                            ("{label: 5}", r"expected str .* found int 5"),
                            ("{gain: true}", r"expected float .* found bool True")):
        with pytest.raises(RecipeError, match=message):
            execute(recipe(params), executor="sequential", zoom=8, bounds=(-97.4, 32.6, -97.3, 32.7))
    assert not (tmp_path / "out").exists()
    good = "{gain: 2, bands: [1], label: y, flag: true, anything: [1, 2]}"
    assert execute(recipe(good), executor="sequential", zoom=8, bounds=(-97.4, 32.6, -97.3, 32.7)).ok


def test_aws_credentials_in_the_environment_cost_no_session_per_tile(tmp_path):
    """With AWS_* set, rasterio built a boto3 session for every Env and every open (3.5-4.5x the
    CPU of a whole run, local outputs too); tiles now open and encode under one session-free
    environment: one session per run at most, not one per tile."""
    import os
    import textwrap

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"process: hillshade\nzoom_levels: [10, 11]\npyramid: {{grid: geodetic, pixelbuffer: 1}}\n"
                      f"input: {{dem: {SAMPLE_DEM}}}\noutput: {{path: out, dtype: uint8, nodata: 0}}\n")
    code = textwrap.dedent("""\
        import sys
        import boto3.session
        made = []
        original = boto3.session.Session.__init__
        def counted(self, *args, **kwargs):
            made.append(1)
            return original(self, *args, **kwargs)
        boto3.session.Session.__init__ = counted
        from ziggurat import execute
        summary = execute(sys.argv[1], executor="sequential")
        print(summary.written, len(made))
        """)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}
    done = subprocess.run([sys.executable, "-c", code, str(recipe)], env=env, capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    tiles, sessions = map(int, done.stdout.split())
    assert tiles >= 8 and sessions <= 2, (tiles, sessions)
