"""Where a tile's time goes: ziggurat's worker path against the tight loop, stage by stage
(read, kernel, cast, encode, store, checksum), so the next bottleneck is visible.

Each runs in a child process of its own (ziggurat tunes its process's heap) over the same
tiles of bench/run.py's DEM (the first `--tiles` in row order, after a warm-up).
ziggurat's stages are timed around the functions a pool
worker calls for every tile (`TileJob.run`: read, process, cast + encode, store, checksum)
and the parent's bookkeeping per outcome (ledger, manifest, progress); the tight loop's
around its read, shade and write. Also minor page faults per tile (the cost of memory
that is mapped afresh for every tile). Prints milliseconds per tile; asserts nothing. Usage:

    python bench/tile_profile.py [--size 8192] [--tiles 512]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import COL0, ROW0, make_dem, recipe_text  # noqa: E402  (the same cached DEM)

TIMES: dict[str, float] = defaultdict(float)


def timed(owner: Any, name: str, stage: str) -> None:
    """Wrap `owner.name` so its time adds to `stage` (time inside nested stages is not subtracted)."""
    fn = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[stage] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def profile_ziggurat(dem: Path, workdir: Path, tiles: int, cols: int) -> tuple[dict[str, float], float, int]:
    from ziggurat.engine.run import execute
    from ziggurat.executors.job import TileJob
    from ziggurat.io.inputs.raster import RasterInput
    from ziggurat.io.outputs.folder import TileFolder
    from ziggurat.io.outputs.tiledir import TileDirectoryOutput
    from ziggurat.records.recorder import RunRecorder

    timed(TileJob, "run", "tile (worker total)")
    timed(RasterInput, "read", "read")
    timed(TileJob, "_call", "read + process")
    import ziggurat_processes.hillshade as shading

    timed(shading, "hillshade", "kernel (compiled hillshade)")
    timed(TileDirectoryOutput, "cast", "cast")
    timed(TileDirectoryOutput, "_write_tile", "encode + store")
    timed(TileFolder, "put_tile", "store")
    timed(TileFolder, "checksums", "checksum")
    timed(RunRecorder, "add", "parent: ledger + manifest")
    recipe = workdir / "recipe.yaml"
    recipe.write_text(recipe_text(dem, workdir / "out", 10))
    from ziggurat import Grid

    grid = Grid.from_name("geodetic")
    rows = max(1, tiles // cols)
    top, bottom = grid.tile(10, ROW0, COL0), grid.tile(10, ROW0 + rows - 1, COL0 + cols - 1)
    bounds = (top.bounds.left, bottom.bounds.bottom, bottom.bounds.right, top.bounds.top)
    execute(recipe, executor="sequential", overwrite=True, bounds=bounds, quicklook=False)  # warm-up
    TIMES.clear()
    before, start = faults(), time.perf_counter()
    summary = execute(recipe, executor="sequential", overwrite=True, bounds=bounds, quicklook=False)
    return dict(TIMES), time.perf_counter() - start, faults() - before if summary.output_tiles else 0


def profile_tight(dem: Path, workdir: Path, tiles: int, cols: int) -> tuple[dict[str, float], float, int]:
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from ziggurat import Grid
    from ziggurat_processes.hillshade import hillshade

    grid = Grid.from_name("geodetic")
    xres, yres = grid.resolution(10)
    out = workdir / "tight"
    stages: dict[str, float] = defaultdict(float)

    def loop(n: int) -> None:
        clock = time.perf_counter
        with rasterio.open(dem) as src:
            for i in range(n):
                row, col = ROW0 + i // cols, COL0 + i % cols
                tile = grid.tile(10, row, col)
                r0, c0 = (row - ROW0) * 256 - 1, (col - COL0) * 256 - 1
                t0 = clock()
                outside = r0 < 0 or c0 < 0 or r0 + 258 > src.height or c0 + 258 > src.width
                data = src.read(1, window=Window(c0, r0, 258, 258), masked=True, boundless=outside,
                                fill_value=src.nodata)
                t1 = clock()
                lats = tile.buffered_bounds.top - (np.arange(258) + 0.5) * yres
                shade = hillshade(data, xres, yres, latitudes=lats)[1:-1, 1:-1]
                t2 = clock()
                path = out / str(row) / f"{col}.tif"
                path.parent.mkdir(parents=True, exist_ok=True)
                with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint8",
                                   nodata=0, crs=grid.crs, transform=tile.affine, tiled=True, blockxsize=256,
                                   blockysize=256, compress="deflate", predictor=2) as dst:
                    dst.write(shade.filled(0).astype("uint8"), 1)
                t3 = clock()
                stages["read"] += t1 - t0
                stages["process"] += t2 - t1
                stages["encode + store"] += t3 - t2

    loop(32)   # warm-up
    stages.clear()
    before, start = faults(), time.perf_counter()
    loop(tiles)
    return dict(stages), time.perf_counter() - start, faults() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--tiles", type=int, default=512)
    parser.add_argument("--child", choices=("tight", "ziggurat"))
    args = parser.parse_args()
    dem = make_dem(args.size, 10)
    if args.child:
        with tempfile.TemporaryDirectory(prefix="zprofile-") as tmp:
            run = profile_tight if args.child == "tight" else profile_ziggurat
            stages, wall, minflt = run(dem, Path(tmp), args.tiles, args.size // 256)
        print(json.dumps({"stages": stages, "wall": wall, "faults": minflt}))
        return
    got = {}
    for which in ("tight", "ziggurat"):
        proc = subprocess.run([sys.executable, __file__, "--child", which, "--size", str(args.size),
                               "--tiles", str(args.tiles)], capture_output=True, text=True, check=True)
        got[which] = json.loads(proc.stdout.strip().splitlines()[-1])
    n = args.tiles
    print(f"per tile, {n} tiles of a {args.size} px DEM (ms; nested stages are included in their parents)")
    for which, title, order in (("tight", "tight loop", ("read", "process", "encode + store")),
                                ("ziggurat", "ziggurat (sequential: the code a pool worker runs per tile)",
                                 ("read", "read + process", "kernel (compiled hillshade)", "cast", "encode + store",
                                  "store", "checksum",
                                  "tile (worker total)", "parent: ledger + manifest"))):
        print(title)
        stages = got[which]["stages"]
        for name in order:
            if name in stages:
                print(f"  {name:<28}{stages[name] / n * 1000:>8.2f}")
        print(f"  {'whole':<28}{got[which]['wall'] / n * 1000:>8.2f}   minor page faults/tile "
              f"{got[which]['faults'] / n:.0f}")
    print(f"ziggurat / tight loop, whole: {got['ziggurat']['wall'] / got['tight']['wall']:.2f}")


if __name__ == "__main__":
    main()
