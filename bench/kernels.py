"""The compiled kernels against their peers, one run, side by side: prints figures and ratios,
asserts nothing.

1. Terrain on the W1 DEM (8,192² float32, bench/run.py's): `gdaldem hillshade|slope|aspect -s 111120`
   (one deflate GeoTIFF) against the `ziggurat execute` command running the same process on the
   DEM's native grid into one deflate GeoTIFF, sequential and processes x2; wall until the command
   exits and CPU of the whole process tree (the pool's forkserver included: this script is a
   child subreaper), and ziggurat's marginal CPU (the run's CPU less that of the same command on
   one tile: interpreter start-up, imports, kernel loading). Both tools write the same GeoTIFF
   layout in each comparison: gdaldem's (strips, no predictor; ziggurat with `predictor: 1`) and
   ziggurat's (512² tiles with the dtype's predictor; gdaldem with those creation options). Also
   W1's tile layout (geodetic z10 tiles).
2. Focal mean and median (radius 2) on a 4,096² array: the kernel against scipy.ndimage.
3. The composite's reductions on a (30 scenes, 4 bands, 1,024²) stack: the kernels against the
   numpy version (nanmedian, nanquantile, argmax) they replaced, values compared.

    python bench/kernels.py [--size 8192] [--rounds 2] [--only terrain] [--process hillshade]
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

ZIGGURAT = Path(sys.executable).with_name("ziggurat")
#: gdaldem's defaults (strips, no predictor) and ziggurat's (512² tiles, the dtype's predictor)
GDALDEM_LAYOUT: dict[str, list[str]] = {"uint8": [], "float32": []}
_TILED = ["-co", "TILED=YES", "-co", "BLOCKXSIZE=512", "-co", "BLOCKYSIZE=512"]
ZIGGURAT_LAYOUT = {"uint8": [*_TILED, "-co", "PREDICTOR=2"], "float32": [*_TILED, "-co", "PREDICTOR=3"]}


def subreaper() -> None:
    """Orphans of the commands we run (the pool's forkserver outlives the `ziggurat` command by a
    moment) become our children, so their CPU reaches RUSAGE_CHILDREN when we reap them."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall s until the command exits, as a user sees it; CPU s of the command and of everything
    it started, reaped afterwards)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(cwd / "stdout.log", "wb") as out, open(cwd / "stderr.log", "wb") as err:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err)
        code = proc.wait()
    wall = time.perf_counter() - start
    if code:
        raise SystemExit(f"{' '.join(argv)} failed:\n{(cwd / 'stderr.log').read_text()}")
    while True:   # the forkserver and its workers, reparented to us
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def recipe(folder: Path, dem: Path, process: str, out: str, *, native: bool, zoom: int, gdal_layout: bool) -> Path:
    dtype, nodata = ("uint8", 0) if process == "hillshade" else ("float32", -9999)
    grid = "{grid: {like: dem}, pixelbuffer: 1, metatiling: 4}" if native else "{grid: geodetic, pixelbuffer: 1}"
    params = "{resampling: nearest}" if process == "aspect" else "{scale: 111120, resampling: nearest}"
    options = ", creation_options: {predictor: 1}" if gdal_layout else ""
    path = folder / f"{process}-{out}-{int(gdal_layout)}.yaml"
    path.write_text(f"process: {process}\nzoom_levels: {zoom}\npyramid: {grid}\ninput: {{dem: {dem}}}\n"
                    f"output: {{path: {out}, dtype: {dtype}, nodata: {nodata}, compress: deflate{options}}}\n"
                    f"process_parameters: {params}\n")
    return path


def native_zoom(dem: Path, folder: Path) -> int:
    from ziggurat.recipe import load_recipe

    path = recipe(folder, dem, "slope", "probe.tif", native=True, zoom=0, gdal_layout=False)
    return int(load_recipe(path).grid.tms.maxzoom)


