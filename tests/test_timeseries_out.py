"""Time series out: `output.time` fixes a run's steps, a process returns (time, band, y, x), and a
Zarr store holds them along a CF-encoded `time` axis that xarray decodes without options; the
ledger, verify, resume and overviews treat a tile's steps as one stored object."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ziggurat import engine
from ziggurat.audit.checks import reproduce, verify
from ziggurat.core.errors import RecipeError
from ziggurat.core.timesteps import TimeSteps
from ziggurat.recipe import load_recipe

from conftest import position_raster
from pyramid_helpers import kill_9_after

xr = pytest.importorskip("xarray")
ZIGGURAT = Path(sys.executable).with_name("ziggurat")

LEFT, TOP, RES, W, H = 10.1, 50.3, 180 / 2 ** 6 / 256, 300, 200

#: step t of pixel (r, c) holds t * 1e6 + the source value (r * 1000 + c), band b adds b * 1e5
SERIES = '''
import numpy as np


def execute(inp, time_steps, tile):
    data = inp.read()
    if data.mask.all():
        return None
    steps = np.arange(len(time_steps), dtype="float32")[:, None, None, None] * 1e6
    bands = np.arange(2, dtype="float32")[None, :, None, None] * 1e5
    return data[None, :1] + steps + bands
'''


def _recipe(tmp: Path, *, time: str = "{start: 2024-01-01, end: 2024-12-31, every: 1 month}",
            out: str = "series.zarr", zooms: str = "[5, 6]", extra: str = "") -> Path:
    if not (tmp / "src.tif").exists():
        position_raster(tmp / "src.tif", left=LEFT, top=TOP, res=RES, width=W, height=H)
    (tmp / "series.py").write_text(SERIES)
    path = tmp / "series.yaml"
    path.write_text(f"process: series.py\nzoom_levels: {zooms}\npyramid: {{grid: geodetic}}\n"
                    f"input: {{inp: src.tif}}\n{extra}output:\n  path: {out}\n  dtype: float32\n  bands: 2\n"
                    f"  nodata: -9999\n  time: {time}\n")
    return path


def test_time_steps_from_every_and_from_intervals():
    monthly = TimeSteps.parse({"start": dt.date(2024, 1, 31), "end": dt.date(2024, 12, 31), "every": "1 month"})
    assert len(monthly) == 12 and monthly[1].start.date() == dt.date(2024, 2, 29)   # the day kept where it exists
    assert monthly[-1].end == dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    sixteen = TimeSteps.parse({"start": "2024-01-01", "end": "2024-02-10", "every": "16 days"})
    assert sixteen.labels == ["2024-01-01", "2024-01-17", "2024-02-02"]
    assert sixteen[-1].end == dt.datetime(2024, 2, 11, tzinfo=dt.timezone.utc)      # cut at the end's day
    listed = TimeSteps.parse(["2003-01-01/2003-12-31", "2007-06-01/2007-06-30", dt.date(2011, 5, 5)])
    assert listed.labels == ["2003-01-01", "2007-06-01", "2011-05-05"]
    assert TimeSteps.from_json(listed.to_json()) == listed


@pytest.mark.parametrize("time, where, expected", [
    ("{start: 2024-01-01, end: 2024-12-31, every: 1 fortnight}", "output.time.every", "a duration such as"),
    ("{start: 2024-01-01, end: 2023-12-31, every: 1 month}", "output.time.end", "an end after the start"),
    ("{start: 2024-01-01, every: 1 month}", "output.time.end", "missing key 'end'"),
    ("[2024-01-01/2024-03-31, 2024-03-01/2024-04-30]", "output.time[1]", "without overlap"),
    ("{start: 2024-01-01, end: 2024-12-31, every: 1 month, step: 2}", "output.time.step", "unknown key"),
])
def test_a_bad_time_axis_names_its_line_and_key(tmp_path, time, where, expected):
    recipe = _recipe(tmp_path, time=time)
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    message = str(info.value)
    assert "series.yaml:" in message and where in message and expected in message


@pytest.mark.parametrize("out, holder", [("one.tif", "one file"), ("tiles.png", "format PNG")])
def test_a_time_axis_needs_a_zarr_store_or_a_geotiff_tile_directory(tmp_path, out, holder):
    recipe = _recipe(tmp_path, out=out.replace(".png", ""))
    if out.endswith(".png"):
        recipe.write_text(recipe.read_text().replace("  time:", "  format: PNG\n  time:").replace("float32", "uint16")
                          .replace("-9999", "0"))
    with pytest.raises(RecipeError, match=f"a Zarr store or a tile directory .*; {holder} holds one image per tile"):
        load_recipe(recipe)


def test_the_store_holds_every_step_with_a_decoded_time_axis(tmp_path):
    summary = engine.execute(_recipe(tmp_path), executor="sequential")
    assert summary.ok and summary.output_tiles > 0
    ds = xr.open_zarr(tmp_path / "series.zarr", group="6")
    assert ds.data.dims == ("time", "band", "y", "x")
    assert [str(t)[:10] for t in ds.time.values] == [f"2024-{m:02d}-01" for m in range(1, 13)]
    assert str(ds.time_end.values[-1])[:10] == "2025-01-01"
    # the source pixel (r, c) at step t, band b: t * 1e6 + b * 1e5 + r * 1000 + c
    x, y = LEFT + 123.5 * RES, TOP - 45.5 * RES
    values = ds.data.sel(x=x, y=y, method="nearest").values
    expected = np.arange(12)[:, None] * 1e6 + np.arange(2)[None, :] * 1e5 + 45 * 1000 + 123
    np.testing.assert_array_equal(values, expected)
    # the overview zoom resamples each step on its own
    low = xr.open_zarr(tmp_path / "series.zarr", group="5").data
    assert low.dims == ("time", "band", "y", "x") and low.shape[:2] == (12, 2)
    assert float(low.isel(time=11, band=1).max()) > 11e6 + 1e5 > float(low.isel(time=10, band=1).max())
    report = verify(tmp_path / "series.zarr")
    assert report.ok, (report.changed, report.extra, report.missing)
    again = reproduce(tmp_path / "series.zarr", to=tmp_path / "again.zarr")   # the saved recipe, steps and all
    assert again.ok, again.describe()


def test_one_object_per_tile_holds_all_its_steps(tmp_path):
    engine.execute(_recipe(tmp_path, zooms="6"), executor="sequential")
    objects = [p for p in (tmp_path / "series.zarr" / "6" / "data").rglob("*") if p.is_file()
               and p.name != "zarr.json"]
    tiles = {p.parts[-2:] for p in objects}
    assert len(objects) == len(tiles) > 0   # a shard per tile, its chunks one step each


def test_a_process_returning_the_wrong_number_of_steps_fails_the_tile_saying_so(tmp_path):
    recipe = _recipe(tmp_path)
    (tmp_path / "series.py").write_text(SERIES.replace("len(time_steps)", "len(time_steps) - 1"))
    summary = engine.execute(recipe, executor="sequential", keep_going=True)
    assert summary.failed and "returned 11 time step(s); the output's time axis has 12" in summary.failed[0].error


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for folder in (whole, killed):
        folder.mkdir()
    engine.execute(_recipe(whole, zooms="[5, 8]"), executor="processes", workers=2)
    recipe = _recipe(killed, zooms="[5, 8]")
    command = [str(ZIGGURAT), "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"]
    kill_9_after(command, killed / "series.zarr", 5)
    subprocess.run(command, capture_output=True, text=True, check=True)

    def chunks(store: Path) -> dict[str, bytes]:
        return {p.relative_to(store).as_posix(): p.read_bytes() for p in store.glob("*/data/c/**/*") if p.is_file()}

    assert chunks(whole / "series.zarr") and chunks(whole / "series.zarr") == chunks(killed / "series.zarr")
    assert verify(killed / "series.zarr").ok


def test_the_stac_item_spans_the_steps_and_validates(tmp_path):
    import json

    from stac_schemas import validate

    summary = engine.execute(_recipe(tmp_path, zooms="6"), executor="sequential")
    item = json.loads(Path(summary.stac_item).read_text())
    assert item["properties"]["start_datetime"] == "2024-01-01T00:00:00Z"
    assert item["properties"]["end_datetime"] == "2025-01-01T00:00:00Z"
    assert "(time, band, y, x)" in item["assets"]["data"]["description"]
    validate(item)


def test_a_series_store_reads_back_as_an_input_with_its_steps_as_bands(tmp_path):
    engine.execute(_recipe(tmp_path, zooms="6"), executor="sequential")
    (tmp_path / "last.py").write_text("def execute(series):\n    return series.read([23, 24])\n")
    (tmp_path / "last.yaml").write_text(
        "process: last.py\nzoom_levels: 6\npyramid: {grid: geodetic}\ninput: {series: series.zarr}\n"
        "output: {path: last, dtype: float32, bands: 2, nodata: -9999}\n")
    engine.execute(tmp_path / "last.yaml", executor="sequential")
    ds = xr.open_zarr(tmp_path / "series.zarr", group="6", mask_and_scale=False)
    import rasterio

    tif = sorted((tmp_path / "last" / "6").glob("*/*.tif"))[0]
    with rasterio.open(tif) as src:
        b = src.bounds
        got = src.read()
    expected = ds.data.isel(time=11).sel(x=slice(b.left, b.right), y=slice(b.top, b.bottom)).values
    np.testing.assert_array_equal(got, expected)


# -- the ready-made `timeseries` process --------------------------------------------------------------
def _scenes_module():
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("make_scenes", REPO / "recipes" / "data" / "make_scenes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def series_catalog(tmp_path_factory) -> Path:
    return _scenes_module().make_series_catalog(tmp_path_factory.mktemp("series"), size=256)


def _series_recipe(tmp: Path, catalog: Path, params: str, bands: int = 3,
                   time: str = "{start: 2024-01-01, end: 2024-12-31, every: 1 month}") -> Path:
    path = tmp / "ts.yaml"
    path.write_text(f"process: timeseries\nzoom_levels: 12\npyramid: {{grid: geodetic}}\n"
                    f"input:\n  scenes: {{stac: {catalog}, assets: [B04, B08, SCL]}}\n"
                    f"process_parameters: {params}\n"
                    f"output: {{path: ts.zarr, dtype: float32, nodata: -9999, bands: {bands}, time: {time}}}\n")
    return path


def _truth(size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each scene's day, its (B04, B08) ground values and where it is clear, as the generator
    made them: (48,), (48, 2, h, w), (48, h, w)."""
    module = _scenes_module()
    base = module.ground(size, size)[[2, 3]].astype(np.float32)
    rows, cols = np.mgrid[0:size, 0:size]
    days, values, clear = [], [], []
    for k in range(48):
        when = dt.date(2024, k // 4 + 1, 3 + 7 * (k % 4))
        day = when.timetuple().tm_yday
        cloud = (rows - size * (0.1 + 0.02 * k)) ** 2 + (cols - size * (0.8 - 0.015 * k)) ** 2 < (size * 0.2) ** 2
        clear.append(~cloud & (when.month not in (3, 7, 8)))
        days.append(day)
        values.append(base + day)
    return np.array(days), np.stack(values), np.stack(clear)


def test_the_series_is_the_monthly_median_with_gaps_filled_linearly_up_to_max_gap(tmp_path, series_catalog):
    recipe = _series_recipe(tmp_path, series_catalog, "{method: median, gapfill: linear, max_gap: 70 days, "
                                                      "count: true}")
    assert engine.execute(recipe, executor="sequential").ok
    got = xr.open_zarr(tmp_path / "ts.zarr", group="12", mask_and_scale=False).data.values   # (12, 3, h, w)
    _, values, clear = _truth()
    steps = TimeSteps.parse({"start": "2024-01-01", "end": "2024-12-31", "every": "1 month"})
    medians = np.full((12, 2) + clear.shape[1:], np.nan, dtype=np.float32)
    for m in range(12):
        k = slice(4 * m, 4 * m + 4)
        clear_values = np.where(clear[k][:, None], values[k], np.nan)
        with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore")
            medians[m] = np.nanmedian(clear_values, axis=0)
        count = clear[k].sum(axis=0)   # the count band; nodata with the data (as the composite's)
        np.testing.assert_array_equal(got[m, 2], np.where(got[m, 0] == -9999, -9999, count))
    observed = [m for m in range(12) if m + 1 not in (3, 7, 8)]
    for m in observed:   # every observed step: the median of its clear scenes, bit for bit
        known = ~np.isnan(medians[m])
        np.testing.assert_array_equal(got[m, :2][known], medians[m][known])
    centre = [s.centre_days for s in steps]
    f = (centre[2] - centre[1]) / (centre[3] - centre[1])                              # March: Feb..Apr, 60 days
    expected = medians[1] + (medians[3] - medians[1]) * np.float32(f)
    np.testing.assert_allclose(got[2, :2], np.nan_to_num(expected, nan=-9999), rtol=0, atol=1e-3)
    assert np.isnan(expected).any() and not np.isnan(expected).all()
    assert (got[6:8, :2] == -9999).all()     # July and August: June..September is 92 days > max_gap


def test_nearest_fill_and_savitzky_golay_smoothing(tmp_path, series_catalog):
    from scipy.signal import savgol_filter

    recipe = _series_recipe(tmp_path, series_catalog, "{method: mean, gapfill: nearest, "
                                                      "smooth: {savgol: {window: 5, order: 2}}}", bands=2)
    assert engine.execute(recipe, executor="sequential").ok
    got = xr.open_zarr(tmp_path / "ts.zarr", group="12", mask_and_scale=False).data.values
    _, values, clear = _truth()
    with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        means = np.stack([np.nanmean(np.where(clear[4 * m:4 * m + 4][:, None], values[4 * m:4 * m + 4], np.nan),
                                     axis=0) for m in range(12)]).astype(np.float32)
    centre = np.array([s.centre_days for s in TimeSteps.parse({"start": "2024-01-01", "end": "2024-12-31",
                                                                "every": "1 month"})])
    filled = means.copy()
    for t in range(12):   # nearest: the closest observed step by centre, the earlier on a tie
        order = sorted((t2 for t2 in range(12) if t2 != t), key=lambda t2: (abs(centre[t2] - centre[t]), t2))
        for t2 in order:
            gap = np.isnan(filled[t]) & ~np.isnan(means[t2])
            filled[t][gap] = means[t2][gap]
    complete = ~np.isnan(filled).any(axis=0)   # a series with a gap left is not smoothed
    assert complete.mean() > 0.5
    want = filled.copy()
    want[:, complete] = savgol_filter(filled[:, complete], 5, 2, axis=0, mode="interp")
    np.testing.assert_allclose(got, np.nan_to_num(want, nan=-9999), rtol=0, atol=1e-3)


def test_timeseries_needs_an_output_time_axis(tmp_path, series_catalog):
    path = tmp_path / "no_time.yaml"
    path.write_text(f"process: timeseries\nzoom_levels: 12\npyramid: {{grid: geodetic}}\n"
                    f"input:\n  scenes: {{stac: {series_catalog}, assets: [B04, SCL]}}\n"
                    "output: {path: out.zarr, dtype: float32, nodata: -9999}\n")
    with pytest.raises(RecipeError, match="returns a time series .* give the output a time axis"):
        engine.execute(path, executor="sequential")


def test_a_rerun_with_other_steps_is_refused_until_overwritten(tmp_path):
    from ziggurat.core.errors import OutputError

    engine.execute(_recipe(tmp_path, zooms="6"), executor="sequential")
    shifted = _recipe(tmp_path, zooms="6", time="{start: 2024-02-01, end: 2025-01-31, every: 1 month}")
    with pytest.raises(OutputError, match="time: "):
        engine.execute(shifted, executor="sequential")
    assert engine.execute(shifted, executor="sequential", overwrite=True).ok
    assert str(xr.open_zarr(tmp_path / "series.zarr", group="6").time.values[0])[:10] == "2024-02-01"


#: the series process, declaring each step independent and logging how many steps each call got
LOGGED = SERIES.replace("def execute(inp, time_steps, tile):", """time_steps_independent = INDEPENDENT


def execute(inp, time_steps, tile):
    import os
    with open(os.path.join(os.path.dirname(__file__), "calls.log"), "a") as log:
        log.write(f"{time_steps[0].label} {len(time_steps)}\\n")""").replace(
    "np.arange(len(time_steps), dtype=\"float32\")",
    "np.array([s.start.month - 1 + 12 * (s.start.year - 2024) for s in time_steps], dtype=\"float32\")")


@pytest.mark.parametrize("out", ["series.zarr", "series"])
def test_a_longer_end_computes_only_the_new_steps_when_the_process_allows_it(tmp_path, out):
    """One more month: a process whose steps are independent is asked for that month alone, the
    tiles keep the stored months, and every byte equals a run of all 13 months at once."""
    grown, whole = tmp_path / "grown", tmp_path / "whole"
    thirteen = "{start: 2024-01-01, end: 2025-01-31, every: 1 month}"
    for folder in (grown, whole):
        folder.mkdir()
    recipe = _recipe(grown, out=out, zooms="[5, 6]")
    (grown / "series.py").write_text(LOGGED.replace("INDEPENDENT", "True"))
    engine.execute(recipe, executor="sequential")
    first = (grown / "calls.log").read_text().splitlines()
    assert first and all(line == "2024-01-01 12" for line in first)
    (grown / "calls.log").unlink()
    longer = _recipe(grown, out=out, zooms="[5, 6]", time=thirteen)
    (grown / "series.py").write_text(LOGGED.replace("INDEPENDENT", "True"))
    assert engine.execute(longer, executor="processes", workers=2).ok
    assert sorted(set((grown / "calls.log").read_text().splitlines())) == ["2025-01-01 1"]
    assert len((grown / "calls.log").read_text().splitlines()) == len(first)
    _recipe(whole, out=out, zooms="[5, 6]", time=thirteen)
    (whole / "series.py").write_text(LOGGED.replace("INDEPENDENT", "True"))
    engine.execute(whole / "series.yaml", executor="sequential")

    def stored(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and p.parts[len(root.parts)].isdigit()}

    assert stored(grown / out) and stored(grown / out) == stored(whole / out)
    assert verify(grown / out).ok


def test_a_longer_end_recomputes_every_step_when_the_process_spans_steps(tmp_path):
    engine.execute(_recipe(tmp_path, zooms="6"), executor="sequential")
    (tmp_path / "series.py").write_text(LOGGED.replace("INDEPENDENT", "False"))
    longer = _recipe(tmp_path, zooms="6", time="{start: 2024-01-01, end: 2025-01-31, every: 1 month}")
    (tmp_path / "series.py").write_text(LOGGED.replace("INDEPENDENT", "False"))
    assert engine.execute(longer, executor="sequential").ok
    assert set((tmp_path / "calls.log").read_text().splitlines()) == {"2024-01-01 13"}
    assert xr.open_zarr(tmp_path / "series.zarr", group="6").time.size == 13


def test_appending_steps_needs_the_whole_recipe(tmp_path):
    from ziggurat.core.errors import OutputError

    engine.execute(_recipe(tmp_path, zooms="[5, 6]"), executor="sequential")
    longer = _recipe(tmp_path, zooms="[5, 6]", time="{start: 2024-01-01, end: 2025-01-31, every: 1 month}")
    with pytest.raises(OutputError, match="appending time steps rewrites every tile"):
        engine.execute(longer, executor="sequential", zoom=6)


def test_the_example_recipe_runs_on_the_generated_year(tmp_path, monkeypatch):
    """recipes/timeseries.yaml as its header runs it: a year of scenes under ZIGGURAT_OUTPUT."""
    from conftest import REPO

    _scenes_module().make_series_catalog(tmp_path / "series-scenes", size=256)
    monkeypatch.setenv("ZIGGURAT_OUTPUT", str(tmp_path))
    summary = engine.execute(REPO / "recipes" / "timeseries.yaml", executor="processes", workers=2)
    assert summary.ok and summary.written > 0
    ds = xr.open_zarr(tmp_path / "timeseries.zarr", group="10")
    assert ds.data.dims == ("time", "band", "y", "x") and ds.time.size == 12
    assert list(ds.band.values) == ["B04", "B08", "count"]
    assert int(ds.data.isel(time=6, band=0).count()) == 0          # July: past max_gap, nodata
    assert int(ds.data.isel(time=2, band=0).count()) > 0           # March: filled


def test_a_geotiff_tile_directory_series_has_a_folder_and_an_item_per_step_in_a_collection(tmp_path):
    import json

    import rasterio

    from stac_schemas import validate

    summary = engine.execute(_recipe(tmp_path, out="series", zooms="[5, 6]"), executor="processes", workers=2)
    assert summary.ok and summary.output_tiles > 0
    out = tmp_path / "series"
    with rasterio.open(next((out / "6").glob("*/*.tif"))) as src:   # a tile holds every step's bands
        assert src.count == 24 and src.descriptions[:3] == ("2024-01-01 band 1", "2024-01-01 band 2",
                                                              "2024-02-01 band 1")
    collection = json.loads((out / "collection.json").read_text())
    validate(collection)
    items = [link["href"] for link in collection["links"] if link["rel"] == "item"]
    assert sorted(items) == [f"{m:%Y-%m-%d}/{m:%Y-%m-%d}.json" for m in
                             (dt.date(2024, k, 1) for k in range(1, 13))]
    assert collection["extent"]["temporal"]["interval"][0][1].startswith("2025-01-01")
    x, y = LEFT + 123.5 * RES, TOP - 45.5 * RES
    for t in (0, 5, 11):
        label = f"2024-{t + 1:02d}-01"
        item = json.loads((out / label / f"{label}.json").read_text())
        validate(item)
        assert item["properties"]["start_datetime"] == f"{label}T00:00:00Z"
        with rasterio.open(out / label / item["assets"]["data"]["href"]) as vrt:   # opens in GDAL
            assert vrt.count == 2 and vrt.overviews(1)                              # zoom 5 as overview
            row, col = vrt.index(x, y)
            values = vrt.read(window=((row, row + 1), (col, col + 1)))[:, 0, 0]
        np.testing.assert_array_equal(values, [t * 1e6 + 45123, t * 1e6 + 1e5 + 45123])
    assert verify(out).ok
    from ziggurat.records.catalog.quicklook import _shown_band

    assert summary.quicklook is not None and summary.quicklook.is_file()
    assert _shown_band(out) == 23   # the latest step's first band, the only one the quicklook reads


def test_the_preview_offers_each_steps_bands_by_name(tmp_path):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from ziggurat.serve import create

    engine.execute(_recipe(tmp_path, out="series", zooms="6"), executor="sequential")
    client = TestClient(create(tmp_path / "series"))
    info = client.get("/api/info").json()
    assert info["bands"] == 24 and info["band_names"][22:] == ["2024-12-01 band 1", "2024-12-01 band 2"]
    zoom, row, col = next((z, r, c) for z, r, c in [(6, int(p.parent.name), int(p.stem))
                                                      for p in (tmp_path / "series" / "6").glob("*/*.tif")])
    assert client.get(f"/tiles/{zoom}/{row}/{col}.png?band=23").status_code == 200


def test_a_new_step_without_data_keeps_the_stored_steps(tmp_path):
    """The appended month has no data over the tiles (the process says Empty for it): the tiles
    are rewritten with the stored months and a nodata month, never left in the earlier layout."""
    engine.execute(_recipe(tmp_path, zooms="6"), executor="sequential")
    empty_after = LOGGED.replace("INDEPENDENT", "True").replace(
        "    data = inp.read()\n", "    data = inp.read()\n    if time_steps[0].start.year == 2025:\n"
        "        from ziggurat import Empty\n        raise Empty\n")
    longer = _recipe(tmp_path, zooms="6", time="{start: 2024-01-01, end: 2025-01-31, every: 1 month}")
    (tmp_path / "series.py").write_text(empty_after)
    assert engine.execute(longer, executor="sequential").ok
    ds = xr.open_zarr(tmp_path / "series.zarr", group="6")
    assert ds.time.size == 13 and int(ds.data.isel(time=12).count()) == 0
    assert int(ds.data.isel(time=11).count()) > 0
    assert verify(tmp_path / "series.zarr").ok


def test_a_series_store_in_a_bucket_grows_by_a_month(tmp_path, bucket, monkeypatch):
    """Straight to S3: workers PUT each tile's shard of all steps; a later run from another
    machine appends a month, and zarr-python reads the bucket as a local run of 13 months."""
    obstore = pytest.importorskip("obstore")
    zarr = pytest.importorskip("zarr")
    from conftest import S3_ENV

    thirteen = "{start: 2024-01-01, end: 2025-01-31, every: 1 month}"
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "state"))
    remote = _recipe(tmp_path, out=f"s3://{bucket}/series.zarr", zooms="[5, 6]")
    (tmp_path / "series.py").write_text(LOGGED.replace("INDEPENDENT", "True"))
    assert engine.execute(remote, executor="processes", workers=2).ok
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "elsewhere"))   # another machine
    (tmp_path / "calls.log").unlink()
    grown = _recipe(tmp_path, out=f"s3://{bucket}/series.zarr", zooms="[5, 6]", time=thirteen)
    (tmp_path / "series.py").write_text(LOGGED.replace("INDEPENDENT", "True"))
    assert engine.execute(grown, executor="processes", workers=2).ok
    assert set((tmp_path / "calls.log").read_text().splitlines()) == {"2025-01-01 1"}
    local = tmp_path / "local"
    local.mkdir()
    _recipe(local, zooms="[5, 6]", time=thirteen)
    (local / "series.py").write_text(LOGGED.replace("INDEPENDENT", "True"))
    engine.execute(local / "series.yaml", executor="sequential")
    store = obstore.store.S3Store(bucket, endpoint=S3_ENV["AWS_ENDPOINT_URL"], access_key_id="test-key",
                                  secret_access_key="test-secret", region="us-east-1",
                                  client_options={"allow_http": True})
    group = zarr.open_group(zarr.storage.ObjectStore(store, read_only=True), path="series.zarr", mode="r")
    for zoom in ("5", "6"):
        np.testing.assert_array_equal(group[f"{zoom}/data"][:],
                                      zarr.open_array(local / "series.zarr", path=f"{zoom}/data")[:])
    report = verify(f"s3://{bucket}/series.zarr")
    assert report.ok, (report.changed, report.extra, report.missing)
