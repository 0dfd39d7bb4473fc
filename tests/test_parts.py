"""`--part I/N` for batch systems: parts run at once through the CLI, each with its own state
folder, one killed and rerun, then the ending run: the same bytes as one run, locally and on S3."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from ziggurat.core.errors import RecipeError
from ziggurat.core.grid import Grid
from ziggurat.engine.run import plan as make_plan
from ziggurat.plan.parts import Part
from ziggurat.recipe import load_recipe

from conftest import S3_ENV, position_raster
from polling import wait_until

ZIGGURAT = str(Path(sys.executable).parent / "ziggurat")

# slow enough that a part is killed while it still has tiles to write
PROC = """
import os
import time

def execute(dem):
    if dem.is_empty():
        return None
    time.sleep(float(os.environ.get("TILE_SLEEP", "0")))
    return dem.read() + 1
"""


def _dem(tmp_path: Path) -> Path:
    path = tmp_path / "dem.tif"
    t = Grid.from_name("geodetic").tile(8, 50, 260)
    position_raster(path, left=t.bounds.left, top=t.bounds.top, res=180 / 2**9 / 256, width=1024, height=768)
    return path


def _recipe(write_recipe: Callable[..., Path], dem: str, out: str, name: str, baselevels: bool = True) -> Path:
    levels = "baselevels: {min: 9, max: 9}\n" if baselevels else ""
    return write_recipe(f"""
process: proc.py
zoom_levels: [2, 9]
pyramid: {{grid: geodetic}}
{levels}input: {{dem: {dem}}}
output: {{path: {out}, dtype: float32, nodata: -9999}}
""", name, PROC)


def _run(recipe: Path, *args: str, state: Path, sleep: float = 0.0, **popen: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "ZIGGURAT_STATE_DIR": str(state), "TILE_SLEEP": str(sleep)}
    return subprocess.Popen([ZIGGURAT, "execute", str(recipe), "-e", "sequential", "--no-progress", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _ok(proc: subprocess.Popen[str], timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out + err
    return out


def _tiles(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.tif"))}


def test_parts_split_the_plan_into_disjoint_whole_subtrees(tmp_path: Path, write_recipe: Callable[..., Path]) -> None:
    recipe = load_recipe(_recipe(write_recipe, str(_dem(tmp_path)), str(tmp_path / "out"), "r.yaml",
                                 baselevels=False))
    whole = collections.Counter(t.index for t in make_plan(recipe).tiles())
    for n in (1, 2, 3, 5):
        seen: collections.Counter[Any] = collections.Counter()
        sizes = []
        for i in range(1, n + 1):
            plan = make_plan(recipe, part=f"{i}/{n}")
            tiles = [t.index for t in plan.tiles(curve=True)]
            assert len(tiles) == plan.count() and tiles == [t.index for t in make_plan(recipe, part=f"{i}/{n}").tiles(
                curve=True)]   # the same cut on every machine
            seen.update(tiles)
            sizes.append(len(tiles))
            assert plan.part is not None and all(t.zoom >= plan.part.zoom for t in tiles)
            own = set(tiles)
            for index in tiles:   # a tile's parent (if the part has its zoom) is in the same part
                parent = recipe.grid.tile(*index).parent()
                if parent is not None and parent.zoom >= plan.part.zoom:
                    assert parent.index in own
        assert max(seen.values()) == 1 and set(seen) <= set(whole)
        rest = set(whole) - set(seen)
        assert rest and all(t.zoom < min(t2.zoom for t2 in seen) for t in rest)   # the ending run's
        assert max(sizes) <= 1.5 * min(sizes)


def test_parts_of_a_run_with_an_area_polygon_are_balanced_within_it(tmp_path: Path,
                                                                   write_recipe: Callable[..., Path]) -> None:
    path = write_recipe("""
process: proc.py
zoom_levels: [0, 8]
pyramid: {grid: geodetic}
bounds: [-10, -5, 20, 12]
area: 'POLYGON((-10 -5, 20 -5, 0 12, -10 -5))'
output: {path: out, dtype: uint8, bands: 1}
""", "area.yaml", "def execute(tile):\n    return None\n")
    recipe = load_recipe(path)
    whole = {t.index for t in make_plan(recipe).tiles()}
    parts = [[t.index for t in make_plan(recipe, part=f"{i}/3").tiles(curve=True)] for i in (1, 2, 3)]
    every = [i for p in parts for i in p]
    assert len(every) == len(set(every)) and set(every) <= whole
    sizes = [len(p) for p in parts]
    assert max(sizes) <= 1.3 * min(sizes), sizes   # weighed by the tiles inside the polygon


def test_part_arguments_are_checked(tmp_path: Path, write_recipe: Callable[..., Path]) -> None:
    for bad in ("0/3", "4/3", "three", "1/0"):
        with pytest.raises(RecipeError, match="I/N"):
            Part.parse(bad)
    recipe = _recipe(write_recipe, str(_dem(tmp_path)), str(tmp_path / "out"), "r.yaml")
    proc = subprocess.run([ZIGGURAT, "execute", str(recipe), "--part", "1/3", "--overwrite"], capture_output=True,
                          text=True, env={**os.environ, "ZIGGURAT_STATE_DIR": str(tmp_path / "s")})
    assert proc.returncode != 0 and "never overwrite" in proc.stderr and "Traceback" not in proc.stderr
    single = write_recipe(f"""
