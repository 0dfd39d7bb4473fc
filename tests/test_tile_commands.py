"""`ziggurat cp` and `ziggurat rm`: tiles copied and removed by zoom and bounds, between folders and a
real S3 bucket (moto's server), with the records of an output kept in agreement with its files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import boto3
import pytest

from ziggurat.audit.checks import verify
from ziggurat.audit.copy import copy_tiles
from ziggurat.audit.remove import remove_tiles
from ziggurat.core.bounds import Bounds
from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Grid
from ziggurat.engine.run import execute

from conftest import S3_ENV, position_raster

ZIGGURAT = str(Path(sys.executable).parent / "ziggurat")
PROC = """
def execute(dem):
    if dem.is_empty():
        return None
    return dem.read() + 1
"""
GRID = Grid.from_name("geodetic")
#: a window of zoom 10 (about a quarter of the DEM's tiles there)
WINDOW = Bounds(0.0, 0.5, 0.5, 1.0)


def _tiles(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.tif")
            if p.relative_to(root).parts[0].isdigit()}


def _objects(bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", endpoint_url=S3_ENV["AWS_ENDPOINT_URL"])
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            rel = item["Key"][len(prefix):]
            if rel[:1].isdigit():
                out[rel] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return out


def _recipe(tmp_path: Path, write_recipe: Callable[..., Path], out: str, name: str = "r.yaml") -> Path:
    dem = tmp_path / "dem.tif"
    if not dem.exists():
        position_raster(dem, left=0.0, top=1.0, res=1 / 1024, width=1024, height=1024)
    return write_recipe(f"""
        process: proc.py
        zoom_levels: [0, 10]
        pyramid: {{grid: geodetic, metatiling: 1}}
        input: {{dem: {dem}}}
        output: {{path: {out}, dtype: float32, nodata: -9999}}
        """, name, PROC)


def _in_window(rel: str, zoom: int, bounds: Bounds) -> bool:
    z, r, c = (int(x) for x in rel.removesuffix(".tif").split("/"))
    rows, cols = GRID.tile_range(bounds, zoom)
    return z == zoom and r in rows and c in cols


@pytest.fixture
def output(tmp_path: Path, write_recipe: Callable[..., Path]) -> Path:
    execute(_recipe(tmp_path, write_recipe, str(tmp_path / "out")), executor="sequential")
    return tmp_path / "out"


def test_cp_copies_a_window_once_and_keeps_what_is_there(output: Path, tmp_path: Path) -> None:
    every = _tiles(output)
    first = copy_tiles(str(output), str(tmp_path / "copy"), [10], WINDOW)
    copied = _tiles(tmp_path / "copy")
    want = {rel: data for rel, data in every.items() if _in_window(rel, 10, WINDOW)}
    assert copied == want and first.tiles == len(want) > 4 and first.skipped == 0
    assert (tmp_path / "copy" / "metadata.json").read_bytes() == (output / "metadata.json").read_bytes()
    again = copy_tiles(str(output), str(tmp_path / "copy"), range(0, 11))   # the rest; the window's kept
    assert again.skipped == len(want) and again.tiles == len(every) - len(want)
    assert _tiles(tmp_path / "copy") == every
    import rasterio

    with rasterio.open(tmp_path / "copy" / next(iter(want))) as src:   # a tile directory GDAL reads
        assert src.read(1).shape == (256, 256)


def test_cp_refuses_a_target_with_its_own_records_or_another_grid(output: Path, tmp_path: Path,
                                                                   write_recipe: Callable[..., Path]) -> None:
    execute(_recipe(tmp_path, write_recipe, str(tmp_path / "other"), "o.yaml"), executor="sequential")
    with pytest.raises(OutputError, match="own records"):
        copy_tiles(str(output), str(tmp_path / "other"), [10])
    (tmp_path / "mercator").mkdir()
    meta = (output / "metadata.json").read_text().replace('"geodetic"', '"mercator"')
    (tmp_path / "mercator" / "metadata.json").write_text(meta)
    if meta != (output / "metadata.json").read_text():
        with pytest.raises(OutputError, match="another grid"):
            copy_tiles(str(output), str(tmp_path / "mercator"), [10])
    with pytest.raises(OutputError, match="no tile directory there"):
        copy_tiles(str(tmp_path / "nothing"), str(tmp_path / "x"), [10])


def test_rm_removes_a_window_and_its_records_and_a_rerun_remakes_exactly_it(
        output: Path, tmp_path: Path, write_recipe: Callable[..., Path]) -> None:
    before = _tiles(output)
    gone = {rel for rel in before if _in_window(rel, 10, WINDOW)}
    done = remove_tiles(str(output), [10], WINDOW)
    assert done.tiles == len(gone) > 4 and done.records >= 2 * len(gone)
    assert set(_tiles(output)) == set(before) - gone
    result = verify(output)
    assert result.ok and not result.missing and not result.extra, result.describe()   # records follow the files
    again = execute(_recipe(tmp_path, write_recipe, str(output)), executor="sequential")
    assert again.written == len(gone) and _tiles(output) == before   # the same bytes, only those tiles
    assert verify(output).ok


def test_rm_on_the_command_line_asks_unless_forced(output: Path) -> None:
    env = {**os.environ}
    refused = subprocess.run([ZIGGURAT, "rm", str(output), "-z", "9"], capture_output=True, text=True, env=env,
                             stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert any(p.parts[-3] == "9" for p in output.rglob("*.tif"))
    done = subprocess.run([ZIGGURAT, "rm", str(output), "-z", "9", "-f"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.startswith("removed "), done.stderr
    assert not (output / "9").exists() and verify(output).ok


@pytest.mark.usefixtures("s3_server")
def test_cp_and_rm_between_a_folder_and_a_bucket(output: Path, tmp_path: Path, bucket: str,
                                                  write_recipe: Callable[..., Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "state"))
    every = _tiles(output)
    up = copy_tiles(str(output), f"s3://{bucket}/copy", range(0, 11))
    assert up.tiles == len(every) and _objects(bucket, "copy/") == every
    back = copy_tiles(f"s3://{bucket}/copy", str(tmp_path / "back"), [10], WINDOW)
    assert _tiles(tmp_path / "back") == {k: v for k, v in every.items() if _in_window(k, 10, WINDOW)}
    assert back.tiles == len(_tiles(tmp_path / "back"))
    assert remove_tiles(f"s3://{bucket}/copy", [10]).tiles == sum(1 for k in every if k.startswith("10/"))
    assert not any(k.startswith("10/") for k in _objects(bucket, "copy/"))
    # an output ziggurat wrote to the bucket: its published ledger forgets what rm removes
    recipe = _recipe(tmp_path, write_recipe, f"s3://{bucket}/out", "s3.yaml")
    execute(recipe, executor="sequential")
    written = _objects(bucket, "out/")
    done = remove_tiles(f"s3://{bucket}/out", [10], WINDOW)
    gone = {k for k in written if _in_window(k, 10, WINDOW)}
    assert done.tiles == len(gone) > 0 and set(_objects(bucket, "out/")) == set(written) - gone
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "elsewhere"))   # another machine
    assert verify(f"s3://{bucket}/out").ok
    again = execute(recipe, executor="sequential")
    assert again.written == len(gone) and _objects(bucket, "out/") == written
