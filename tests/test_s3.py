"""Outputs and inputs on object storage, against a real S3 server (moto's, on 127.0.0.1)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import boto3
import numpy as np
import pytest
import rasterio

from conftest import S3_ENV, position_raster
from ziggurat.engine import execute
from ziggurat.errors import OutputError

pytestmark = pytest.mark.usefixtures("s3_server")


def s3() -> Any:
    return boto3.client("s3", endpoint_url=S3_ENV["AWS_ENDPOINT_URL"])


def objects(bucket: str, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for page in s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            out[item["Key"]] = s3().get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
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


def recipe_text(inp: str, out: str, zooms: str = "[0, 2]", extra: str = "") -> str:
    return f"""
process: proc.py
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
