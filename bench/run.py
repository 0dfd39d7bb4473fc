"""Hillshade benchmark: ziggurat's executors against the best single-process loop.

A deterministic synthetic DEM (float32, EPSG:4326, aligned to the geodetic grid, 256 px
deflate blocks) is shaded at geodetic zoom 10: 8192 px is 32 x 32 = 1,024 tiles, 16384 px
four times as many. The limit is the *tight loop*: one process walking the tiles row by row
(its GDAL block cache decodes each source block once), a plain windowed read (where a
tile's buffer leaves the DEM, the part inside pasted into a masked frame), the same shading and the same deflate
GeoTIFF tiles. The *boundless loop* is the naive version (every read `boundless=True`, which
builds a WarpedVRT), kept for comparison; *tight loop, heap kept* is the tight loop with the
malloc settings ziggurat's executors use (executors/heap.py), to show the engine's own cost.

Every configuration runs in its own child process, so wall time, CPU time of the whole process
tree (the child, its forkserver and pool workers: each reaped by its parent before the child
exits, so RUSAGE_CHILDREN holds them all) and peak RSS are measured the same way. Rounds
alternate the configurations (a shared machine drifts: the same loop takes 11 s or 20 s); each
round's ratios are to its own tight loop, and a summary compares the best round of each
configuration (the one least disturbed by neighbours). Prints figures; asserts nothing. Usage:

    python bench/run.py [--sizes 8192 16384] [--rounds 2] [--only NAME ...]

`bench/tile_profile.py` shows where a tile's time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
ROW0, COL0 = 200, 900  # top-left tile of the DEM at the benchmark zoom (somewhere over land)

BASE = "tight loop"
CONFIGS = {
    BASE: {"kind": "bare"},
    # the tight loop with the heap ziggurat's executors keep (executors/heap.py), set through
    # glibc's environment: what is left is the engine's own cost
    "tight loop, heap kept": {"kind": "bare", "env": {"MALLOC_MMAP_THRESHOLD_": str(32 * 2 ** 20),
                                                       "MALLOC_TRIM_THRESHOLD_": str(128 * 2 ** 20)}},
    "boundless loop": {"kind": "bare", "boundless": True},
    "sequential": {"kind": "ziggurat", "executor": "sequential", "workers": 1},
    "threads x2": {"kind": "ziggurat", "executor": "threads", "workers": 2},
    "processes x1": {"kind": "ziggurat", "executor": "processes", "workers": 1},
    "processes x2": {"kind": "ziggurat", "executor": "processes", "workers": 2},
    # the pool handing out single tiles (rows), and runs of at most 32 (the curve, guided sizes)
    "processes x2 one by one": {"kind": "ziggurat", "executor": "processes", "workers": 2, "run_tiles": 1},
    "processes x2 runs <= 32": {"kind": "ziggurat", "executor": "processes", "workers": 2, "run_tiles": 32},
    "threads x2 one by one": {"kind": "ziggurat", "executor": "threads", "workers": 2, "run_tiles": 1},
    "processes x2 parent-writes": {"kind": "ziggurat", "executor": "processes", "workers": 2,
                                   "write_in": "parent"},
    "mapchete x2": {"kind": "mapchete", "workers": 2},
    # a local Dask cluster of 2 worker processes: runs of neighbours as tasks (its scheduler in the child)
    "dask LocalCluster x2": {"kind": "ziggurat", "executor": "dask", "workers": 2},
}
#: Parent memory as the tile count grows: the same run over a quarter, half and all of the DEM.
SCALING = {f"processes x2, {f} of the area": {"kind": "ziggurat", "executor": "processes", "workers": 2,
                                              "fraction": f} for f in ("1/4", "1/2", "1/1")}
CONFIGS.update(SCALING)


def make_dem(size: int, zoom: int) -> Path:
    """A smooth synthetic terrain, the same bytes every time, cached between runs."""
    import numpy as np
    import rasterio
    from affine import Affine

    from ziggurat import Grid

    path = CACHE / f"dem-{size}-z{zoom}.tif"
    if path.exists():
        return path
    CACHE.mkdir(exist_ok=True)
    grid = Grid.from_name("geodetic")
    tile = grid.tile(zoom, ROW0, COL0)
    res = grid.resolution(zoom)[0]
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="float32", crs="EPSG:4326",
                   transform=Affine(res, 0, tile.bounds.left, 0, -res, tile.bounds.top), nodata=-9999,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate", predictor=3)
    rng = np.random.default_rng(42)
    waves = [(rng.uniform(2, 40), rng.uniform(2, 40), rng.uniform(0, 6.3), rng.uniform(20, 300)) for _ in range(12)]
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for r0 in range(0, size, 1024):
            y, x = np.mgrid[r0:r0 + 1024, 0:size].astype("float32") / size
            z = np.zeros_like(x)
            for fx, fy, phase, amp in waves:
                z += amp * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
            z += rng.normal(0, 2, z.shape).astype("float32")
            dst.write(z[np.newaxis], window=rasterio.windows.Window(0, r0, size, 1024))
    tmp.rename(path)
    return path


def recipe_text(dem: Path, out: Path, zoom: int) -> str:
    return (f"process: hillshade\nzoom_levels: {zoom}\npyramid: {{grid: geodetic, pixelbuffer: 1}}\n"
            f"input: {{dem: {dem}}}\noutput: {{path: {out}, dtype: uint8, nodata: 0}}\n"
            f"process_parameters: {{resampling: nearest}}\n")


# -- one configuration, in a child process ---------------------------------------------------
def run_bare(dem: Path, out: Path, zoom: int, boundless: bool = False) -> int:
    """What a hand-written loop does: read a buffered window, shade, write a GeoTIFF tile."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from ziggurat import Grid
    from ziggurat_processes.hillshade import hillshade

    grid = Grid.from_name("geodetic")
    xres, yres = grid.resolution(zoom)
    n = 0
    with rasterio.open(dem) as src:
        rows, cols = grid.tile_range(src.bounds, zoom)
        for row in rows:
            for col in cols:
                tile = grid.tile(zoom, row, col)
                r0, c0 = (row - ROW0) * 256 - 1, (col - COL0) * 256 - 1
                inside = r0 >= 0 and c0 >= 0 and r0 + 258 <= src.height and c0 + 258 <= src.width
                if boundless:
                    data = src.read(1, window=Window(c0, r0, 258, 258), masked=True, boundless=True,
                                    fill_value=src.nodata)
                elif inside:
                    data = src.read(1, window=Window(c0, r0, 258, 258), masked=True)
                else:   # the part inside the DEM, pasted into a masked frame (no WarpedVRT)
                    win = Window(max(c0, 0), max(r0, 0), 258 - (c0 < 0), 258 - (r0 < 0)).intersection(
                        Window(0, 0, src.width, src.height))
                    data = np.ma.masked_all((258, 258), dtype="float32")
                    data[win.row_off - r0:win.row_off - r0 + win.height,
                         win.col_off - c0:win.col_off - c0 + win.width] = src.read(1, window=win, masked=True)
                lats = tile.buffered_bounds.top - (np.arange(258) + 0.5) * yres
                shade = hillshade(data, xres, yres, latitudes=lats)[1:-1, 1:-1]
                path = out / str(zoom) / str(row) / f"{col}.tif"
                path.parent.mkdir(parents=True, exist_ok=True)
                with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint8",
                                   nodata=0, crs=grid.crs, transform=tile.affine, tiled=True,
                                   blockxsize=256, blockysize=256, compress="deflate", predictor=2) as dst:
                    dst.write(shade.filled(0).astype("uint8"), 1)
                n += 1
    return n


