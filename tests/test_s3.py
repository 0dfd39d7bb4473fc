"""Outputs and inputs on object storage, against a real S3 server (moto's, on 127.0.0.1)."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
import rasterio

from ziggurat.engine import execute
from ziggurat.errors import OutputError

from conftest import S3_ENV, position_raster

pytestmark = pytest.mark.usefixtures("s3_server")


def s3() -> Any:
    return boto3.client("s3", endpoint_url=S3_ENV["AWS_ENDPOINT_URL"])


def objects(bucket: str, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for page in s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            try:
                out[item["Key"]] = s3().get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            except s3().exceptions.NoSuchKey:  # removed meanwhile (a run's lock)
                continue
    return out


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "state"
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(folder))
    return folder


def dem(tmp_path: Path) -> Path:
    path = tmp_path / "dem.tif"
    position_raster(path, left=0.0, top=1.0, res=1 / 512, width=512, height=512)
    return path


def recipe_text(inp: str, out: str, zooms: str = "[0, 2]", extra: str = "", process: str = "proc.py") -> str:
    return f"""
process: {process}
zoom_levels: {zooms}
pyramid: {{grid: geodetic, metatiling: 1}}
input: {{dem: {inp}}}
output: {{path: {out}, dtype: float32, nodata: -9999{extra}}}
"""


PROC = """
def execute(dem):
    if dem.is_empty():
        return None
    return dem.read() + 1
