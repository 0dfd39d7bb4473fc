"""Shared fixtures: tiny rasters built in code whose values encode their position."""

from __future__ import annotations

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
_OURS = (".venv", ".venv-bench", "src/ziggurat.egg-info/")   # made by `make`, not by tests


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
