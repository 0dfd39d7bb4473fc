"""Zarr outputs: one multiscales store whose chunks (or shards) are the output tiles, written by
the workers; read back by xarray, by GDAL (Zarr v2) and by ziggurat itself as an input; the same
ledger, verify, reproduce and resume as tile directories."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from stac_schemas import validate
from ziggurat import engine
from ziggurat.audit.checks import reproduce, verify
from ziggurat.core.errors import OutputError, RecipeError

from conftest import position_raster
from pyramid_helpers import kill_9_after, recorded_tiles

xr = pytest.importorskip("xarray")
zarr = pytest.importorskip("zarr")

ZIGGURAT = Path(sys.executable).with_name("ziggurat")
# 0.05 degree pixels: geodetic zoom z has 180 / 2^z / 256 degree pixels; the raster spans 3 x 2
# zoom-5 tiles and starts inside one, so edge tiles are partly nodata
LEFT, TOP, RES, W, H = 10.1, 50.3, 180 / 2 ** 6 / 256, 700, 420


def _recipe(tmp: Path, out: str = "out.zarr", *, zooms: str = "[4, 6]", metatiling: int = 1,
            extra: str = "", process: str = "convert", baselevels: str = "", inp: str = "src.tif",
            bounds: str = "") -> Path:
    if not (tmp / "src.tif").exists():
        position_raster(tmp / "src.tif", left=LEFT, top=TOP, res=RES, width=W, height=H, bands=2)
    path = tmp / f"{out.rsplit('/', 1)[-1].replace('.', '_')}{'_remote' if '://' in out else ''}.yaml"
    path.write_text(f"""process: {process}