"""


def test_tiles_to_a_bucket_match_a_local_run(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path]) -> None:
    src = dem(tmp_path)
    local = execute(write_recipe(recipe_text(str(src), str(tmp_path / "local")), "local.yaml", PROC),
                    executor="sequential")
    remote = execute(write_recipe(recipe_text(str(src), f"s3://{bucket}/out"), "remote.yaml", PROC),
                     executor="sequential")
    assert remote.output_tiles == local.output_tiles > 0
    got = objects(bucket, "out/")
    tiles = {k[len("out/"):]: v for k, v in got.items() if k[len("out/")].isdigit()}
    on_disk = {p.relative_to(tmp_path / "local").as_posix(): p.read_bytes()
               for p in (tmp_path / "local").rglob("*.tif")}
    assert tiles == on_disk  # deterministic bytes, same keys
    assert "out/metadata.json" in got and "out/out.json" in got  # metadata and the STAC item
    assert any(k.startswith("out/.ziggurat/ledger/") for k in got)
    assert "out/.ziggurat/lock" not in got
    counts = remote.requests[f"s3://{bucket}"]
    assert counts["PUT"] >= len(tiles) and counts.get("HEAD", 0) == 0


def remote_recipe(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path], zooms: str = "[0, 3]",
                  extra: str = "") -> Path:
    return write_recipe(recipe_text(str(dem(tmp_path)), f"s3://{bucket}/out", zooms, extra), "remote.yaml", PROC)


def test_resume_from_a_fresh_machine_is_a_constant_few_requests(tmp_path: Path, bucket: str,
                                                                 write_recipe: Callable[..., Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = remote_recipe(tmp_path, bucket, write_recipe)
    first = execute(recipe, executor="sequential")
    before = objects(bucket, "out/")
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "elsewhere"))  # no local state at all
    again = execute(recipe, executor="sequential")
    assert again.skipped == first.written + first.empty and again.written == 0
    counts = again.requests[f"s3://{bucket}"]
    assert counts.get("HEAD", 0) == 0
    assert counts["PUT"] + counts["GET"] + counts["LIST"] < 25  # not proportional to the tiles
    after = objects(bucket, "out/")
    tiles = [k for k in before if k[4].isdigit()]
    assert {k: after[k] for k in tiles} == {k: before[k] for k in tiles}


def test_verify_and_status_read_the_bucket(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path]) -> None:
    from ziggurat.reproduce import verify
    from ziggurat.status import status

    execute(remote_recipe(tmp_path, bucket, write_recipe), executor="sequential")
    result = verify(f"s3://{bucket}/out")
    assert result.ok and result.identical > 0, result.describe()
    key = sorted(k for k in objects(bucket, "out/") if k[4].isdigit())[0]
    s3().put_object(Bucket=bucket, Key=key, Body=b"not a tile")
    s3().put_object(Bucket=bucket, Key="out/9/9/9.tif", Body=b"stray")
    bad = verify(f"s3://{bucket}/out")
    assert not bad.ok and [r.path for r, _ in bad.changed] == [key[4:]] and bad.extra == ["9/9/9.tif"]
    report = status(f"s3://{bucket}/out")
    assert sum(z.written for z in report.zooms) > 0


def test_a_second_run_into_the_same_bucket_output_is_refused(tmp_path: Path, bucket: str,
                                                              write_recipe: Callable[..., Path]) -> None:
    from ziggurat.io.atomic import HOST

    recipe = remote_recipe(tmp_path, bucket, write_recipe)
    holder = {"pid": 1, "host": HOST + "-other", "started": "2026-12-01T00:00:00+00:00",
              "expires": time.time() + 60}
    s3().put_object(Bucket=bucket, Key="out/.ziggurat/lock", Body=json.dumps(holder).encode())
    with pytest.raises(OutputError, match=r"being written by another run \(pid 1 on .*-other"):
        execute(recipe, executor="sequential")
    assert [k for k in objects(bucket, "out/") if k[4].isdigit()] == []  # refused before any tile
    holder["expires"] = 1.0  # expired: a run that is gone
    s3().put_object(Bucket=bucket, Key="out/.ziggurat/lock", Body=json.dumps(holder).encode())
    assert execute(recipe, executor="sequential").written > 0


def test_a_missing_bucket_is_one_clear_error_before_any_tile(tmp_path: Path, s3_server: Any,
                                                             write_recipe: Callable[..., Path]) -> None:
    recipe = remote_recipe(tmp_path, "no-such-bucket-here", write_recipe)
    with pytest.raises(OutputError, match=r"cannot write to s3://no-such-bucket-here/out: the bucket does not exist"):
        execute(recipe, executor="sequential")
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("*.tif"))


def test_gdal_opens_the_stac_item_in_the_bucket(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path]) -> None:
    execute(remote_recipe(tmp_path, bucket, write_recipe, zooms="[2, 3]"), executor="sequential")
    # GDAL reaches the server through the environment (AWS_S3_ENDPOINT, AWS_HTTPS, AWS_VIRTUAL_HOSTING)
    with rasterio.open(f"STACTA:/vsis3/{bucket}/out/out.json:data") as src:
        assert src.count == 1 and src.width > 0
        window = src.read(1, masked=True)
    assert window.count() > 100 and 1 <= float(window.min()) <= float(window.max()) <= 511 * 1000 + 511 + 1


def test_ledger_segments_are_compacted(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path]) -> None:
    recipe = remote_recipe(tmp_path, bucket, write_recipe)
    execute(recipe, executor="sequential")
    execute(recipe, executor="sequential", overwrite=True)
    segments = [k for k in objects(bucket, "out/.ziggurat/ledger/")]
    assert len(segments) == 1
    ops = json.loads(gzip.decompress(objects(bucket, "out/.ziggurat/ledger/")[segments[0]]))
    assert ops[0] == ["reset"] and any(op[0] == "o" for op in ops)


def test_storage_options_never_reach_provenance(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    extra = (", storage_options: {key: test-key, secret: sup3r-s3cret-value, "
             f"client_kwargs: {{endpoint_url: '{S3_ENV['AWS_ENDPOINT_URL']}'}}}}")
    execute(remote_recipe(tmp_path, bucket, write_recipe, extra=extra), executor="sequential")
    published = objects(bucket, "out/")
    assert any(k.endswith("recipe.yaml") for k in published)
    for key, data in published.items():
        assert b"sup3r-s3cret-value" not in (gzip.decompress(data) if key.endswith(".gz") else data), key
    local = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
    assert b"sup3r-s3cret-value" not in local


ZIGGURAT = str(Path(__import__("sys").executable).parent / "ziggurat")


def upload(bucket: str, key: str, path: Path) -> str:
    s3().upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def tile_objects(bucket: str, prefix: str) -> dict[str, bytes]:
    return {k[len(prefix):]: v for k, v in objects(bucket, prefix).items() if k[len(prefix)].isdigit()}


@pytest.mark.slow
def test_s3_input_and_output_with_the_process_pool_and_dask(tmp_path: Path, bucket: str,
                                                            write_recipe: Callable[..., Path]) -> None:
    import subprocess

    from ziggurat.executors.dask import DaskExecutor

    src = upload(bucket, "inputs/dem.tif", dem(tmp_path))
    local = execute(write_recipe(recipe_text(str(dem(tmp_path)), str(tmp_path / "local")), "local.yaml", PROC),
                    executor="sequential")
    pool_recipe = write_recipe(recipe_text(src, f"s3://{bucket}/pool"), "pool.yaml", PROC)
    done = subprocess.run([ZIGGURAT, "execute", str(pool_recipe), "-e", "processes", "-w", "2", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Unsupported option" not in done.stderr and "Warning" not in done.stderr
    assert f"s3://{bucket}:" in done.stdout and "0 HEAD" not in done.stdout  # the request line
    dask_recipe = write_recipe(recipe_text(src, f"s3://{bucket}/dask"), "dask.yaml", PROC)
    summary = execute(dask_recipe, executor=DaskExecutor(2, dashboard_address=":0"))
    assert summary.ok and summary.requests[f"s3://{bucket}"]["PUT"] >= summary.output_tiles
    on_disk = {p.relative_to(tmp_path / "local").as_posix(): p.read_bytes()
               for p in (tmp_path / "local").rglob("*.tif")}
    assert tile_objects(bucket, "pool/") == on_disk == tile_objects(bucket, "dask/")
    assert local.output_tiles == len(on_disk)


SLOW_PROC = """
import time

