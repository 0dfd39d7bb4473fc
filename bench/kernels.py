"""The compiled kernels against their peers, one run, side by side: prints figures and ratios,
asserts nothing.

1. Terrain on the W1 DEM (8,192² float32, bench/run.py's): `gdaldem hillshade|slope|aspect -s 111120`
   (one deflate GeoTIFF) against `ziggurat execute` of the same process on the DEM's native grid
   into one deflate GeoTIFF, sequential and processes x2; CPU of the whole process tree and wall,
   and ziggurat's marginal CPU (the run's CPU less that of the same command on a one-tile area:
   interpreter start-up, imports, kernel loading). Also W1's tile layout (geodetic z10 tiles).
2. Focal mean and median (radius 2) on a 4,096² array: the kernel against scipy.ndimage.
3. The composite's reductions on a (30 scenes, 4 bands, 1,024²) stack: the kernels against the
   numpy version (nanmedian, nanquantile, argmax) they replaced, values compared.

    python bench/kernels.py [--size 8192] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import make_dem  # noqa: E402  (the same cached DEM)

#: one ziggurat run in a child: the forkserver is stopped and reaped before the child exits, so the
#: CPU of the whole tree (forkserver and pool workers) reaches the parent's RUSAGE_CHILDREN
CHILD = """
import sys
from multiprocessing import forkserver
from ziggurat import execute
execute(sys.argv[1], executor=sys.argv[2], workers=int(sys.argv[3]), overwrite=True,
        **({"tile": tuple(map(int, sys.argv[4:7]))} if len(sys.argv) > 4 else {}))
server = forkserver._forkserver
if server._forkserver_pid is not None:
    server._stop()
"""


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s of the command and everything it started and reaped)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def recipe(folder: Path, dem: Path, process: str, out: str, *, native: bool, zoom: int) -> Path:
    dtype, nodata = ("uint8", 0) if process == "hillshade" else ("float32", -9999)
    grid = "{grid: {like: dem}, pixelbuffer: 1, metatiling: 4}" if native else "{grid: geodetic, pixelbuffer: 1}"
    params = "{resampling: nearest}" if process == "aspect" else "{scale: 111120, resampling: nearest}"
    path = folder / f"{process}-{out}.yaml"
    path.write_text(f"process: {process}\nzoom_levels: {zoom}\npyramid: {grid}\ninput: {{dem: {dem}}}\n"
                    f"output: {{path: {out}, dtype: {dtype}, nodata: {nodata}, compress: deflate}}\n"
                    f"process_parameters: {params}\n")
    return path


def native_zoom(dem: Path, folder: Path) -> int:
    from ziggurat.recipe import load_recipe

    return int(load_recipe(recipe(folder, dem, "slope", "probe.tif", native=True, zoom=0)).grid.tms.maxzoom)


def terrain(dem: Path, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="zbench-kernels-"))
    try:
        zoom = native_zoom(dem, work)
        print(f"\nterrain on {dem.name} (native grid zoom {zoom}), {os.cpu_count()} CPUs, best of {rounds} round(s)")
        print(f"{'process':<10} {'configuration':<34} {'wall s':>8} {'cpu s':>8} {'marginal cpu':>13} "
              f"{'cpu/gdaldem':>12} {'wall/gdaldem':>13}")
        for process in ("hillshade", "slope", "aspect"):
            rows = terrain_rows(dem, work, process, zoom, rounds)
            ref_wall, ref_cpu = rows["gdaldem"][0], rows["gdaldem"][1]
            for name, (wall, cpu, marginal) in rows.items():
                basis = marginal if marginal is not None else cpu
                print(f"{process:<10} {name:<34} {wall:>8.2f} {cpu:>8.2f} "
                      f"{'' if marginal is None else f'{marginal:.2f}':>13} {basis / ref_cpu:>12.2f} "
                      f"{wall / ref_wall:>13.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def terrain_rows(dem: Path, work: Path, process: str, zoom: int, rounds: int
                 ) -> dict[str, tuple[float, float, float | None]]:
    """Best of `rounds` per configuration: gdaldem, then ziggurat's runs (with marginal CPU)."""
    args = [] if process == "aspect" else ["-s", "111120"]
    configs: dict[str, list[str]] = {
        "gdaldem": ["gdaldem", process, str(dem), "out.tif", "-q", "-co", "COMPRESS=DEFLATE", *args]}
    for executor, workers in (("sequential", 1), ("processes", 2)):
        for native, label in ((True, "native grid, one GeoTIFF"), (False, "W1 geodetic z10 tiles")):
            name = f"{executor} x{workers}, {label}"
            out = "out.tif" if native else "tiles"
            path = recipe(work, dem, process, out, native=native, zoom=zoom if native else 10)
            configs[name] = [sys.executable, "-c", CHILD, str(path), executor, str(workers)]
    best: dict[str, tuple[float, float, float | None]] = {}
    for _ in range(rounds):
        for name, argv in configs.items():
            for leftover in ("out.tif", "out.tif.ziggurat", "tiles"):
                shutil.rmtree(work / leftover, ignore_errors=True) if (work / leftover).is_dir() \
                    else (work / leftover).unlink(missing_ok=True)
            wall, cpu = timed(argv, work)
            marginal = None
            if name != "gdaldem":   # the same command on one tile: what starting costs
                _, start_cpu = timed([*argv, *first_tile(work, argv[3])], work)
                marginal = max(cpu - start_cpu, 0.0)
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu, marginal)
    return best


