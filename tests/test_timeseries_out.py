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
from ziggurat.audit.checks import verify
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


def test_a_time_axis_needs_a_zarr_store(tmp_path):
    with pytest.raises(RecipeError, match="a time series is written to a Zarr store"):
        load_recipe(_recipe(tmp_path, out="tiles"))


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
    assert report.ok, report


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