def run_ziggurat(recipe: Path, dem: Path, config: dict) -> int:
    import rasterio

    from ziggurat.engine.run import execute

    bounds = None
    if "fraction" in config:  # the top rows of the DEM: a quarter, half or all of the tiles
        num, den = map(int, config["fraction"].split("/"))
        with rasterio.open(dem) as src:
            b = src.bounds
        bounds = (b.left, b.top - (b.top - b.bottom) * num / den, b.right, b.top)
    executor: object = config["executor"]
    if "run_tiles" in config:   # other run sizes than the executor's own
        from ziggurat.executors import get_executor

        executor = get_executor(config["executor"], config["workers"])
        executor.run_tiles = config["run_tiles"]
    summary = execute(recipe, executor=executor, workers=config["workers"],  # type: ignore[arg-type]
                      write_in=config.get("write_in"), overwrite=True, bounds=bounds)
    return summary.output_tiles


def run_mapchete(dem: Path, out: Path, zoom: int, config: dict) -> int:
    """The same hillshade through mapchete (installed only in the benchmark environment)."""
    import rasterio
    from mapchete.commands import execute as mp_execute

    with rasterio.open(dem) as src:
        bounds = list(src.bounds)
    mp_config = {"process": str(HERE / "mapchete_hillshade.py"), "zoom_levels": zoom,
                 "pyramid": {"grid": "geodetic", "pixelbuffer": 1}, "input": {"dem": str(dem)},
                 "output": {"format": "GTiff", "path": str(out), "dtype": "uint8", "bands": 1, "nodata": 0},
                 "bounds": bounds, "config_dir": str(HERE)}
    mp_execute(mp_config, workers=config["workers"], overwrite=True)
    return sum(1 for _ in out.rglob("*.tif"))


