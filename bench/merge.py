"""Merging three DEMs into one COG: ziggurat's mosaic input against gdalwarp, side by side.

A synthetic 3-source DEM (float32): a main DEM of SIZE x SIZE pixels with a data gap, a 2x
coarser DEM covering it, and a corrected patch. The merge (patch over main over coarse, nearest
resampling, deflate + floating-point predictor, tiled) is done by

1. ziggurat: `mosaic` input -> the main DEM's native grid -> one COG, processes x2;
2. gdalwarp -multi -wo NUM_THREADS=2 (sources in reverse order: GDAL's last source wins), -of COG;
3. yirgacheffe 2.3 (its GroupLayer) when it can be installed here: it needs GDAL >= 3.8 Python
   bindings, which Debian 12 (GDAL 3.6) does not have, so it is reported as not run.

Each runs in a child process: wall, CPU of its process tree, peak RSS; ratios to the best peer;
the outputs are compared pixel for pixel. Then a mosaic of 25,000 small files is opened the
first time (headers read in parallel) and again with the cached index. Prints figures, asserts
nothing. Usage:  python bench/merge.py [--size 10000] [--files 25000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
ND = -9999.0
RES = 1 / 3600
ORIGIN = (10.0, 47.0)

RUNNER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t0
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "cpu": r.ru_utime + r.ru_stime, "rss_mb": r.ru_maxrss / 1024,
                  "code": done.returncode, "err": done.stderr[-2000:]}))
"""


def _write(path: Path, left: float, top: float, res: float, data: np.ndarray) -> None:
    import rasterio
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="float32", crs="EPSG:4326", transform=Affine(res, 0, left, 0, -res, top), nodata=ND,
                       tiled=True, blockxsize=512, blockysize=512, compress="deflate", zlevel=1) as dst:
        dst.write(data[np.newaxis])


def make_sources(size: int) -> Path:
    folder = CACHE / f"merge-{size}"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    rows, cols = np.ogrid[0:size, 0:size]
    main = (500 + 300 * np.sin(rows / 700) * np.cos(cols / 900) + rng.normal(0, 2, (size, size))).astype("float32")
    g = size // 10
    main[4 * g:5 * g, 3 * g:5 * g] = ND                                     # the data gap
    _write(folder / "main.tif", ORIGIN[0], ORIGIN[1], RES, main)
    half = size // 2 + 4
    coarse = main[: 2 * (half - 4):2, : 2 * (half - 4):2]
    coarse = np.pad(np.where(coarse == ND, 480.0, coarse), ((0, 4), (0, 4)), mode="edge").astype("float32")
    _write(folder / "coarse.tif", ORIGIN[0], ORIGIN[1], 2 * RES, coarse)
    patch = (main[g:2 * g, g:2 * g] + 25).astype("float32")
    _write(folder / "patch.tif", ORIGIN[0] + g * RES, ORIGIN[1] - g * RES, RES, patch)
    (folder / "done").write_text("")
    return folder


