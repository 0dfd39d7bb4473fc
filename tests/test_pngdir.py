"""PNG tile directories: same pixels as GeoTIFF tiles, nodata as transparency, one file a tile."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from ziggurat import OutputError
from ziggurat.engine.run import execute
from ziggurat.io import open_input
from ziggurat.recipe import load_recipe

from conftest import SAMPLE_DEM

# the tests open PNG tiles with plain rasterio: they have no georeferencing, by design
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning:rasterio")


def _recipe(out, fmt="PNG", **output):
    return load_recipe({"process": "hillshade", "zoom_levels": [9, 10],
                        "pyramid": {"grid": "geodetic", "pixelbuffer": 1}, "input": {"dem": str(SAMPLE_DEM)},
                        "output": {"path": str(out), "format": fmt, "dtype": "uint8", "nodata": 0, **output}})


def test_png_tiles_hold_the_geotiff_pixels_with_transparent_nodata(tmp_path):
    execute(_recipe(tmp_path / "png"), executor="sequential")
    execute(_recipe(tmp_path / "tif", fmt="GTiff"), executor="sequential")
    pngs = sorted(p.relative_to(tmp_path / "png") for p in (tmp_path / "png").glob("*/*/*.png"))  # not the quicklook
    tifs = sorted(p.relative_to(tmp_path / "tif") for p in (tmp_path / "tif").rglob("*.tif"))
    assert [p.with_suffix("") for p in pngs] == [p.with_suffix("") for p in tifs] and len(pngs) > 4
    assert not list((tmp_path / "png").rglob("*.aux.xml"))  # one file per tile
    partial = 0
    for rel in pngs:
        with rasterio.open(tmp_path / "png" / rel) as png, \
                rasterio.open(tmp_path / "tif" / rel.with_suffix(".tif")) as tif:
            assert png.driver == "PNG" and png.count == 2  # gray + alpha
            values, alpha = png.read(1), png.read(2)
            expected = tif.read(1)
            np.testing.assert_array_equal(values, expected)
            np.testing.assert_array_equal(alpha == 0, expected == 0)  # nodata is transparent
            partial += int((alpha == 0).any())
    assert partial  # the DEM's edge tiles really have transparent pixels


def test_png_bytes_are_deterministic_and_read_back_as_an_input(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    execute(_recipe(a), executor="sequential")
    execute(_recipe(b), executor="processes", workers=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    recipe = _recipe(a)
    inp = open_input(type("Cfg", (), {"name": "hs", "path": a, "format": "tiledir", "options": {}})(), recipe.grid)
    tile = recipe.grid.tile(10, 325, 469)
    data = inp.for_tile(tile).read(1)
    with rasterio.open(a / "10" / "325" / "469.png") as png:
        expected = np.ma.masked_equal(png.read(1), 0)
    pb = recipe.grid.pixelbuffer
    np.testing.assert_array_equal(data[pb:-pb, pb:-pb].filled(0), expected.filled(0))


def test_png_directory_opens_as_one_mosaic_through_its_stac_item(tmp_path):
    summary = execute(_recipe(tmp_path / "png"), executor="sequential")
    with rasterio.open(summary.stac_item) as ds:
        assert ds.driver == "STACTA" and ds.count == 1 and ds.overviews(1) == [2]
        assert ds.read(1, masked=True).count() > 100_000


@pytest.mark.parametrize("output,message", [({"bands": 2}, "bands must be 1"), ({"dtype": "float32"}, "uint8")])
def test_png_settings_that_cannot_work_are_refused(tmp_path, output, message):
    with pytest.raises((OutputError, ValueError), match=message):
        execute(_recipe(tmp_path / "png", **output), executor="sequential")
