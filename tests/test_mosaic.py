"""Mosaic inputs: many files read as one, priority fall-through, mixed grids, index, provenance."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from click.testing import CliRunner

from ziggurat.cli import main
from ziggurat.core.errors import InputError, RecipeError
from ziggurat.core.grid import Grid
from ziggurat.engine.run import execute
from ziggurat.io import MosaicInput, open_input
from ziggurat.recipe import load_recipe
from ziggurat.records.provenance import read_manifest

from conftest import position_raster

Z = 8
RES = 180 / 2**Z / 256                      # geodetic zoom-8 pixel
GRID = Grid.from_name("geodetic")
ANCHOR = GRID.tile(Z, 50, 300).bounds       # the DEMs start at this tile's corner: pixel-aligned
ND = -9999.0


def _write(path: Path, left: float, top: float, res: float, data: np.ndarray, crs: str = "EPSG:4326",
           nodata: float | None = ND) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs=crs, transform=Affine(res, 0, left, 0, -res, top), nodata=nodata) as dst:
        dst.write(data[np.newaxis])
    return path


def make_dems(folder: Path) -> dict[str, np.ndarray]:
    """fixes: a 64 x 64 patch (value 7); fabdem: 512 x 512, values encode row/col, a nodata hole;
    glo30: 2x coarser, covering everything (50000 + 10 * its row)."""
    folder.mkdir(exist_ok=True)
    rows, cols = np.mgrid[0:512, 0:512]
    fabdem = (rows * 1000 + cols).astype("float32")
    fabdem[100:150, 300:400] = ND
    fixes = np.full((64, 64), 7.0, "float32")
    glo = (50000 + np.mgrid[0:260, 0:260][0] * 10).astype("float32")
    _write(folder / "fabdem.tif", ANCHOR.left, ANCHOR.top, RES, fabdem)
    _write(folder / "fixes.tif", ANCHOR.left + 320 * RES, ANCHOR.top - 110 * RES, RES, fixes)
    _write(folder / "glo30.tif", ANCHOR.left - 4 * RES, ANCHOR.top + 4 * RES, 2 * RES, glo)
    return {"fabdem": fabdem, "fixes": fixes, "glo30": glo}


def expected(dems: dict[str, np.ndarray], priority: str) -> np.ndarray:
    """The composite on fabdem's 512 x 512 pixels, computed by hand."""
    glo = np.repeat(np.repeat(dems["glo30"], 2, axis=0), 2, axis=1)[4:516, 4:516]   # nearest, aligned
    fixes = np.full((512, 512), np.nan, "float32")
    fixes[110:174, 320:384] = dems["fixes"]
    fab = np.where(dems["fabdem"] == ND, np.nan, dems["fabdem"])
    layers = [fixes, fab, glo] if priority == "first" else [glo, fab, fixes]
    out = np.full((512, 512), np.nan, "float32")
    for layer in layers:
        out = np.where(np.isnan(out), layer, out)
    return out


def _recipe(folder: Path, mosaic: str, priority: str = "first", out: str = "out.tif", extra: str = "") -> Path:
    b = (ANCHOR.left, ANCHOR.top - 512 * RES, ANCHOR.left + 512 * RES, ANCHOR.top)
    path = folder / "recipe.yaml"
    path.write_text(textwrap.dedent(f"""\
        process: convert
        zoom_levels: {Z}
        pyramid: {{grid: geodetic}}
        input:
          inp:
            mosaic: {mosaic}
            priority: {priority}
        output: {{path: {out}, dtype: float32, nodata: {ND}}}
        bounds: [{b[0]}, {b[1]}, {b[2]}, {b[3]}]
        """) + extra)
    return path


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        data = src.read(1)
    return np.where(data == ND, np.nan, data)


@pytest.mark.parametrize("priority", ["first", "last"])
def test_priority_falls_through_nodata_across_resolutions(tmp_path, priority):
    dems = make_dems(tmp_path / "dem")
    recipe = _recipe(tmp_path, "[dem/fixes.tif, dem/fabdem.tif, dem/glo30.tif]", priority)
    summary = execute(recipe, executor="processes", workers=2)
    assert summary.ok
    np.testing.assert_array_equal(_read(tmp_path / "out.tif"), expected(dems, priority))


