"""Band metadata: `output.bands` specs in every tile, in STAC and read back by name."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml

from stac_schemas import validate
from ziggurat import RecipeError
from ziggurat.engine.run import execute
from ziggurat.recipe import load_recipe
from ziggurat.records.catalog.parts import item_path

BOUNDS = (-123.75, 56.25, -118.125, 61.875)   # geodetic z6 tiles 10..11 / 20..21
#: band 1 encodes row/col, band 2 is a class map (1 left half, 2 right half); tags with the array
PROCESS = """
import numpy as np

def execute(tile):
    rows, cols = np.mgrid[0:256, 0:256]
    classes = np.where(cols < 128, 1, 2)
    data = np.stack([rows * 256 + cols, classes]).astype("uint16")
    return data, {"PRODUCER": "test", 1: {"STATISTICS_NOTE": "row-major"}}
"""
BANDS = [
    {"name": "position", "description": "row * 256 + col", "unit": "px", "scale": 0.5, "offset": -1},
    {"name": "landcover", "classes": [{"value": 1, "name": "water", "color": "#1f78b4"},
                                      {"value": 2, "name": "forest", "description": "Closed canopy"}]},
]


def write_recipe(tmp_path: Path, name: str, process: str, output: dict[str, Any], **top: Any) -> Path:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(process))
    recipe = {"process": f"{name}.py", "zoom_levels": [6, 6], "pyramid": {"grid": "geodetic"},
              "output": {"path": str(tmp_path / name), **output}, **top}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def classified(tmp_path: Path) -> Path:
    recipe = write_recipe(tmp_path, "bands", PROCESS, {"dtype": "uint16", "nodata": 0, "bands": BANDS})
    summary = execute(recipe, executor="sequential", zoom=6, bounds=BOUNDS)
    assert summary.written == 4
    return tmp_path / "bands"


def test_band_specs_are_written_into_every_tile(classified):
    tiles = sorted(classified.glob("6/*/*.tif"))
    assert len(tiles) == 4
    for path in tiles:
        with rasterio.open(path) as src:
            assert src.descriptions == ("position", "landcover")
            assert src.units == ("px", None)
            assert src.scales == (0.5, 1.0) and src.offsets == (-1.0, 0.0)
            assert src.tags(1)["DESCRIPTION"] == "row * 256 + col"
            assert json.loads(src.tags(2)["CLASSES"]) == [{"value": 1, "name": "water"},
                                                          {"value": 2, "name": "forest"}]
            assert src.tags()["PRODUCER"] == "test"                   # tags returned with the array
            assert src.tags(1)["STATISTICS_NOTE"] == "row-major"
            assert src.read(2)[0, 0] == 1 and src.read(2)[0, 255] == 2


def test_stac_item_describes_the_bands_and_validates(classified):
    item = json.loads(item_path(classified).read_text())
    bands = item["asset_templates"]["data"]["raster:bands"]
    assert bands[0] == {"data_type": "uint16", "nodata": 0, "name": "position", "description": "row * 256 + col",
                        "unit": "px", "scale": 0.5, "offset": -1.0}
    assert bands[1]["name"] == "landcover"
    assert bands[1]["classification:classes"] == [
        {"value": 1, "name": "water", "color_hint": "1F78B4"},
        {"value": 2, "name": "forest", "description": "Closed canopy"}]
    assert "https://stac-extensions.github.io/classification/v1.1.0/schema.json" in item["stac_extensions"]
    assert any("classification" in s for s in validate(item))
    with rasterio.open(item_path(classified), SKIP_MISSING_METATILE="YES") as src:   # GDAL reads them too
        assert src.count == 2 and src.units[0] == "px" and src.scales[0] == 0.5


READER = """
def execute(src):
    both = src.read(["landcover", "position"])
    one = src.read("landcover")
    assert one.ndim == 2 and (one == both[0]).all()
    return both
"""


def test_a_tile_directory_input_reads_bands_by_name(classified, tmp_path):
    recipe = write_recipe(tmp_path, "reader", READER, {"dtype": "uint16", "nodata": 0, "bands": 2},
                          input={"src": str(classified)})
    execute(recipe, executor="sequential", tile=(6, 10, 20))
    with rasterio.open(tmp_path / "reader" / "6" / "10" / "20.tif") as out, \
            rasterio.open(classified / "6" / "10" / "20.tif") as src:
        np.testing.assert_array_equal(out.read(1), src.read(2))
        np.testing.assert_array_equal(out.read(2), src.read(1))


S2_READER = """
def execute(s2):
    red, nir = s2.read(["B04", "B08"]).astype("float32")
    return (nir - red) / (nir + red)
