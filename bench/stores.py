"""Where the W1 hillshade goes: a tile directory, a Zarr store (chunks, or shards of 4 x 4 tiles)
and a single GeoTIFF, each written by 2 worker processes.

The DEM and the hillshade are those of `bench/run.py` (8192 x 8192 float32 at geodetic zoom 10,
1,024 tiles). Every configuration runs in its own child process (wall, CPU of the whole process
tree, the parent's peak RSS); rounds alternate so a busy machine hurts all alike. Prints figures
and ratios to the tile directory; asserts nothing. Usage:

    python bench/stores.py [--size 8192] [--zoom 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import _peak_rss_mb, _stop_forkserver, child_result, make_dem  # noqa: E402  (the same DEM, cached)

CONFIGS = {
    "tile directory": {"path": "out", "extra": ""},
    "zarr": {"path": "out.zarr", "extra": ""},
    "zarr shards 4x4": {"path": "out.zarr", "extra": ", metatiling: 4, shard: true", "metatiling": 4},
    "single GeoTIFF": {"path": "out.tif", "extra": ""},
}


def recipe_text(dem: Path, out: Path, zoom: int, config: dict) -> str:
    meta = config.get("metatiling", 1)
    return (f"process: hillshade\nzoom_levels: {zoom}\n"
            f"pyramid: {{grid: geodetic, metatiling: {meta}, pixelbuffer: 1}}\n"
            f"input: {{dem: {dem}}}\noutput: {{path: {out}, dtype: uint8, nodata: 0{config['extra']}}}\n"
            f"process_parameters: {{resampling: nearest}}\n")


def child(name: str, dem: Path, workdir: Path, zoom: int) -> None:
    from ziggurat.engine.run import execute

    config = CONFIGS[name]
    out = workdir / config["path"]
    recipe = workdir / "recipe.yaml"
    recipe.write_text(recipe_text(dem, out, zoom, config))
    start = time.perf_counter()
    summary = execute(recipe, executor="processes", workers=2, overwrite=True)
    wall = time.perf_counter() - start
    _stop_forkserver()
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    size = sum(p.stat().st_size for p in (out.rglob("*") if out.is_dir() else [out]) if p.is_file()
               and ".ziggurat" not in p.parts)
    print(json.dumps({"tiles": summary.output_tiles, "wall": wall, "mb": size / 1e6,
                      "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                      "parent_rss_mb": _peak_rss_mb()}))


def measure(name: str, dem: Path, zoom: int) -> dict | None:
    workdir = Path(tempfile.mkdtemp(prefix="zstores-"))
    try:
        return child_result([sys.executable, __file__, "--child", name, "--dem", str(dem), "--workdir",
                             str(workdir), "--zoom", str(zoom)], f"{name:<20}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--zoom", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child")
    parser.add_argument("--dem", type=Path)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.dem, args.workdir, args.zoom)
        return
    dem = make_dem(args.size, args.zoom)
    print(f"hillshade of a {args.size} x {args.size} float32 DEM at geodetic zoom {args.zoom}, processes x2, "
          f"{os.cpu_count()} CPUs, {args.rounds} alternating rounds")
    print(f"{'store':<20}{'round':>6}{'tiles':>7}{'wall s':>9}{'cpu s':>9}{'parent MB':>11}{'size MB':>9}"
          f"{'wall/dir':>10}{'cpu/dir':>9}")
    for rnd in range(1, args.rounds + 1):
        base = None
        for name in CONFIGS:
            r = measure(name, dem, args.zoom)
            if r is None:
                continue
            base = base or (r if name == "tile directory" else None)
            ratio = f"{r['wall'] / base['wall']:>10.2f}{r['cpu'] / base['cpu']:>9.2f}" if base else ""
            print(f"{name:<20}{rnd:>6}{r['tiles']:>7}{r['wall']:>9.2f}{r['cpu']:>9.2f}{r['parent_rss_mb']:>11.0f}"
                  f"{r['mb']:>9.1f}{ratio}")


if __name__ == "__main__":
    main()