def first_tile(work: Path, recipe_path: str) -> list[str]:
    from ziggurat.engine.run import load, plan

    index = next(iter(plan(load(recipe_path)).tiles())).index
    return [str(index.zoom), str(index.row), str(index.col)]


def clock(fn: Any, *args: Any, repeat: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def focal_bench() -> None:
    from scipy import ndimage

    from ziggurat.kernels import focal

    data = np.random.default_rng(0).normal(100, 20, (4096, 4096)).astype(np.float32)
    print("\nfocal statistics, radius 2 (5 x 5), 4,096 x 4,096 float32, one thread")
    for statistic, peer in (("mean", lambda a: ndimage.uniform_filter(a.astype(np.float64), 5, mode="constant")),
                            ("median", lambda a: ndimage.median_filter(a, 5, mode="constant"))):
        ours_s, ours = clock(focal, data, statistic, 2)
        peer_s, ref = clock(peer, data, repeat=1 if statistic == "median" else 3)
        inner = (slice(2, -2), slice(2, -2))
        diff = float(np.abs(ours.data[inner] - ref[inner]).max())
        print(f"  {statistic:<7} kernel {ours_s:7.3f} s   scipy.ndimage {peer_s:7.3f} s   "
              f"kernel/scipy {ours_s / peer_s:5.2f}   max difference {diff:.2g}")


def numpy_reductions(obs: np.ndarray, valid: np.ndarray, method: str) -> np.ndarray:
    """The composite's reductions as they were (numpy)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if method == "best":
            score = (obs[:, 1] - obs[:, 0]) / (obs[:, 1] + obs[:, 0])
            s = np.where(valid, score, -np.inf)
            pick = np.argmax(np.where(np.isnan(s), -np.inf, s), axis=0)
            return np.take_along_axis(obs, pick[None, None], axis=0)[0]
        masked = np.where(valid[:, None], obs, np.nan)
        return np.nanmedian(masked, axis=0) if method == "median" else np.nanquantile(masked, 0.25, axis=0)


def composite_bench() -> None:
    from ziggurat import kernels

    rng = np.random.default_rng(1)
    obs = rng.normal(1000, 300, (30, 4, 1024, 1024)).astype(np.float32)
    valid = rng.random((30, 1024, 1024)) > 0.35
    print("\ncomposite reductions, 30 scenes x 4 bands x 1,024 x 1,024 float32, one thread")
    for method in ("median", "quantile", "best"):
        if method == "best":
            score = (obs[:, 1] - obs[:, 0]) / (obs[:, 1] + obs[:, 0])
            ours_s, ours = clock(kernels.best, obs, valid, score)
        elif method == "median":
            ours_s, ours = clock(kernels.median, obs, valid)
        else:
            ours_s, ours = clock(kernels.quantile, obs, valid, 0.25)
        peer_s, ref = clock(numpy_reductions, obs, valid, method, repeat=1)
        same = np.array_equal(ours, ref, equal_nan=True)
        print(f"  {method:<9} kernel {ours_s:7.3f} s   numpy {peer_s:7.3f} s   numpy/kernel {peer_s / ours_s:6.1f}x   "
              f"identical: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=("terrain", "focal", "composite"), nargs="*")
    args = parser.parse_args()
    wanted = set(args.only or ("terrain", "focal", "composite"))
    if "terrain" in wanted:
        if shutil.which("gdaldem") is None:
            print("terrain skipped: gdaldem is not installed (apt-get install gdal-bin)")
        else:
            terrain(make_dem(args.size, 10), args.rounds)
    if "focal" in wanted:
        focal_bench()
    if "composite" in wanted:
        composite_bench()


if __name__ == "__main__":
    main()