def child(name: str, dem: Path, workdir: Path, zoom: int) -> None:
    config = CONFIGS[name]
    out = workdir / "out"
    recipe = workdir / "recipe.yaml"
    recipe.write_text(recipe_text(dem, out, zoom))
    start = time.perf_counter()
    if config["kind"] == "bare":
        tiles = run_bare(dem, out, zoom, config.get("boundless", False))
    elif config["kind"] == "mapchete":
        tiles = run_mapchete(dem, out, zoom, config)
    else:
        tiles = run_ziggurat(recipe, dem, config)
    wall = time.perf_counter() - start
    _stop_forkserver()  # its CPU (and its reaped workers') then counts in RUSAGE_CHILDREN
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"tiles": tiles, "wall": wall,
                      "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                      "parent_rss_mb": _peak_rss_mb(), "child_rss_mb": kids.ru_maxrss / 1024}))


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM); ru_maxrss would include the driver's from before exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stop_forkserver() -> None:
    try:
        from multiprocessing import forkserver
        forkserver._forkserver._stop()
    except Exception:
        pass


# -- driver ------------------------------------------------------------------------------------
def child_result(argv: list[str], label: str, env: dict[str, str] | None = None) -> dict | None:
    """Run one measured child; its last line of output is its JSON result. A child that fails is
    reported as skipped (with its last line of stderr) so the other configurations still run."""
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        print(f"{label} skipped: {(proc.stderr.strip().splitlines() or [f'exit {proc.returncode}'])[-1]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(name: str, dem: Path, zoom: int, python: str) -> dict | None:
    workdir = Path(tempfile.mkdtemp(prefix="zbench-"))
    try:
        return child_result([python, __file__, "--child", name, "--dem", str(dem), "--workdir", str(workdir),
                             "--zoom", str(zoom)], f"{name:<34}", CONFIGS[name].get("env"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def mapchete_python() -> str:
    """mapchete lives only in the benchmark environment (.venv-bench); this one if it has it."""
    import importlib.util

    if importlib.util.find_spec("mapchete") is not None:
        return sys.executable
    bench = HERE.parent / ".venv-bench" / "bin" / "python"
    return str(bench) if bench.exists() else sys.executable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384],
                        help="DEM sizes in px (8192: 1,024 tiles; 16384: 4,096)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--zoom", type=int, default=10)
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS))
    parser.add_argument("--child")
    parser.add_argument("--dem", type=Path)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.dem, args.workdir, args.zoom)
        return
    names = args.only or list(CONFIGS)
    if BASE not in names:
        names.insert(0, BASE)
    for size in args.sizes:
        dem = make_dem(size, args.zoom)
        print(f"\nhillshade of a {size} x {size} float32 DEM at geodetic zoom {args.zoom}, {os.cpu_count()} CPUs, "
              f"{args.rounds} round(s); ratios to the {BASE} of the same round")
        print(f"{'configuration':<40}{'tiles':>7}{'wall s':>9}{'cpu s':>9}{'tiles/s':>9}{'parent MB':>11}"
              f"{'child MB':>10}{'wall/tight':>12}{'cpu/tight':>11}")
        runs: dict[str, list[dict]] = {}
        for rnd in range(args.rounds):
            base = None
            for name in names:
                python = mapchete_python() if CONFIGS[name]["kind"] == "mapchete" else sys.executable
                r = measure(name, dem, args.zoom, python)
                if r is None:
                    continue
                runs.setdefault(name, []).append(r)
                base = base or (r if name == BASE else None)
                ratio = (f"{r['wall'] / base['wall']:>12.2f}{r['cpu'] / base['cpu']:>11.2f}" if base else "")
                label = f"{name} (round {rnd + 1})" if args.rounds > 1 else name
                print(f"{label:<40}{r['tiles']:>7}{r['wall']:>9.2f}{r['cpu']:>9.2f}{r['tiles'] / r['wall']:>9.1f}"
                      f"{r['parent_rss_mb']:>11.0f}{r['child_rss_mb']:>10.0f}{ratio}", flush=True)
        if args.rounds > 1 and BASE in runs:
            summarise(runs)


def summarise(runs: dict[str, list[dict]]) -> None:
    """Best of the rounds for each configuration: on a shared machine the fastest round is the one
    least disturbed by others, so ratios of the bests compare the code, not the neighbours."""
    best_wall = min(r["wall"] for r in runs[BASE])
    best_cpu = min(r["cpu"] for r in runs[BASE])
    print(f"best of {len(runs[BASE])} rounds{'':<25}{'wall s':>9}{'cpu s':>9}{'wall/tight':>12}{'cpu/tight':>11}"
          f"{'wall/tight range':>19}{'cpu/tight range':>17}")
    for name, rs in runs.items():
        wall, cpu = min(r["wall"] for r in rs), min(r["cpu"] for r in rs)
        print(f"  {name:<37}{wall:>9.2f}{cpu:>9.2f}{wall / best_wall:>12.2f}{cpu / best_cpu:>11.2f}"
              f"{_range([r['wall'] for r in rs], [r['wall'] for r in runs[BASE]]):>19}"
              f"{_range([r['cpu'] for r in rs], [r['cpu'] for r in runs[BASE]]):>17}")


def _range(values: list[float], base: list[float]) -> str:
    """The spread of the per-round ratios (each round against its own tight loop)."""
    ratios = [v / b for v, b in zip(values, base)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}"

if __name__ == "__main__":
    main()