def execute(dem):
    if dem.is_empty():
        return None
    time.sleep(0.4)
    return dem.read() + 1
"""


@pytest.mark.slow
def test_kill_9_then_a_rerun_from_a_fresh_machine_gives_identical_objects(tmp_path: Path, bucket: str,
                                                                         write_recipe: Callable[..., Path]) -> None:
    import os
    import signal
    import subprocess

    src = str(dem(tmp_path))
    clean = write_recipe(recipe_text(src, f"s3://{bucket}/clean", "[8, 10]", process="slow.py"), "clean.yaml", SLOW_PROC, "slow.py")
    assert execute(clean, executor="threads").ok
    recipe = write_recipe(recipe_text(src, f"s3://{bucket}/out", "[8, 10]", process="slow.py"), "out.yaml", SLOW_PROC, "slow.py")
    env = {**os.environ, "ZIGGURAT_STATE_DIR": str(tmp_path / "machine-1")}
    proc = subprocess.Popen([ZIGGURAT, "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (len(tile_objects(bucket, "out/")) >= 12
                                          and objects(bucket, "out/.ziggurat/ledger/")):  # a published segment
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = tile_objects(bucket, "out/")
    assert 12 <= len(partial) < len(tile_objects(bucket, "clean/"))
    env["ZIGGURAT_STATE_DIR"] = str(tmp_path / "machine-2")  # no local state from the killed run
    again = subprocess.run([ZIGGURAT, "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "skipped" in again.stdout and " 0 skipped" not in again.stdout  # it resumed
    assert tile_objects(bucket, "out/") == tile_objects(bucket, "clean/")
    from ziggurat.reproduce import verify

    assert verify(f"s3://{bucket}/out").ok