process: proc.py
zoom_levels: 9
pyramid: {{grid: geodetic}}
input: {{dem: {_dem(tmp_path)}}}
output: {{path: {tmp_path / 'one.tif'}, dtype: float32, nodata: -9999}}
""", "single.yaml", PROC)
    proc = subprocess.run([ZIGGURAT, "execute", str(single), "--part", "1/2"], capture_output=True, text=True,
                          env={**os.environ, "ZIGGURAT_STATE_DIR": str(tmp_path / "s")})
    assert proc.returncode != 0 and "parts need a tiled output" in proc.stderr


def _parts_then_end(tmp_path: Path, recipe: Path, count: int, written: Callable[[], int]) -> str:
    """`count` parts at once (separate state folders): while part 1 runs (slowly) a second copy of it
    is refused and so is the ending run; part 2 is SIGKILLed once tiles appear and rerun with the
    same command elsewhere; then the ending run. Returns the ending run's output."""
    sleeps = {1: 1.5, 2: 0.5}
    procs = {i: _run(recipe, "--part", f"{i}/{count}", state=tmp_path / f"state{i}", sleep=sleeps.get(i, 0.0),
                     start_new_session=True) for i in range(1, count + 1)}
    assert wait_until(lambda: written() >= 2, timeout=120)
    twin = _run(recipe, "--part", f"1/{count}", state=tmp_path / "twin")
    out, err = twin.communicate(timeout=120)
    assert twin.returncode != 0 and f"part 1/{count} of output" in err and "being written by another run" in err
    early = _run(recipe, state=tmp_path / "early")
    out, err = early.communicate(timeout=120)
    assert early.returncode != 0 and "is still running" in err and "Traceback" not in err
    assert procs[1].poll() is None   # (the checks above ran while part 1 did)
    os.killpg(procs[2].pid, signal.SIGKILL)
    procs[2].wait()
    for i in (1, 3):
        _ok(procs[i])
    _ok(_run(recipe, "--part", f"2/{count}", state=tmp_path / "state2b"))   # resumes on "another machine"
    return _ok(_run(recipe, state=tmp_path / "end"))


def test_three_parts_at_once_one_killed_then_the_ending_run_equal_one_run(
        tmp_path: Path, write_recipe: Callable[..., Path]) -> None:
    dem = str(_dem(tmp_path))
    reference = _ok(_run(_recipe(write_recipe, dem, str(tmp_path / "single"), "single.yaml"), state=tmp_path / "s0"))
    out = tmp_path / "parts"
    recipe = _recipe(write_recipe, dem, str(out), "parts.yaml")
    ending = _parts_then_end(tmp_path, recipe, 3, lambda: len(list(out.rglob("*.tif"))))
    assert "skipped" in ending and " 0 skipped" not in ending
    assert _tiles(out) == _tiles(tmp_path / "single") and "tiles written" in reference
    assert not (out / ".ziggurat" / "parts").exists() or not any((out / ".ziggurat" / "parts").rglob("*.json.gz"))
    verify = subprocess.run([ZIGGURAT, "verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert (out / "parts.json").is_file()   # the ending run's STAC item describes every tile


@pytest.mark.slow
@pytest.mark.usefixtures("s3_server")
def test_parts_on_a_bucket_equal_one_run(tmp_path: Path, write_recipe: Callable[..., Path], bucket: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=S3_ENV["AWS_ENDPOINT_URL"])
    s3.upload_file(str(_dem(tmp_path)), bucket, "dem.tif")
    dem = f"s3://{bucket}/dem.tif"

    def tiles(prefix: str) -> dict[str, bytes]:
        got = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"][len(prefix):]
                if key[:1].isdigit():
                    got[key] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return got

    _ok(_run(_recipe(write_recipe, dem, f"s3://{bucket}/single", "single.yaml"), state=tmp_path / "s0"))
    recipe = _recipe(write_recipe, dem, f"s3://{bucket}/parts", "parts.yaml")
    start = time.monotonic()
    _parts_then_end(tmp_path, recipe, 3, lambda: len(tiles("parts/")))
    assert time.monotonic() - start < 600
    assert tiles("parts/") == tiles("single/")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="parts/.ziggurat/parts/")
    left = [o["Key"] for p in pages for o in p.get("Contents", []) if o["Key"].endswith(".json.gz")]
    assert left == []   # taken over by the ending run's own segments
    verify = subprocess.run([ZIGGURAT, "verify", f"s3://{bucket}/parts"], capture_output=True, text=True,
                            env={**os.environ, "ZIGGURAT_STATE_DIR": str(tmp_path / "v")})
    assert verify.returncode == 0, verify.stdout + verify.stderr