def test_globs_and_the_shorthand_list_agree_and_workers_do_not_matter(tmp_path):
    make_dems(tmp_path / "dem")
    (tmp_path / "dem" / "a").mkdir()
    for name in ("fixes", "fabdem"):
        (tmp_path / "dem" / f"{name}.tif").rename(tmp_path / "dem" / "a" / f"{name}.tif")
    recipe = _recipe(tmp_path, "[dem/a/fixes.tif, dem/a/fab*.tif, dem/glo*.tif]", out="one.tif")
    execute(recipe, executor="sequential")
    short = tmp_path / "short.yaml"
    short.write_text(recipe.read_text().replace("    mosaic: [dem/a/fixes.tif, dem/a/fab*.tif, dem/glo*.tif]\n"
                                                "    priority: first\n", "").replace(
        "  inp:\n", "  inp: [dem/a/fixes.tif, dem/a/fab*.tif, dem/glo*.tif]\n").replace("one.tif", "two.tif"))
    execute(short, executor="threads", workers=2)
    assert (tmp_path / "one.tif").read_bytes() == (tmp_path / "two.tif").read_bytes()


def test_members_in_other_crss_are_reprojected(tmp_path):
    dems = make_dems(tmp_path / "dem")
    from rasterio.warp import transform_bounds

    # glo30 again, in Web Mercator, covering the whole area: the hole is filled with its values
    merc = transform_bounds("EPSG:4326", "EPSG:3857", ANCHOR.left - 0.1, ANCHOR.top - 2.0, ANCHOR.left + 2.0,
                            ANCHOR.top + 0.1)
    res = (merc[2] - merc[0]) / 400
    _write(tmp_path / "dem" / "merc.tif", merc[0], merc[3], res, np.full((400, 400), 123.0, "float32"),
           crs="EPSG:3857")
    recipe = _recipe(tmp_path, "[dem/fabdem.tif, dem/merc.tif]")
    execute(recipe, executor="sequential")
    got = _read(tmp_path / "out.tif")
    fab = dems["fabdem"]
    assert np.array_equal(got[fab != ND], fab[fab != ND])
    assert np.all(got[fab == ND] == 123.0)


def test_read_sources_says_which_member_won_each_pixel(tmp_path):
    make_dems(tmp_path / "dem")
    recipe = load_recipe(_recipe(tmp_path, "[dem/fixes.tif, dem/fabdem.tif, dem/glo30.tif]"))
    mosaic = open_input(recipe.inputs["inp"], recipe.grid)
    assert isinstance(mosaic, MosaicInput) and mosaic.tile_sources
    tile = recipe.grid.tile(Z, 50, 301)                      # holds the patch, the hole and plain fabdem
    data, winner = mosaic.for_tile(tile).read_sources(1)
    names = [Path(m.path).stem for m in mosaic.members]
    assert {names[i] for i in np.unique(winner) if i >= 0} == {"fixes", "fabdem", "glo30"}
    assert np.all(data[winner == names.index("fixes")] == 7.0)
    assert np.all(data[winner == names.index("glo30")] >= 50000)
    assert [Path(p).stem for p in mosaic.for_tile(tile).members] == ["fixes", "fabdem", "glo30"]
    far = recipe.grid.tile(Z, 40, 200)
    assert mosaic.for_tile(far).is_empty() and mosaic.sources(far) == []
    mosaic.close()


def test_a_glob_that_matches_nothing_names_the_pattern_and_the_line(tmp_path):
    make_dems(tmp_path / "dem")
    recipe = _recipe(tmp_path, "[dem/fabdem.tif, dem/nothing/*.tif]")
    with pytest.raises(RecipeError, match=r"recipe.yaml:6: input.inp.mosaic\[1\].path: "
                                          r"the pattern 'dem/nothing/\*.tif' matches no file"):
        load_recipe(recipe)


