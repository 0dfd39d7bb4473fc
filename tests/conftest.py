"""Shared fixtures: tiny rasters built in code whose values encode their position."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import rasterio
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SAMPLE_DEM = REPO / "recipes" / "data" / "srtm_dallas.tif"


def position_raster(path: Path, *, left: float, top: float, res: float, width: int, height: int,
                    crs: str = "EPSG:4326", dtype: str = "float32", nodata: float | None = -9999.0,
                    bands: int = 1) -> np.ndarray:
    """A GeoTIFF whose pixel (r, c) of band b holds b*1e6 + r*1000 + c; returns the array."""
    rows, cols = np.mgrid[0:height, 0:width]
    data = np.stack([b * 1_000_000 + rows * 1000 + cols for b in range(bands)]).astype(dtype)
    profile = dict(driver="GTiff", width=width, height=height, count=bands, dtype=dtype, crs=crs,
                   transform=Affine(res, 0, left, 0, -res, top), nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return data


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[..., Path]:
    """Write a YAML recipe (and optional process file) into tmp_path; return the recipe path."""

    def _write(text: str, name: str = "recipe.yaml", process: str | None = None,
               process_name: str = "proc.py") -> Path:
        if process is not None:
            (tmp_path / process_name).write_text(textwrap.dedent(process))
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return _write


def read_tile(path: Path) -> tuple[np.ndarray, Any]:
    with rasterio.open(path) as src:
        return src.read(), src.profile


# -- tests never write into the checkout ------------------------------------------------------------
_OURS = (".venv", ".venv-bench", ".venv-odc", "src/ziggurat.egg-info/")   # made by `make`, not by tests


def _checkout_files() -> set[str] | None:
    """Untracked and ignored paths of the checkout (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--ignored", "--untracked-files=all"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    paths = {line[3:] for line in out.stdout.splitlines()}
    return {p for p in paths if "__pycache__" not in p and not p.startswith(_OURS)}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = _checkout_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_BEFORE, None)
    after = _checkout_files()
    if before is None or after is None:
        return
    new = sorted(after - before)
    if new:
        print(f"\nERROR: the tests wrote into the checkout: {', '.join(new[:20])}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BEFORE = pytest.StashKey[set[str] | None]()


# -- a real S3 server (moto's standalone server on 127.0.0.1), started by the tests ------------------
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: The environment points every S3 client at the test server from the start (GDAL and obstore read
#: it; pool workers inherit it), so a test never reaches a real AWS endpoint.
S3_PORT = _free_port()
S3_ENV = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}", "AWS_S3_ENDPOINT": f"127.0.0.1:{S3_PORT}",
          "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE", "AWS_EC2_METADATA_DISABLED": "true"}
os.environ.update(S3_ENV)


@pytest.fixture(scope="session")
def s3_server() -> Any:
    """The server (its URL is `S3_ENV["AWS_ENDPOINT_URL"]`); buckets come from `bucket`."""
    pytest.importorskip("moto.server")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=S3_PORT, verbose=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server: Any, request: pytest.FixtureRequest) -> str:
    """A new, empty bucket for this test; its name."""
    import re
    import uuid

    import boto3

    name = (re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:8])
    boto3.client("s3", endpoint_url=S3_ENV["AWS_ENDPOINT_URL"]).create_bucket(Bucket=name)
    return name