"""


def test_a_raster_input_reads_bands_by_description(tmp_path):
    src = tmp_path / "s2.tif"
    profile = {"driver": "GTiff", "width": 256, "height": 256, "count": 3, "dtype": "uint16", "nodata": 0,
               "crs": "EPSG:4326", "transform": rasterio.transform.from_bounds(-123.75, 59.0625, -120.9375, 61.875,
                                                                               256, 256)}
    with rasterio.open(src, "w", **profile) as dst:
        for band, (name, value) in enumerate((("B02", 100), ("B04", 200), ("B08", 600)), 1):
            dst.write(np.full((256, 256), value, "uint16"), band)
            dst.set_band_description(band, name)
    recipe = write_recipe(tmp_path, "ndvi", S2_READER, {"dtype": "float32", "bands": ["NDVI"]}, input={"s2": str(src)})
    execute(recipe, executor="sequential", tile=(6, 10, 20))
    with rasterio.open(tmp_path / "ndvi" / "6" / "10" / "20.tif") as out:
        assert out.descriptions == ("NDVI",)
        np.testing.assert_allclose(out.read(1), 0.5)
    wrong = write_recipe(tmp_path, "wrong", S2_READER.replace("B08", "B8A"), {"dtype": "float32"},
                         input={"s2": str(src)})
    summary = execute(wrong, executor="sequential", tile=(6, 10, 20), keep_going=True)
    assert "no band named 'B8A' (its bands: B02, B04, B08)" in summary.failed[0].error


def test_a_colour_table_from_classes(tmp_path):
    process = """
    import numpy as np

    def execute(tile):
        return np.where(np.mgrid[0:256, 0:256][1] < 128, 1, 2).astype("uint8")
    """
    recipe = write_recipe(tmp_path, "lc", process, {"dtype": "uint8", "nodata": 0, "bands": [
        {"name": "landcover", "classes": [{"value": 1, "name": "water", "color": "#1f78b4"},
                                          {"value": 2, "name": "forest", "color": [51, 160, 44]}]}]})
    execute(recipe, executor="sequential", tile=(6, 10, 20))
    with rasterio.open(tmp_path / "lc" / "6" / "10" / "20.tif") as src:
        table = src.colormap(1)
        assert table[1] == (31, 120, 180, 255) and table[2] == (51, 160, 44, 255)


@pytest.mark.parametrize("bands,dtype,message", [
    ([{"name": "a", "colour": "red"}], "uint8", r"output\.bands\[0\]\.colour: unknown key 'colour' of a band"),
    (["a", "a"], "uint8", r"output\.bands\[1\]\.name: band name 'a' is already band 1"),
    ([{"name": "a", "colormap": {1: "#ff0000"}}], "float32",
     r"output\.bands\[0\]\.colormap: expected dtype uint8 or uint16 for a colour table"),
    ([{"classes": [{"value": 1, "name": "open water"}]}], "uint8",
     r"output\.bands\[0\]\.classes\[0\]\.name: expected a class name of letters"),
    ([{"scale": "big"}], "int16", r"output\.bands\[0\]\.scale: expected a number"),
    ([{"nodata": 1}, {"nodata": 2}], "uint8", r"output\.bands\[0\]\.nodata: expected one nodata value for all bands"),
])
def test_bad_band_specs_name_the_key(tmp_path, bands, dtype, message):
    recipe = write_recipe(tmp_path, "bad", PROCESS, {"dtype": dtype, "bands": bands})
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe)


def test_band_nodata_is_the_output_nodata(tmp_path):
    recipe = write_recipe(tmp_path, "bn", PROCESS, {"dtype": "uint16", "bands": [{"name": "a", "nodata": 9}, "b"]})
    out = load_recipe(recipe).output
    assert out.nodata == 9 and out.bands == 2 and out.nodata_set


def test_band_specs_on_png_tiles(tmp_path):
    """PNG keeps no band metadata (and gets no .aux.xml): metadata.json and STAC carry it."""
    process = """
    import numpy as np

    def execute(tile):
        return (np.mgrid[0:256, 0:256][1] % 200 + 1).astype("uint8")
    """
    recipe = write_recipe(tmp_path, "png", process, {"format": "PNG", "dtype": "uint8", "bands": [
        {"name": "lc", "unit": "m", "scale": 2, "classes": [{"value": 1, "name": "water", "color": "#0000ff"}]}]})
    execute(recipe, executor="sequential", tile=(6, 10, 20))
    out = tmp_path / "png"
    assert [p.name for p in (out / "6" / "10").iterdir()] == ["20.png"]
    assert json.loads((out / "metadata.json").read_text())["output"]["band_specs"][0]["name"] == "lc"
    band = json.loads(item_path(out).read_text())["asset_templates"]["data"]["raster:bands"][0]
    assert band["unit"] == "m" and band["scale"] == 2.0 and band["classification:classes"][0]["name"] == "water"