def terrain(dem: Path, rounds: int, processes: tuple[str, ...]) -> None:
    work = Path(tempfile.mkdtemp(prefix="zbench-kernels-"))
    subreaper()
    try:
        zoom = native_zoom(dem, work)
        print(f"\nterrain on {dem.name} (native grid zoom {zoom}), {os.cpu_count()} CPUs, best of {rounds} round(s);"
              "\nziggurat runs the `ziggurat execute` command, as a user does; each ratio is against the gdaldem "
              "row writing the same GeoTIFF layout\n(gdaldem's: strips, no predictor; ziggurat's: 512² tiles, "
              "the dtype's predictor). marginal cpu: less the same command on one tile (start-up)")
        print(f"{'process':<10} {'configuration':<56} {'wall s':>7} {'cpu s':>7} {'marginal':>9} "
              f"{'cpu/gdaldem':>12} {'wall/gdaldem':>13}")
        for process in processes:
            rows = terrain_rows(dem, work, process, zoom, rounds)
            for name, (wall, cpu, marginal, peer) in rows.items():
                ref_wall, ref_cpu = rows[peer][0], rows[peer][1]
                basis = marginal if marginal is not None else cpu
                print(f"{process:<10} {name:<56} {wall:>7.2f} {cpu:>7.2f} "
                      f"{'' if marginal is None else f'{marginal:.2f}':>9} {basis / ref_cpu:>12.2f} "
                      f"{wall / ref_wall:>13.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def terrain_configs(dem: Path, work: Path, process: str, zoom: int) -> dict[str, tuple[list[str], str]]:
    """name -> (command, the gdaldem row it is compared with)."""
    args = [] if process == "aspect" else ["-s", "111120"]
    dtype = "uint8" if process == "hillshade" else "float32"
    gdal = "gdaldem, its layout"
    configs: dict[str, tuple[list[str], str]] = {}
    for name, layout in ((gdal, GDALDEM_LAYOUT), ("gdaldem, ziggurat's layout", ZIGGURAT_LAYOUT)):
        configs[name] = (["gdaldem", process, str(dem), "out.tif", "-q", "-co", "COMPRESS=DEFLATE", *args,
                          *layout[dtype]], name)
    for executor, workers in (("sequential", 1), ("processes", 2)):
        for native, gdal_layout, label, peer in (
                (True, True, "native grid, GeoTIFF, gdaldem's layout", gdal),
                (True, False, "native grid, GeoTIFF, ziggurat's layout", "gdaldem, ziggurat's layout"),
                (False, False, "W1 geodetic z10 tiles", gdal)):
            out = "out.tif" if native else "tiles"
            path = recipe(work, dem, process, out, native=native, zoom=zoom if native else 10, gdal_layout=gdal_layout)
            configs[f"{executor} x{workers}, {label}"] = (
                [str(ZIGGURAT), "execute", str(path), "--executor", executor, "--workers", str(workers),
                 "--overwrite", "--no-progress"], peer)
    return configs


def terrain_rows(dem: Path, work: Path, process: str, zoom: int, rounds: int
                 ) -> dict[str, tuple[float, float, float | None, str]]:
    """Best of `rounds` per configuration: (wall, cpu, marginal cpu or None, its gdaldem row)."""
    configs = terrain_configs(dem, work, process, zoom)
    best: dict[str, tuple[float, float, float | None, str]] = {}
    for _ in range(rounds):
        for name, (argv, peer) in configs.items():
            for leftover in ("out.tif", "out.tif.ziggurat", "tiles"):
                shutil.rmtree(work / leftover, ignore_errors=True) if (work / leftover).is_dir() \
                    else (work / leftover).unlink(missing_ok=True)
            wall, cpu = timed(argv, work)
            marginal = None
            if not name.startswith("gdaldem"):   # the same command on one tile: what starting costs
                _, start_cpu = timed([*argv, "--tile", *first_tile(work, argv[2])], work)
                marginal = max(cpu - start_cpu, 0.0)
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu, marginal, peer)
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
    parser.add_argument("--process", choices=("hillshade", "slope", "aspect"), nargs="*",
                        help="terrain processes to run (default: all three)")
    args = parser.parse_args()
    wanted = set(args.only or ("terrain", "focal", "composite"))
    if "terrain" in wanted:
        if shutil.which("gdaldem") is None:
            print("terrain skipped: gdaldem is not installed (apt-get install gdal-bin)")
        else:
            terrain(make_dem(args.size, 10), args.rounds, tuple(args.process or ("hillshade", "slope", "aspect")))
    if "focal" in wanted:
        focal_bench()
    if "composite" in wanted:
        composite_bench()


if __name__ == "__main__":
    main()