def measure(cmd: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", RUNNER, *cmd], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def run_ziggurat(src: Path, work: Path) -> tuple[dict, Path]:
    recipe = work / "merge.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        process: convert
        zoom_levels: {_maxzoom(src / "main.tif")}
        pyramid: {{grid: {{like: {src / "main.tif"}}}}}
        input:
          inp:
            mosaic: [{src / "patch.tif"}, {src / "main.tif"}, {src / "coarse.tif"}]
        output: {{path: {work / "ziggurat.tif"}, dtype: float32, nodata: {ND}, cog: true}}
        bounds: {json.dumps(list(_bounds(src / "main.tif")))}
        """))
    exe = str(Path(sys.executable).with_name("ziggurat"))
    return measure([exe, "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"]), \
        work / "ziggurat.tif"


def run_gdalwarp(src: Path, work: Path) -> tuple[dict | None, Path]:
    out = work / "gdalwarp.tif"
    if shutil.which("gdalwarp") is None:
        return None, out
    left, bottom, right, top = _bounds(src / "main.tif")
    cmd = ["gdalwarp", "-q", "-overwrite", "-multi", "-wo", "NUM_THREADS=2", "-r", "near",
           "-te", str(left), str(bottom), str(right), str(top), "-tr", str(RES), str(RES), "-dstnodata", str(ND),
           "-of", "COG", "-co", "COMPRESS=DEFLATE", "-co", "PREDICTOR=FLOATING_POINT", "-co", "NUM_THREADS=2",
           str(src / "coarse.tif"), str(src / "main.tif"), str(src / "patch.tif"), str(out)]
    return measure(cmd), out


def _bounds(path: Path) -> tuple[float, float, float, float]:
    import rasterio

    with rasterio.open(path) as ds:
        return tuple(ds.bounds)  # type: ignore[return-value]


def _maxzoom(path: Path) -> int:
    from ziggurat.recipe.native_grid import native_tms

    return native_tms(str(path)).maxzoom


def compare(a: Path, b: Path) -> str:
    import rasterio
    from rasterio.windows import from_bounds

    with rasterio.open(a) as x, rasterio.open(b) as y:
        window = from_bounds(*y.bounds, transform=x.transform).round_offsets().round_lengths()
        ax, by = x.read(1, window=window), y.read(1)
    h, w = min(ax.shape[0], by.shape[0]), min(ax.shape[1], by.shape[1])
    diff = ax[:h, :w] != by[:h, :w]
    return f"{int(diff.sum()):,} of {h * w:,} pixels differ"


def many_files(count: int) -> None:
    """Open a mosaic of `count` small files: first (headers read in parallel), then cached."""
    import rasterio
    from affine import Affine

    from ziggurat.core.grid import Grid
    from ziggurat.io.inputs import mosaic_index
    from ziggurat.io.inputs.mosaic import MosaicInput
    from ziggurat.recipe import InputConfig

    folder = CACHE / f"many-{count}"
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        side = int(np.ceil(np.sqrt(count)))
        data = np.ones((1, 8, 8), "float32")
        for k in range(count):
            r, c = divmod(k, side)
            with rasterio.open(folder / f"t{k:05d}.tif", "w", driver="GTiff", width=8, height=8, count=1,
                               dtype="float32", crs="EPSG:4326", transform=Affine(0.1 / 8, 0, -170 + c * 0.1, 0,
                                                                                  -0.1 / 8, 80 - r * 0.1)) as dst:
                dst.write(data)
        (folder / "done").write_text("")
    with tempfile.TemporaryDirectory() as cache:
        config = InputConfig("many", folder, "mosaic", {"mosaic": ({"path": str(folder / "*.tif")},),
                                                        "priority": "first"}, cache_dir=cache)
        grid = Grid.from_name("geodetic")
        timings = []
        for _ in range(2):
            mosaic_index._SEEN.clear()   # as a new process would start
            t0 = time.perf_counter()
            inp = MosaicInput(config, grid)
            inp.candidates(grid.tile(10, 100, 100))
            timings.append(time.perf_counter() - t0)
            inp.close()
    print(f"mosaic of {count:,} files: opened in {timings[0]:.1f} s the first time (target < 30 s), "
          f"{timings[1]:.2f} s with the cached index (target < 2 s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=10000, help="main DEM side in pixels")
    parser.add_argument("--files", type=int, default=25000, help="files of the many-files mosaic (0: skip)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    src = make_sources(args.size)
    print(f"sources: {args.size:,} x {args.size:,} main, 2x coarser cover, patch ({time.perf_counter() - t0:.0f} s "
          f"to make or find them in {src})")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {}
        zig, zig_out = run_ziggurat(src, work)
        results["ziggurat (mosaic, native grid, COG, processes x2)"] = zig
        gw, gw_out = run_gdalwarp(src, work)
        results["gdalwarp -multi -wo NUM_THREADS=2, -of COG"] = gw
        results["yirgacheffe 2.3 GroupLayer"] = None
        peers = [r["wall"] for k, r in results.items() if r and not k.startswith("ziggurat") and not r["code"]]
        best = min(peers) if peers else None
        print(f"{'configuration':<52} {'wall s':>8} {'cpu s':>8} {'peak MB':>8} {'wall/best peer':>15}")
        for name, r in results.items():
            if r is None:
                why = ("not run: needs GDAL >= 3.8 Python bindings (Debian 12 has 3.6)" if "yirgacheffe" in name
                       else "not run: gdalwarp not installed (apt-get install gdal-bin)")
                print(f"{name:<52} {why}")
                continue
            if r["code"]:
                print(f"{name:<52} failed: {r['err'].strip()[-300:]}")
                continue
            ratio = f"{r['wall'] / best:.2f}" if best else "-"
            print(f"{name:<52} {r['wall']:>8.2f} {r['cpu']:>8.2f} {r['rss_mb']:>8.0f} {ratio:>15}")
        if gw and not gw["code"] and not zig["code"]:
            print(f"ziggurat vs gdalwarp: {compare(zig_out, gw_out)}; sizes {zig_out.stat().st_size / 1e6:.1f} MB "
                  f"vs {gw_out.stat().st_size / 1e6:.1f} MB")
    if args.files:
        many_files(args.files)


if __name__ == "__main__":
    os.environ.setdefault("ZIGGURAT_EXECUTOR", "processes")
    main()