zoom_levels: {zooms}
pyramid: {{grid: geodetic, metatiling: {metatiling}}}
input: {{inp: {inp}}}
{baselevels}{bounds}output:
  path: {out}
  dtype: float32
  bands: 2
  nodata: -9999
{extra}""")
    return path


def _run(recipe: Path, **kw):
    kw.setdefault("executor", "sequential")
    return engine.execute(recipe, **kw)


def _chunks(store: Path) -> dict[str, str]:
    return {p.relative_to(store).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in store.glob("*/data/**/*") if p.is_file() and p.name not in ("zarr.json", ".zarray", ".zattrs")}


def test_zarr_store_matches_the_tile_directory_pixel_for_pixel(tmp_path):
    _run(_recipe(tmp_path))
    _run(_recipe(tmp_path, "tiles"))
    store, tiles = tmp_path / "out.zarr", tmp_path / "tiles"
    compared = 0
    for zoom in (4, 5, 6):
        ds = xr.open_zarr(store, group=str(zoom), mask_and_scale=False, consolidated=False)
        assert ds.data.dims == ("band", "y", "x")
        for tif in sorted((tiles / str(zoom)).glob("*/*.tif")):
            with rasterio.open(tif) as src:
                expected, b = src.read(), src.bounds
            got = ds.data.sel(x=slice(b.left, b.right), y=slice(b.top, b.bottom)).values
            np.testing.assert_array_equal(got, expected)
            compared += 1
    assert compared >= 8
    # georeferencing: the source pixel (r, c) is where the coordinates say
    ds = xr.open_zarr(store, group="6", mask_and_scale=False)
    x, y = LEFT + 123.5 * RES, TOP - 45.5 * RES
    assert float(ds.data.sel(band=2, x=x, y=y, method="nearest")) == 1_000_000 + 45 * 1000 + 123
    assert float(ds.data.sel(band=1).where(ds.data.sel(band=1) != -9999).min()) == 0


def test_geozarr_metadata_multiscales_proj_and_spatial(tmp_path):
    _run(_recipe(tmp_path))
    root = zarr.open_group(tmp_path / "out.zarr", mode="r")
    attrs = root.attrs.asdict()
    names = {c["name"] for c in attrs["zarr_conventions"]}
    assert names == {"multiscales", "proj:", "spatial:"}
    layout = attrs["multiscales"]["layout"]
    assert [entry["asset"] for entry in layout] == ["4", "5", "6"]
    assert layout[0]["derived_from"] == "5" and layout[0]["transform"]["scale"] == [2.0, 2.0]
    assert attrs["proj:code"] == "OGC:CRS84"
    level = zarr.open_group(tmp_path / "out.zarr", path="6", mode="r").attrs.asdict()
    t = level["spatial:transform"]
    assert t[0] == RES and t[4] == -RES
    assert level["spatial:shape"] == list(root["6/data"].shape[1:])
    # the array covers the recipe's area snapped to tiles, not the whole world
    assert root["6/data"].shape[1] <= 4 * 256 and root["6/data"].chunks == (2, 256, 256)
    # consolidated: one read of the root document lists every level
    consolidated = json.loads((tmp_path / "out.zarr" / "zarr.json").read_text())["consolidated_metadata"]
    assert {"4/data", "5/data", "6/data", "6/x", "6/y"} <= set(consolidated["metadata"])


def test_zarr_v2_store_is_read_by_gdal_and_v3_is_not(tmp_path):
    """rasterio's GDAL (3.10) reads Zarr v2 with x/y coordinates and _CRS, but its Zarr v3 reader
    predates the final codec names ("bytes"): stores for GDAL 3.10 users need zarr_format: 2."""
    _run(_recipe(tmp_path, "v2.zarr", extra="  zarr_format: 2\n"))
    _run(_recipe(tmp_path, "v3.zarr"))
    expected = xr.open_zarr(tmp_path / "v2.zarr", group="6", mask_and_scale=False).data.values
    with rasterio.open(f'ZARR:"{tmp_path / "v2.zarr"}":/6/data') as src:
        assert src.crs.to_string() in ("OGC:CRS84", "EPSG:4326")
        assert src.transform.a == RES and src.count == 2 and src.nodata == -9999
        np.testing.assert_array_equal(src.read(), expected)
        level = zarr.open_group(tmp_path / "v2.zarr", path="6", mode="r").attrs.asdict()
        assert list(src.transform)[:6] == level["spatial:transform"]
    np.testing.assert_array_equal(expected, xr.open_zarr(tmp_path / "v3.zarr", group="6",
                                                         mask_and_scale=False).data.values)
    with pytest.raises(rasterio.errors.RasterioIOError, match="codec"):
        rasterio.open(f'ZARR:"{tmp_path / "v3.zarr"}":/6/data')


@pytest.mark.parametrize("extra", ["", "  metatiling: 2\n  shard: true\n"], ids=["chunks", "shards"])
def test_same_bytes_for_every_executor_and_worker_count(tmp_path, extra):
    runs = {}
    for name, kw in [("seq", {"executor": "sequential"}), ("threads", {"executor": "threads", "workers": 2}),
                     ("procs", {"executor": "processes", "workers": 2}),
                     ("parent", {"executor": "processes", "workers": 2, "write_in": "parent"})]:
        recipe = _recipe(tmp_path, f"{name}.zarr", metatiling=2, extra=extra)
        _run(recipe, **kw)
        runs[name] = _chunks(tmp_path / f"{name}.zarr")
    assert runs["seq"] and all(r == runs["seq"] for r in runs.values())
    if "shard" in extra:   # one object per 2 x 2 tiles, with 256 px inner chunks
        arr = zarr.open_array(tmp_path / "seq.zarr", path="6/data", mode="r")
        assert arr.shards == (2, 512, 512) and arr.chunks == (2, 256, 256)


def test_verify_reproduce_and_tampering(tmp_path):
    recipe = _recipe(tmp_path)
    _run(recipe, zoom=6)
    _run(recipe)
    store = tmp_path / "out.zarr"
    result = verify(store)
    assert result.ok and result.identical == len(_chunks(store)) and not result.extra
    again = reproduce(store, to=tmp_path / "again.zarr")
    assert again.ok, again.describe()
    chunk = next(p for p in sorted(store.glob("6/data/c/0/*/*")))
    chunk.write_bytes(chunk.read_bytes()[:-1] + b"\0")
    (chunk.parent / "99").write_bytes(b"stray")
    result = verify(store)
    assert [r.path for r, _ in result.changed] == [chunk.relative_to(store).as_posix()]
    assert result.extra == [(chunk.parent / "99").relative_to(store).as_posix()]


def test_continue_mode_and_overviews_from_baselevels(tmp_path):
    baselevels = "baselevels: {min: 6, max: 6}\n"
    recipe = _recipe(tmp_path, baselevels=baselevels)
    first = _run(recipe, executor="processes", workers=2)
    assert first.written > 0
    second = _run(recipe)
    assert second.written == 0 and second.skipped == first.written + first.empty
    _run(_recipe(tmp_path, "tiles", baselevels=baselevels))
    ds = xr.open_zarr(tmp_path / "out.zarr", group="4", mask_and_scale=False)
    with rasterio.open(next((tmp_path / "tiles" / "4").glob("*/*.tif"))) as src:
        b = src.bounds
        np.testing.assert_array_equal(ds.data.sel(x=slice(b.left, b.right), y=slice(b.top, b.bottom)).values,
                                      src.read())


def test_zarr_store_as_input_of_another_recipe(tmp_path):
    _run(_recipe(tmp_path))
    _run(_recipe(tmp_path, "copy", inp="out.zarr"))
    _run(_recipe(tmp_path, "tiles"))
    copies = sorted((tmp_path / "copy").glob("*/*/*.tif"))
    assert len(copies) == len(list((tmp_path / "tiles").glob("*/*/*.tif"))) > 0
    for tif in copies:
        with rasterio.open(tif) as a, rasterio.open(tmp_path / "tiles" / tif.relative_to(tmp_path / "copy")) as b:
            np.testing.assert_array_equal(a.read(), b.read())
    # a tile's key covers the chunks it read: the copy's ledger names them as dependencies
    engine_sources = engine.load(_recipe(tmp_path, "copy", inp="out.zarr"))
    from ziggurat.io import open_input

    src = open_input(engine_sources.inputs["inp"], engine_sources.grid)
    tile = engine_sources.grid.tile_at(LEFT + 1, TOP - 1, 6)
    assert src.sources(tile)
    assert all("/data/c/0/" in str(path) for path, _ in src.sources(tile))


def test_stac_item_of_the_store(tmp_path):
    summary = _run(_recipe(tmp_path))
    item = json.loads(Path(summary.stac_item).read_text())
    assert Path(summary.stac_item).parent == tmp_path / "out.zarr"
    assert len(validate(item)) == 3   # core, projection, raster
    asset = item["assets"]["data"]
    assert asset["href"] == "./" and asset["type"] == "application/vnd+zarr; version=3"
    assert [b["data_type"] for b in asset["raster:bands"]] == ["float32", "float32"]
    west, south, east, north = item["bbox"]
    assert west == pytest.approx(LEFT) and north == pytest.approx(TOP)
    assert east == pytest.approx(LEFT + W * RES) and south == pytest.approx(TOP - H * RES)


@pytest.mark.parametrize("extra,match", [
    ("  compress: deflate\n", r"output\.compress: expected one of zstd, none for a Zarr store"),
    ("  zarr_format: 2\n  shard: true\n", r"output\.shard: expected zarr_format 3"),
    ("  zarr_format: 4\n", r"output\.zarr_format: expected 2 or 3"),
    ("  format: GTiff\n", r"output\.format: expected Zarr for a path ending in \.zarr"),
])
def test_bad_zarr_settings_name_the_key(tmp_path, extra, match):
    with pytest.raises(RecipeError, match=match):
        engine.load(_recipe(tmp_path, extra=extra))


def test_zarr_options_are_refused_for_other_formats(tmp_path):
    with pytest.raises(RecipeError, match=r"output\.shard.*Zarr stores only"):
        engine.load(_recipe(tmp_path, "tiles", extra="  shard: true\n"))


def test_another_area_is_refused_without_overwrite(tmp_path):
    _run(_recipe(tmp_path))
    wider = _recipe(tmp_path, bounds="bounds: [0, 30, 30, 60]\n")
    with pytest.raises(OutputError, match="other settings.*extent"):
        _run(wider)
    _run(wider, overwrite=True)
    assert zarr.open_array(tmp_path / "out.zarr", path="4/data", mode="r").shape[2] > 2 * 256


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_uninterrupted_store(tmp_path):
    slow = tmp_path / "slow.py"
    slow.write_text("import time\nfrom ziggurat_processes.convert import execute as convert\n\n"
                    "def execute(inp):\n    time.sleep(0.05)\n    return convert(inp)\n")
    recipe = _recipe(tmp_path, zooms="[4, 8]", process="slow.py")
    ref = _recipe(tmp_path, "ref.zarr", zooms="[4, 8]")
    engine.execute(ref, executor="processes", workers=2)
    command = [str(ZIGGURAT), "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"]
    kill_9_after(command, tmp_path / "out.zarr", 10)
    assert 10 <= recorded_tiles(tmp_path / "out.zarr")
    subprocess.run(command, capture_output=True, text=True, check=True)
    assert _chunks(tmp_path / "out.zarr") == _chunks(tmp_path / "ref.zarr")
    assert verify(tmp_path / "out.zarr").ok
    leftovers = [p for p in (tmp_path / "out.zarr").rglob("*") if p.name.startswith(".tmp-")
                 or (p.parent.name == "tmp" and p.parent.parent.name == ".ziggurat")]
    assert leftovers == []


def test_zarr_store_on_object_storage(tmp_path, bucket, monkeypatch):
    """Workers PUT their chunks, the parent the documents; zarr-python reads the bucket through
    obstore, chunk for chunk what a local run writes; a rerun from a fresh state resumes."""
    obstore = pytest.importorskip("obstore")
    from conftest import S3_ENV

    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "state"))
    _run(_recipe(tmp_path, "local.zarr"), executor="processes", workers=2)
    remote = _recipe(tmp_path, f"s3://{bucket}/out.zarr")
    first = _run(remote, executor="processes", workers=2)
    assert first.written > 0
    store = obstore.store.S3Store(bucket, endpoint=S3_ENV["AWS_ENDPOINT_URL"], access_key_id="test-key",
                                  secret_access_key="test-secret", region="us-east-1",
                                  client_options={"allow_http": True})
    listed = {o["path"] for batch in obstore.list(store, prefix="out.zarr/") for o in batch}
    local = _chunks(tmp_path / "local.zarr")
    assert {f"out.zarr/{k}" for k in local} <= listed
    for key, sha in local.items():
        assert hashlib.sha256(bytes(obstore.get(store, f"out.zarr/{key}").bytes())).hexdigest() == sha
    group = zarr.open_group(zarr.storage.ObjectStore(store, read_only=True), path="out.zarr", mode="r")
    np.testing.assert_array_equal(group["6/data"][:], zarr.open_array(tmp_path / "local.zarr", path="6/data")[:])
    report = verify(f"s3://{bucket}/out.zarr")   # the groups, documents and coordinates are no stray tiles
    assert report.ok and not report.extra, report.extra
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "elsewhere"))   # another machine
    again = _run(remote)
    assert again.written == 0 and again.skipped == first.written + first.empty


def test_commands_on_a_store_rebuild_its_item_or_say_what_reads_it(tmp_path):
    from ziggurat.core.errors import OutputError
    from ziggurat.records.catalog.quicklook import make_quicklook
    from ziggurat.records.catalog.stac import build_item
    from ziggurat.serve import target

    summary = _run(_recipe(tmp_path, extra="  stac: {id: elevation, license: CC-BY-4.0}\n"))
    item = Path(summary.stac_item)
    item.unlink()
    rebuilt = build_item(tmp_path / "out.zarr")
    assert rebuilt == item and json.loads(item.read_text())["assets"]["data"]["href"] == "./"
    with pytest.raises(OutputError, match="Zarr store"):
        make_quicklook(tmp_path / "out.zarr")
    with pytest.raises(OutputError, match="xarray"):
        target(tmp_path / "out.zarr")


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_xarray_masks_nodata_with_no_options(tmp_path, zarr_format):
    """The arrays carry `_FillValue` (CF): xarray's default decoding turns nodata into NaN
    (without it, zoom 4 showed raw -9999 values)."""
    _run(_recipe(tmp_path, extra=f"  zarr_format: {zarr_format}\n"))
    for zoom in ("4", "6"):
        raw = xr.open_zarr(tmp_path / "out.zarr", group=zoom, mask_and_scale=False, consolidated=False).data.values
        decoded = xr.open_zarr(tmp_path / "out.zarr", group=zoom, consolidated=False).data.values
        assert (raw == -9999).any() and not (decoded == -9999).any()
        assert np.array_equal(np.isnan(decoded), raw == -9999)