def test_a_mapping_without_path_or_mosaic_is_a_group_and_its_members_are_checked(tmp_path, write_recipe):
    make_dems(tmp_path / "dem")
    recipe = _recipe(tmp_path, "[dem/fabdem.tif]")
    recipe.write_text(recipe.read_text().replace("    mosaic: [dem/fabdem.tif]\n", "    group: [a, b]\n"))
    # a mapping of names is a group of inputs (mapchete's), and a list in it a mosaic: its files are named
    with pytest.raises(RecipeError, match=r"input\.inp\.group\.mosaic\[0\]\.path: input not found: .*/a "):
        load_recipe(recipe)


def test_an_unreadable_member_is_named_and_keep_going_fails_only_its_tiles(tmp_path):
    make_dems(tmp_path / "dem")
    (tmp_path / "dem" / "broken.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="broken.tif"):   # its footprint is unknown: the run cannot start
        execute(_recipe(tmp_path, "[dem/broken.tif, dem/fabdem.tif]"), executor="sequential")
    # a vector index gives footprints without opening the files: the tiles it meets fail
    schema = {"geometry": "Polygon", "properties": {"location": "str"}}
    t = GRID.tile(Z, 50, 300).bounds
    with fiona.open(tmp_path / "dem" / "index.gpkg", "w", driver="GPKG", schema=schema, crs="EPSG:4326") as dst:
        dst.write({"geometry": shapely.geometry.mapping(shapely.box(*t)), "properties": {"location": "broken.tif"}})
        full = (ANCHOR.left, ANCHOR.top - 512 * RES, ANCHOR.left + 512 * RES, ANCHOR.top)
        dst.write({"geometry": shapely.geometry.mapping(shapely.box(*full)), "properties": {"location": "fabdem.tif"}})
    recipe = _recipe(tmp_path, "[dem/index.gpkg]", out="tiles")
    summary = execute(recipe, executor="sequential", keep_going=True)
    assert [tuple(o.index) for o in summary.failed] == [(Z, 50, 300)]
    assert "broken.tif" in summary.failed[0].error
    assert summary.written == 3


def test_members_are_fingerprinted_and_a_changed_member_stales_only_its_tiles(tmp_path):
    make_dems(tmp_path / "dem")
    recipe = _recipe(tmp_path, "[dem/fixes.tif, dem/fabdem.tif, dem/glo30.tif]", out="tiles")
    first = execute(recipe, executor="sequential")
    fp = read_manifest(tmp_path / "tiles")["inputs"]["inp"]["fingerprint"]
    assert fp["kind"] == "mosaic" and fp["members"] == 3 and len(fp["sha256"]) == 64
    assert execute(recipe, executor="sequential").skipped == first.total
    _write(tmp_path / "dem" / "fixes.tif", ANCHOR.left + 320 * RES, ANCHOR.top - 110 * RES, RES,
           np.full((64, 64), 8.0, "float32"))
    summary = execute(recipe, executor="sequential")
    assert summary.stale == {"input files it reads changed": 1} and summary.skipped == first.total - 1
    assert read_manifest(tmp_path / "tiles")["inputs"]["inp"]["fingerprint"]["sha256"] != fp["sha256"]


def test_the_index_is_cached_so_reruns_do_not_reopen_headers(tmp_path, caplog):
    make_dems(tmp_path / "dem")
    recipe = _recipe(tmp_path, "[dem/*.tif]", out="tiles")
    import ziggurat.io.inputs.mosaic_index as mi

    mi._SEEN.clear()
    with caplog.at_level(logging.INFO, logger="ziggurat.io.inputs.mosaic_index"):
        execute(recipe, executor="sequential")
    assert "read 3 of 3 member headers" in caplog.text
    assert list((tmp_path / "tiles" / ".ziggurat" / "cache").glob("mosaic-inp-*.json"))
    mi._SEEN.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ziggurat.io.inputs.mosaic_index"):
        execute(recipe, executor="sequential", overwrite=True)
    assert "member headers" not in caplog.text


def _native(folder: Path, out: str) -> tuple[Path, np.ndarray, Path]:
    """A 700 x 500 DEM at 1/1200 degree and a convert recipe onto its own grid into `out`."""
    src = folder / "dem.tif"
    data = position_raster(src, left=7.123, top=46.001, res=1 / 1200, width=700, height=500)
    recipe = folder / "native.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        process: convert
        zoom_levels: [0, 1]
        pyramid: {{grid: {{like: inp}}}}
        input: {{inp: dem.tif}}
        output: {{path: {out}, dtype: float32, nodata: -9999}}
        """))
    return src, data, recipe


def test_a_native_grid_reproduces_the_source_pixels_exactly(tmp_path):
    src, data, recipe = _native(tmp_path, "out.tif")
    grid = load_recipe(recipe).grid
    assert grid.tms.maxzoom == 1 and grid.resolution(1) == pytest.approx((1 / 1200, 1 / 1200))
    result = CliRunner().invoke(main, ["execute", str(recipe), "-z", "1", "--no-progress", "-e", "sequential"])
    assert result.exit_code == 0, result.output
    with rasterio.open(src) as a, rasterio.open(tmp_path / "out.tif") as b:
        assert b.transform == a.transform and b.shape == a.shape and b.crs == a.crs
        np.testing.assert_array_equal(b.read(), a.read())
    assert np.array_equal(data[0], rasterio.open(tmp_path / "out.tif").read(1))


def test_a_cog_keeps_the_predictor_and_the_creation_options(tmp_path):
    make_dems(tmp_path / "dem")
    sizes = {}
    for name, extra in (("plain", ""), ("zlevel", "    creation_options: {zlevel: 9}\n")):
        recipe = _recipe(tmp_path, "[dem/fixes.tif, dem/fabdem.tif, dem/glo30.tif]", out=f"{name}.tif")
        text = recipe.read_text().replace(f"output: {{path: {name}.tif, dtype: float32, nodata: {ND}}}",
                                          f"output:\n    path: {name}.tif\n    dtype: float32\n    nodata: {ND}\n"
                                          f"    cog: true\n{extra}")
        recipe.write_text(text)
        assert execute(recipe, executor="sequential").ok
        with rasterio.open(tmp_path / f"{name}.tif") as src:
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "3"   # floating point
            np.testing.assert_array_equal(np.where(src.read(1) == ND, np.nan, src.read(1)),
                                          expected(make_dems(tmp_path / "check"), "first"))
        sizes[name] = (tmp_path / f"{name}.tif").stat().st_size
    assert sizes["zlevel"] <= sizes["plain"]


def test_the_merge_dem_recipe_keeps_the_main_pixels_and_fills_its_gap(tmp_path):
    from conftest import REPO

    recipe = REPO / "recipes" / "merge_dem.yaml"
    result = CliRunner().invoke(main, ["execute", str(recipe), "--no-progress", "-e", "sequential"],
                                env={"ZIGGURAT_OUTPUT": str(tmp_path)})
    assert result.exit_code == 0, result.output
    data = REPO / "recipes" / "data" / "merge"
    with rasterio.open(tmp_path / "merge_dem.tif") as out, rasterio.open(data / "dem_main.tif") as dem, \
            rasterio.open(data / "dem_patch.tif") as patch:
        assert out.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and out.res == dem.res
        assert (out.transform.c, out.transform.f) == (dem.transform.c, dem.transform.f)  # its pixel grid
        merged = out.read(1)[:dem.height, :dem.width]
        main_px, patch_px = dem.read(1), patch.read(1)
    won = main_px != ND
    won[100:148, 100:148] = False
    np.testing.assert_array_equal(merged[won], main_px[won])              # no resampling of the main DEM
    np.testing.assert_array_equal(merged[100:148, 100:148], patch_px)     # the corrections win
    assert (merged[150:210, 200:280] != ND).all()                         # the gap is filled


def test_a_native_grid_tile_directory_opens_through_its_stac_item(tmp_path):
    from ziggurat.records.catalog.parts import item_path

    src, data, recipe = _native(tmp_path, "tiles")
    assert execute(recipe, executor="sequential").ok
    with rasterio.open(item_path(tmp_path / "tiles"), SKIP_MISSING_METATILE="YES") as item, \
            rasterio.open(src) as dem:
        assert item.driver == "STACTA" and item.res == pytest.approx(dem.res)
        assert (item.transform.c, item.transform.f) == pytest.approx((dem.transform.c, dem.transform.f))
        np.testing.assert_array_equal(item.read(1)[:500, :700], data[0])


def test_masks_fall_through_like_nodata(tmp_path):
    dems = make_dems(tmp_path / "dem")
    # fabdem again without a nodata value: its gap is an internal mask instead
    with rasterio.open(tmp_path / "dem" / "fabdem.tif") as src:
        profile, band = src.profile, src.read(1)
    profile.update(nodata=None)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), \
            rasterio.open(tmp_path / "dem" / "masked.tif", "w", **profile) as dst:
        dst.write(np.where(band == ND, 0, band)[np.newaxis])
        dst.write_mask(np.where(band == ND, 0, 255).astype("uint8"))
    recipe = _recipe(tmp_path, "[dem/fixes.tif, dem/masked.tif, dem/glo30.tif]")
    execute(recipe, executor="sequential")
    np.testing.assert_array_equal(_read(tmp_path / "out.tif"), expected(dems, "first"))


def test_a_native_grid_like_a_mosaic_covers_every_member(tmp_path):
    """`grid: {like: <mosaic>}` takes its pixels from the first file and its extent from all of them
    (it covered the first file only: the run wrote 1 of the mosaic's tiles and exited 0)."""
    west = position_raster(tmp_path / "west.tif", left=7.0, top=46.0, res=1 / 1200, width=300, height=200)
    east = position_raster(tmp_path / "east.tif", left=7.25, top=45.9, res=1 / 1200, width=300, height=200)
    recipe = tmp_path / "like_mosaic.yaml"
    recipe.write_text(textwrap.dedent("""\
        process: convert
        zoom_levels: [1, 1]
        pyramid: {grid: {like: inp}}
        input: {inp: [west.tif, east.tif]}
        output: {path: out.tif, dtype: float32, nodata: -9999}
        """))
    grid = load_recipe(recipe).grid
    assert grid.resolution(1) == pytest.approx((1 / 1200, 1 / 1200))
    assert execute(recipe, executor="sequential").ok
    with rasterio.open(tmp_path / "out.tif") as out:
        assert out.bounds.left <= 7.0 and out.bounds.right >= 7.25 + 300 / 1200
        assert out.bounds.top >= 46.0 and out.bounds.bottom <= 45.9 - 200 / 1200
        for data, left, top in ((west, 7.0, 46.0), (east, 7.25, 45.9)):   # both, pixel for pixel
            row, col = out.index(left + 0.5 / 1200, top - 0.5 / 1200)
            window = out.read(1, window=rasterio.windows.Window(col, row, 300, 200))
            np.testing.assert_array_equal(window, data[0])


def test_convert_leaves_resampling_to_each_mosaic_source_unless_given(tmp_path):
    """A source's `resampling:` wins over convert's default (convert's own `nearest` used to win,
    so a merge recipe asking for bilinear got nearest neighbours)."""
    position_raster(tmp_path / "src.tif", left=7.0, top=46.0, res=1 / 1000, width=400, height=300)

    def run(name: str, source: str, params: str) -> np.ndarray:
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(textwrap.dedent(f"""\
            process: convert
            zoom_levels: [9, 9]
            pyramid: {{grid: geodetic}}
            input: {{inp: [{source}]}}
            output: {{path: {name}, dtype: float32, nodata: -9999}}
            process_parameters: {{{params}}}
            """))
        assert execute(recipe, executor="sequential").ok
        tiles = sorted((tmp_path / name / "9").rglob("*.tif"))
        return np.stack([rasterio.open(p).read(1) for p in tiles])

    by_source = run("by_source", "{path: src.tif, resampling: bilinear}", "")
    assert np.array_equal(by_source, run("given", "src.tif", "resampling: bilinear"))
    nearest = run("nearest", "{path: src.tif, resampling: bilinear}", "resampling: nearest")
    assert not np.array_equal(by_source, nearest)   # a name given to the process still wins
    assert np.array_equal(nearest, run("default", "src.tif", ""))   # no setting anywhere: nearest
