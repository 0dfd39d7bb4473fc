"""The STAC item: real runs, opened by GDAL's STACTA driver and compared with the tiles on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from stac_schemas import validate
from ziggurat import RecipeError
from ziggurat.cli import main
from ziggurat.core.grid import Grid
from ziggurat.core.limits import ZoomLimits
from ziggurat.engine.run import execute
from ziggurat.io.common import crs_equal
from ziggurat.records.catalog.stac import TILED_ASSETS_SCHEMA, build_item, item_path, tile_matrix

from pyramid_helpers import NODATA, extent, make_recipe, mosaic, run, tiles_on_disk

SKIP = {"SKIP_MISSING_METATILE": "YES"}


def load_item(out: Path) -> dict:
    return json.loads(item_path(out).read_text())


def check_item_against_tiles(out: Path, grid: Grid) -> None:
    """GDAL's view of the item equals the tiles: size, CRS, transform, every level, every seam; and
    the item validates against the official schemas."""
    validate(load_item(out))
    on_disk = tiles_on_disk(out)
    top = max(on_disk)
    box = extent(grid, top, on_disk[top])
    xres, yres = grid.resolution(top)
    with rasterio.open(item_path(out), **SKIP) as src:
        assert src.driver == "STACTA"
        assert crs_equal(src.crs, grid.crs)
        assert src.transform.almost_equals(rasterio.Affine(xres, 0, box.left, 0, -yres, box.top),
                                           precision=1e-9 * max(1.0, abs(box.left), abs(box.top)))
        assert (src.height, src.width) == (round((box.top - box.bottom) / yres),
                                           round((box.right - box.left) / xres))
        assert src.dtypes == ("float32",) and src.nodata == NODATA
        expected = mosaic(out, grid, top, box)
        assert (expected != NODATA).any()
        np.testing.assert_array_equal(src.read(), expected)
        # a window across the corner where four (meta)tiles meet
        th, tw = grid.tile_shape(top, *on_disk[top][0])
        if src.width > tw and src.height > th:
            win = Window(tw - 5, th - 7, 10, 14)
            np.testing.assert_array_equal(src.read(window=win), expected[:, th - 7:th + 7, tw - 5:tw + 5])
        assert len(src.overviews(1)) == len(on_disk) - 1
    for level, zoom in enumerate(sorted(on_disk, reverse=True)[1:]):
        with rasterio.open(item_path(out), overview_level=level, **SKIP) as ovr:
            np.testing.assert_array_equal(ovr.read(), mosaic(out, grid, zoom, box))


@pytest.mark.parametrize("grid_name,metatiling,output_metatiling", [
    ("geodetic", 1, 1), ("geodetic", 2, 2), ("geodetic", 4, 2), ("mercator", 2, 1), ("utm", 2, 2),
])
def test_gdal_opens_the_item_as_one_mosaic(tmp_path, grid_name, metatiling, output_metatiling):
    recipe, grid = make_recipe(tmp_path, grid_name, metatiling=metatiling,
                               output_metatiling=output_metatiling, pixelbuffer=2)
    summary = run(recipe)
    out = tmp_path / "out"
    assert summary.stac_item == out / "out.json" and summary.stac_item.exists()
    assert f"STAC item: {summary.stac_item}" in summary.describe()
    check_item_against_tiles(out, grid)

    item = load_item(out)
    assert TILED_ASSETS_SCHEMA in item["stac_extensions"]
    assert json.dumps(item).index(TILED_ASSETS_SCHEMA) < 32768  # GDAL looks in the first 32 KiB
    tms = item["properties"]["tiles:tile_matrix_sets"][grid.tms.id]
    on_disk = tiles_on_disk(out)
    assert tms["type"] == "TileMatrixSetType"  # TMS 1.0 (OGC 17-083r2), as tiled-assets v1.0.0 says
    assert [m["identifier"] for m in tms["tileMatrix"]] == [str(z) for z in on_disk]  # only zooms with data
    scales = [m["scaleDenominator"] for m in tms["tileMatrix"]]
    assert scales == sorted(scales, reverse=True) and len(set(scales)) == len(scales)
    for m in tms["tileMatrix"]:
        assert m["tileWidth"] == m["tileHeight"] == 256 * output_metatiling
    limits = item["properties"]["tiles:tile_matrix_links"][grid.tms.id]["limits"]
    for zoom, cells in on_disk.items():
        rows, cols = [r for r, _ in cells], [c for _, c in cells]
        assert limits[str(zoom)] == {"min_tile_row": min(rows), "max_tile_row": max(rows),
                                     "min_tile_col": min(cols), "max_tile_col": max(cols)}
    template = item["asset_templates"]["data"]
    assert template["href"] == "{TileMatrix}/{TileRow}/{TileCol}.tif"
    assert template["type"] == "image/tiff; application=geotiff"
    assert template["raster:bands"] == [{"data_type": "float32", "nodata": -9999}]
    assert item["properties"]["proj:code"] == {"geodetic": "OGC:CRS84", "mercator": "EPSG:3857",
                                               "utm": "EPSG:32633"}[grid_name]
    # bbox: the tiles written clipped to the data's footprint, in WGS84 (not the globe, not the
    # coarsest zoom's tiles)
    tiles_box = shapely.union_all([shapely.box(*extent(grid, z, c)) for z, c in on_disk.items()])
    with rasterio.open(tmp_path / f"src_{grid_name}.tif") as src:
        source = transform_bounds(src.crs, grid.crs, *src.bounds, densify_pts=21)
    data_box = tiles_box.intersection(shapely.box(*source)).bounds
    assert shapely.box(*data_box).area < 0.9 * tiles_box.area
    west, south, east, north = transform_bounds(grid.crs, "EPSG:4326", *data_box, densify_pts=64)
    assert item["bbox"] == pytest.approx([west, south, east, north], abs=1e-5)  # ~1 m
    assert item["properties"]["proj:bbox"] == pytest.approx(list(data_box), abs=1e-6)
    footprint = shapely.geometry.shape(item["geometry"])
    assert footprint.bounds == pytest.approx(item["bbox"], abs=1e-9)
    assert footprint.exterior.is_ccw   # RFC 7946
    assert east - west < 30 and north - south < 30
    assert item["properties"]["license"] == "other"
    validate(item)


def test_tile_size_and_clipped_edge_metatiles(tmp_path):
    """tile_size 512 halves the cell size; at geodetic zoom 0-1 a metatile of 2 is clipped to the
    2 x 1 matrix (512 x 256 pixels), which must still be described exactly."""
    recipe, grid = make_recipe(tmp_path, "geodetic", zooms=(0, 1), metatiling=2, output_metatiling=2,
                               tile_size=512)
    run(recipe)
    out = tmp_path / "out"
    assert tiles_on_disk(out) == {0: [(0, 0)], 1: [(0, 0)]}
    tms = load_item(out)["properties"]["tiles:tile_matrix_sets"]["WorldCRS84Quad"]
    z0, z1 = tms["tileMatrix"]
    assert (z0["tileWidth"], z0["tileHeight"], z0["matrixWidth"], z0["matrixHeight"]) == (1024, 512, 1, 1)
    assert (z1["tileWidth"], z1["tileHeight"], z1["matrixWidth"], z1["matrixHeight"]) == (1024, 1024, 2, 1)
    # tile_size 512 halves the pixel: 90 / 512 degrees instead of 90 / 256
    assert z1["scaleDenominator"] == pytest.approx(grid.tms.matrix(1).scaleDenominator / 2)
    assert "wellKnownScaleSet" not in tms  # no longer the registered WorldCRS84Quad
    check_item_against_tiles(out, grid)


def test_matrix_that_gdal_cannot_read_is_left_out():
    import morecantile
    import pyproj

    tms = morecantile.TileMatrixSet.custom([0, 0, 300_000, 100_000], pyproj.CRS.from_epsg(32633),
                                           matrix_scale=[3, 1], id="Odd")
    grid = Grid(tms, "odd", metatiling=2)
    assert tms.matrix(0).matrixWidth == 3
    assert tile_matrix(grid, 0, (0, 0, 0, 0))["matrixWidth"] == 2     # clipped column not in limits
    assert tile_matrix(grid, 0, (0, 0, 0, 1)) is None                # GDAL would misread it


def test_sparse_output_needs_skip_missing_metatile(tmp_path):
    recipe, grid = make_recipe(tmp_path, "geodetic", zooms=(6, 6))
    run(recipe, tile=(6, 10, 20))
    run(recipe, tile=(6, 11, 21))          # diagonal: (10, 21) and (11, 20) are missing
    out = tmp_path / "out"
    limits = load_item(out)["properties"]["tiles:tile_matrix_links"]["WorldCRS84Quad"]["limits"]["6"]
    assert limits == {"min_tile_row": 10, "max_tile_row": 11, "min_tile_col": 20, "max_tile_col": 21}
    check_item_against_tiles(out, grid)
    with rasterio.open(item_path(out), **SKIP) as src:
        assert (src.read(1, window=Window(256, 0, 256, 256)) == NODATA).all()
    with rasterio.open(item_path(out)) as src, pytest.raises(RasterioIOError):
        src.read(1)                         # without the open option GDAL fails on the missing tile


def test_later_runs_grow_the_item(tmp_path):
    recipe, grid = make_recipe(tmp_path, "geodetic", zooms=(5, 6), size=(900, 700),
                               stac={"id": "mosaic", "datetime": "2024-05-01T12:00:00Z"})
    west = grid.tile_bounds(6, 10, 20)
    run(recipe, zoom=6, bounds=(west.left + 0.1, west.bottom + 0.1, west.right - 0.1, west.top - 0.1))
    first = load_item(tmp_path / "out")
    assert first["id"] == "mosaic"
    assert first["properties"]["datetime"] == "2024-05-01T12:00:00Z"
    assert list(first["properties"]["tiles:tile_matrix_links"]["WorldCRS84Quad"]["limits"]) == ["6"]
    east = grid.tile_bounds(6, 11, 22)
    run(recipe, zoom="5,6", bounds=(east.left + 0.1, east.bottom + 0.1, east.right - 0.1, east.top - 0.1))
    item = load_item(tmp_path / "out")
    limits = item["properties"]["tiles:tile_matrix_links"]["WorldCRS84Quad"]["limits"]
    assert limits["6"] == {"min_tile_row": 10, "max_tile_row": 11, "min_tile_col": 20, "max_tile_col": 22}
    assert limits["5"] == {"min_tile_row": 5, "max_tile_row": 5, "min_tile_col": 11, "max_tile_col": 11}
    assert item["properties"]["created"] == first["properties"]["created"]
    assert item["id"] == "mosaic"
    bbox = shapely.box(*item["bbox"])
    with rasterio.open(tmp_path / "src_geodetic.tif") as src:   # both runs' tiles, within the data
        data = shapely.box(*src.bounds)
    for tile in (west, east):
        assert bbox.contains(shapely.box(*tile).intersection(data).buffer(-1e-9))
    tiles = [shapely.box(*t) for t in (west, east, grid.tile_bounds(5, 5, 11))]
    assert bbox.bounds == pytest.approx(shapely.union_all(tiles).intersection(data).bounds, abs=1e-9)
    check_item_against_tiles(tmp_path / "out", grid)


def test_resumed_run_heals_a_missing_item_and_unchanged_item_is_not_rewritten(tmp_path):
    recipe, grid = make_recipe(tmp_path, "geodetic", zooms=(6, 6))
    run(recipe)
    out = tmp_path / "out"
    before = load_item(out)
    item_path(out).unlink()                 # e.g. an interrupted run never got to write it
    again = run(recipe)
    assert again.output_tiles == 0 and again.skipped > 0
    healed = load_item(out)
    assert healed["properties"]["tiles:tile_matrix_links"] == before["properties"]["tiles:tile_matrix_links"]
    stamp = item_path(out).stat().st_mtime_ns
    assert run(recipe).stac_item == item_path(out)
    assert item_path(out).stat().st_mtime_ns == stamp  # nothing new: left as it was


def test_recipe_stac_settings(tmp_path):
    recipe, _ = make_recipe(tmp_path, "geodetic", zooms=(6, 6), stac={
        "id": "hillshade-dallas", "datetime": "1999-01-01", "title": "Shaded relief",
        "properties": {"license": "CC-BY-4.0", "providers": [{"name": "me", "roles": ["processor"]}]}},
        output={"stac": {"description": "From SRTM", "datetime": "2024-05-01"}})
    run(recipe)
    item = load_item(tmp_path / "out")
    props = item["properties"]
    assert item["id"] == "hillshade-dallas"
    assert props["datetime"] == "2024-05-01T00:00:00Z"
    assert (props["title"], props["description"], props["license"]) == ("Shaded relief", "From SRTM", "CC-BY-4.0")
    assert props["providers"] == [{"name": "me", "roles": ["processor"]}]
    with rasterio.open(item_path(tmp_path / "out"), **SKIP) as src:
        assert src.tags()["license"] == "CC-BY-4.0"   # GDAL exposes the properties as metadata
    validate(item)


def test_the_demo_item_validates_against_the_schemas(tmp_path, monkeypatch):
    monkeypatch.setenv("ZIGGURAT_OUTPUT", str(tmp_path))
    summary = execute(Path(__file__).parents[1] / "recipes" / "hillshade.yaml", executor="sequential")
    item = load_item(tmp_path / "hillshade")
    assert summary.stac_item == item_path(tmp_path / "hillshade")
    schemas = validate(item)
    assert TILED_ASSETS_SCHEMA in schemas and any("item-spec" in s for s in schemas)
    with rasterio.open(Path(__file__).parents[1] / "recipes" / "data" / "srtm_dallas.tif") as src:
        dem = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    west, south, east, north = item["bbox"]   # the DEM's footprint, not the zoom-8 tile's
    assert west >= dem[0] - 1e-9 and south >= dem[1] - 1e-9 and east <= dem[2] + 1e-9 and north <= dem[3] + 1e-9
    assert shapely.geometry.shape(item["geometry"]).exterior.is_ccw


@pytest.mark.parametrize("stac,message", [
    ({"date": "2024"}, r"unknown key 'stac\.date' \(valid keys: id, datetime"),
    ({"datetime": "yesterday"}, r"stac\.datetime: expected an ISO 8601 date"),
    ({"properties": {"proj:code": "EPSG:4326"}}, r"proj:code cannot be set"),
    ({"id": 5}, r"stac\.id: expected a string"),
    ({"license": "CC BY 4.0"}, r"stac\.license: expected an SPDX license identifier"),
    ({"collection": {"name": "x"}}, r"stac\.collection\.name: unknown key 'name' \(valid keys: id, title"),
    ({"collection": {"path": "cat.yaml"}}, r"stac\.collection\.path: expected a \.json file path"),
    ({"collection": 5}, r"stac\.collection: expected true, a collection id or a mapping"),
])
def test_bad_stac_settings_stop_the_run_before_any_tile(tmp_path, stac, message):
    recipe, _ = make_recipe(tmp_path, "geodetic", zooms=(6, 6), stac=stac)
    with pytest.raises(RecipeError, match=message):
        run(recipe)
    assert not (tmp_path / "out").exists()


def test_build_item_from_disk_keeps_identity(tmp_path):
    recipe, grid = make_recipe(tmp_path, "mercator", metatiling=2, stac={"id": "m", "datetime": "2020-01-01"})
    run(recipe)
    out = tmp_path / "out"
    before = load_item(out)
    before["properties"]["note"] = "added by hand"
    item_path(out).write_text(json.dumps(before))
    result = CliRunner().invoke(main, ["stac", str(out)])
    assert result.exit_code == 0 and result.stdout.strip() == str(item_path(out))
    after = load_item(out)
    assert after["id"] == "m" and after["properties"]["datetime"] == "2020-01-01T00:00:00Z"
    assert after["properties"]["note"] == "added by hand"
    assert after["properties"]["tiles:tile_matrix_links"] == before["properties"]["tiles:tile_matrix_links"]
    item_path(out).unlink()
    assert build_item(out) == item_path(out)
    check_item_against_tiles(out, grid)


def test_stac_command_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(main, ["stac", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {tmp_path} is not a ziggurat tile directory (no metadata.json)"


def test_cli_execute_names_the_item(tmp_path):
    recipe, _ = make_recipe(tmp_path, "geodetic", zooms=(6, 6))
    result = CliRunner().invoke(main, ["execute", str(recipe), "-e", "sequential", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"STAC item: {tmp_path / 'out' / 'out.json'}" in result.stdout


def test_zoom_limits_keep_only_extremes():
    limits = ZoomLimits()
    limits.update([(3, 5, 7), (3, 2, 9), (4, 1, 1)])
    limits.add(3, 4, 1)
    assert dict(limits.items()) == {3: (2, 5, 1, 9), 4: (1, 1, 1, 1)}


def _widen_zoom6(out: Path, **changes: int) -> None:
    item = load_item(out)
    item["properties"]["tiles:tile_matrix_links"]["WorldCRS84Quad"]["limits"]["6"].update(changes)
    item_path(out).write_text(json.dumps(item))


def test_update_trusts_a_matching_item_and_rebuilds_one_that_does_not_match(tmp_path):
    recipe, _ = make_recipe(tmp_path, "geodetic", zooms=(6, 6))
    run(recipe, tile=(6, 10, 20))
    out = tmp_path / "out"
    _widen_zoom6(out, max_tile_col=30)      # the item is merged, not rescanned: this survives
    run(recipe, tile=(6, 11, 21))
    limits = load_item(out)["properties"]["tiles:tile_matrix_links"]["WorldCRS84Quad"]["limits"]["6"]
    assert limits == {"min_tile_row": 10, "max_tile_row": 11, "min_tile_col": 20, "max_tile_col": 30}

    item = load_item(out)                   # an item written for another tile layout ...
    item["properties"]["tiles:tile_matrix_sets"]["WorldCRS84Quad"]["tileMatrix"][0]["tileWidth"] = 512
    item_path(out).write_text(json.dumps(item))
    run(recipe, tile=(6, 10, 21))           # ... is rebuilt from the tiles on disk
    limits = load_item(out)["properties"]["tiles:tile_matrix_links"]["WorldCRS84Quad"]["limits"]["6"]
    assert limits == {"min_tile_row": 10, "max_tile_row": 11, "min_tile_col": 20, "max_tile_col": 21}

    item_path(out).write_text("{not json")  # unreadable: rebuilt from disk too
    run(recipe, tile=(6, 11, 20))
    limits = load_item(out)["properties"]["tiles:tile_matrix_links"]["WorldCRS84Quad"]["limits"]["6"]
    assert limits == {"min_tile_row": 10, "max_tile_row": 11, "min_tile_col": 20, "max_tile_col": 21}


@pytest.mark.parametrize("write_in", ["workers", "parent"])
def test_item_from_a_process_pool_run(tmp_path, write_in):
    recipe, grid = make_recipe(tmp_path, "geodetic", metatiling=2)
    summary = execute(recipe, executor="processes", workers=2, write_in=write_in)
    assert summary.stac_item == item_path(tmp_path / "out")
    check_item_against_tiles(tmp_path / "out", grid)


def test_a_collection_shared_by_the_recipes_of_two_outputs(tmp_path):
    catalog = tmp_path / "catalog" / "dem.json"
    collection = {"id": "dem-2024", "description": "Elevation products", "license": "CC-BY-4.0",
                  "keywords": ["dem"], "path": str(catalog)}
    first, _ = make_recipe(tmp_path, "geodetic", zooms=(5, 6), out="a",
                           stac={"id": "a", "datetime": "2024-01-01", "collection": collection})
    second, _ = make_recipe(tmp_path, "geodetic", zooms=(6, 6), out="b",
                            stac={"id": "b", "datetime": "2024-06-01", "collection": collection})
    second.write_text(second.read_text().replace(str(tmp_path / "b") + "\n", str(tmp_path / "b.tif") + "\n"))
    one = run(first)
    assert one.stac_collection == catalog and f"STAC collection: {catalog}" in one.describe()
    assert run(second).stac_collection == catalog
    data = json.loads(catalog.read_text())
    validate(data)
    assert data["type"] == "Collection" and data["id"] == "dem-2024" and data["license"] == "CC-BY-4.0"
    items = {link["title"]: link["href"] for link in data["links"] if link["rel"] == "item"}
    assert items == {"a": "../a/a.json", "b": "../b.stac.json"}
    assert data["extent"]["temporal"]["interval"] == [["2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z"]]
    boxes = [json.loads((catalog.parent / href).read_text())["bbox"] for href in items.values()]
    assert data["extent"]["spatial"]["bbox"][0] == [min(b[0] for b in boxes), min(b[1] for b in boxes),
                                                    max(b[2] for b in boxes), max(b[3] for b in boxes)]
    for href in items.values():
        item = json.loads((catalog.parent / href).read_text())
        validate(item)
        assert item["collection"] == "dem-2024"
        back = {link["rel"]: link["href"] for link in item["links"]}
        assert (catalog.parent / href).parent.joinpath(back["collection"]).resolve() == catalog.resolve()
    run(first, zoom=6)                                           # a later run keeps both items
    again = json.loads(catalog.read_text())
    assert sorted(link["title"] for link in again["links"] if link["rel"] == "item") == ["a", "b"]
    assert json.loads(item_path(tmp_path / "a").read_text())["collection"] == "dem-2024"
    with rasterio.open(item_path(tmp_path / "a"), **SKIP) as src:   # GDAL still opens the item
        assert src.count == 1


def test_collection_true_writes_one_beside_the_item(tmp_path):
    recipe, _ = make_recipe(tmp_path, "geodetic", zooms=(6, 6), stac={"collection": True})
    assert run(recipe).stac_collection == tmp_path / "out" / "collection.json"
    validate(json.loads((tmp_path / "out" / "collection.json").read_text()))


@pytest.mark.parametrize("cog", [False, True])
def test_a_single_file_output_gets_an_item(tmp_path, cog):
    recipe, _ = make_recipe(tmp_path, "geodetic", zooms=(6, 6), stac={"id": "one-file", "license": "CC-BY-4.0"},
                            output={"bands": [{"name": "position", "unit": "px"}], "cog": cog})
    recipe.write_text(recipe.read_text().replace(str(tmp_path / "out"), str(tmp_path / "mosaic.tif")))
    summary = run(recipe)
    item_file = tmp_path / "mosaic.stac.json"
    assert summary.stac_item == item_file and f"STAC item: {item_file}" in summary.describe()
    item = json.loads(item_file.read_text())
    schemas = validate(item)
    assert any("projection" in x for x in schemas) and any("raster" in x for x in schemas)
    asset = item["assets"]["data"]
    assert asset["href"] == "./mosaic.tif"
    assert asset["type"].endswith("profile=cloud-optimized") == cog
    assert asset["raster:bands"] == [{"data_type": "float32", "nodata": -9999, "name": "position", "unit": "px"}]
    with rasterio.open(tmp_path / "mosaic.tif") as src:
        assert item["properties"]["proj:shape"] == [src.height, src.width]
        assert item["properties"]["proj:bbox"] == pytest.approx(list(src.bounds), abs=1e-9)
        assert item["bbox"] == pytest.approx(list(src.bounds), abs=1e-7)   # lon/lat already
    assert item["id"] == "one-file" and item["properties"]["license"] == "CC-BY-4.0"
    assert shapely.geometry.shape(item["geometry"]).exterior.is_ccw
    rels = {link["rel"]: link["href"] for link in item["links"]}
    assert rels["ziggurat:manifest"] == "mosaic.tif.ziggurat/manifest.json"
    assert (tmp_path / rels["ziggurat:recipe"]).is_file()
    # rebuilt on demand from the file, keeping id and datetime; indexed; verified
    item_file.unlink()
    again = CliRunner().invoke(main, ["stac", str(tmp_path / "mosaic.tif")])
    assert again.exit_code == 0, again.output
    assert json.loads(item_file.read_text())["assets"]["data"]["raster:bands"] == asset["raster:bands"]
    index = CliRunner().invoke(main, ["index", str(tmp_path / "mosaic.tif"), "--gpkg", "--absolute-paths"])
    assert index.exit_code == 0, index.output
    with rasterio.open(f"GTI:{tmp_path / 'mosaic.index.gpkg'}") as gti, rasterio.open(tmp_path / "mosaic.tif") as src:
        assert gti.driver == "GTI" and gti.read().tolist() == src.read().tolist()   # GDAL opens the index
    assert CliRunner().invoke(main, ["index", str(tmp_path / "mosaic.tif"), "--txt"]).exit_code == 0
    assert (tmp_path / "mosaic.index.txt").read_text() == "mosaic.tif\n"
    vrt = CliRunner().invoke(main, ["index", str(tmp_path / "mosaic.tif"), "--vrt"])
    assert vrt.exit_code == 1 and "one GeoTIFF already" in vrt.output
    checked = CliRunner().invoke(main, ["verify", str(tmp_path / "mosaic.tif")])
    assert checked.exit_code == 0, checked.output


def test_item_is_readable_by_gdal_before_3_8(tmp_path):
    """QGIS on Debian 12 / Ubuntu 22.04 ships GDAL 3.4-3.6: they read TMS 1.0 only and detect
    the driver from a literal "tiled-assets" in the first 32 KiB."""
    recipe, grid = make_recipe(tmp_path, "geodetic", zooms=(5, 6))
    run(recipe)
    text = item_path(tmp_path / "out").read_text()
    assert text.index('"tiled-assets"') < 32768
    tms = json.loads(text)["properties"]["tiles:tile_matrix_sets"]["WorldCRS84Quad"]
    assert tms["supportedCRS"].endswith("CRS84") and "tileMatrices" not in tms
    assert all(m["topLeftCorner"] == [-180, 90] for m in tms["tileMatrix"])


def _system_gdal() -> tuple[int, int] | None:
    import re
    import shutil
    import subprocess

    exe = shutil.which("gdalinfo")
    if exe is None:
        return None
    found = re.search(r"GDAL (\d+)\.(\d+)", subprocess.run([exe, "--version"], capture_output=True,
                                                         text=True).stdout)
    return (int(found[1]), int(found[2])) if found else None


@pytest.mark.skipif(not _system_gdal() or _system_gdal() >= (3, 8),
                    reason="needs a system gdalinfo older than 3.8 (e.g. Debian 12's gdal-bin)")
def test_an_older_system_gdal_opens_the_item(tmp_path):
    import subprocess

    recipe, grid = make_recipe(tmp_path, "geodetic", zooms=(5, 6))
    run(recipe)
    info = subprocess.run(["gdalinfo", str(item_path(tmp_path / "out"))], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    with rasterio.open(item_path(tmp_path / "out")) as ds:  # the bundled GDAL agrees on the size
        assert f"Size is {ds.width}, {ds.height}" in info.stdout
    assert "STACTA" in info.stdout and "Overviews:" in info.stdout


def test_every_raster_run_writes_a_quicklook_and_the_item_lists_it(tmp_path):
    recipe, grid = make_recipe(tmp_path, "geodetic", zooms=(5, 6))
    summary = run(recipe)
    out = tmp_path / "out"
    assert summary.quicklook == out / ".ziggurat" / "quicklook.png"
    item = load_item(out)
    assert item["assets"]["thumbnail"] == {"href": ".ziggurat/quicklook.png", "type": "image/png",
                                           "title": "Quicklook", "roles": ["thumbnail"]}
    validate(item)
    with rasterio.open(summary.quicklook) as png:
        rgba = png.read()
    assert rgba.shape[0] == 4 and max(rgba.shape[1:]) == 512      # a run's quicklook is small
    # the data extent only (the source's footprint, 600 x 500 px at the finest zoom), scaled down
    with rasterio.open(tmp_path / "src_geodetic.tif") as src:
        assert rgba.shape[1:] == (round(src.height * 512 / src.width), 512)
    assert (rgba[3] == 255).all()                       # every pixel holds data: opaque
    # position values grow downwards (row * 1000 + col): viridis runs from dark purple to yellow
    top, bottom = rgba[:3, 5, 5].astype(int), rgba[:3, -5, 5].astype(int)
    assert top.sum() < bottom.sum() and bottom[0] > 200 and top[2] > top[1]
    result = CliRunner().invoke(main, ["quicklook", str(out), "-o", str(tmp_path / "small.png"), "--size", "64",
                                       "--colormap", "greys"])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "small.png") as png:
        small = png.read()
    assert max(small.shape[1:]) == 64 and (small[0] == small[1]).all()   # a grey ramp
    bad = CliRunner().invoke(main, ["quicklook", str(out), "-o", str(tmp_path / "x.png"), "--colormap", "nope"])
    assert bad.exit_code == 1 and "unknown colormap 'nope'" in bad.output
    full = CliRunner().invoke(main, ["quicklook", str(out)])      # on demand: 1024 px by default
    with rasterio.open(summary.quicklook) as png:
        assert full.exit_code == 0 and max(png.shape) == 600        # never larger than the data


def test_no_automatic_quicklook_where_it_would_read_too_many_tiles(tmp_path, monkeypatch):
    from ziggurat.records.catalog import quicklook

    monkeypatch.setattr(quicklook, "RUN_MAX_TILES", 3)
    recipe, _ = make_recipe(tmp_path, "geodetic", zooms=(6, 6))     # 9 tiles, no coarser zoom
    summary = run(recipe)
    assert summary.quicklook is None and "thumbnail" not in load_item(tmp_path / "out")["assets"]
    assert quicklook.tiles_to_read(tmp_path / "out", 512) == 9


def test_quicklook_colormaps_are_rio_tilers_without_importing_it():
    """The quicklook reads rio-tiler's colormap files itself: importing rio_tiler costs every run
    0.7 s (it imports xarray and pandas), so a run must not import it, yet get the same colours."""
    import subprocess
    import sys

    from rio_tiler.colormap import cmap

    from ziggurat.records.catalog.quicklook import colormap_table

    for name in ("viridis", "terrain", "greys_r", "rdylgn"):
        lut = np.zeros((256, 4), np.uint8)
        for value, rgba in cmap.get(name).items():
            lut[int(value)] = rgba
        assert (colormap_table(name) == lut).all(), name
    code = ("import sys, numpy as np; from ziggurat.records.catalog.quicklook import to_rgba; "
            "to_rgba(np.ma.masked_array(np.arange(16.0).reshape(1, 4, 4)), 'terrain'); "
            "print('rio_tiler' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
