"""Pyramid benchmark: overviews through `baselevels` vs computing every zoom from the input,
and planning a 0.5 x 0.5 degree area at geodetic zooms 14-16.

A deterministic synthetic DEM (float32, EPSG:4326, aligned to geodetic zoom N) is copied into
a pyramid of zooms 0..N with the ready-made `convert` process, once with
`baselevels: {min: N, max: N, lower: average}` (zoom N reads the input, the others resample
the output) and once reading the input at every zoom. Every case runs in its own child process
so wall time, CPU time of the process tree and peak RSS are measured the same way. Prints
figures; asserts nothing. For context, mapchete needed 194 s and 18.6 GB to plan the 0.5 degree
area at zooms 14-16 (field notes). Usage:

    python bench/pyramid.py [--size 4096] [--zoom 9] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import make_dem  # noqa: E402  (the same cached synthetic DEM as bench/run.py)

BOX = (10.1, 45.1, 10.6, 45.6)


def recipe_text(dem: Path, out: Path, zoom: int, baselevels: bool) -> str:
    text = (f"process: convert\nzoom_levels: [0, {zoom}]\npyramid: {{grid: geodetic}}\n"
            f"input: {{inp: {dem}}}\noutput: {{path: {out}, dtype: float32, nodata: -9999}}\n")
    if baselevels:
        text += f"baselevels: {{min: {zoom}, max: {zoom}, lower: average}}\n"
    return text


def child(case: str, arg: str, workers: int) -> dict:
    from ziggurat.audit.report import dry_run
    from ziggurat.engine.run import execute, load, plan

    start = time.perf_counter()
    if case == "plan":
        recipe = load(arg)
        report = dry_run(recipe, zoom="14,16")
        counted = time.perf_counter() - start
        n = sum(1 for _ in plan(recipe, zoom="14,16").tiles())  # stream every tile
        return {"tiles": n, "count_s": counted, "enumerate_s": time.perf_counter() - start - counted,
                "report_tiles": report.process_tiles}
    summary = execute(arg, executor="processes", workers=workers, overwrite=True)
    return {"tiles": summary.output_tiles, "process_tiles": summary.written + summary.empty}


def measure(case: str, arg: str, workers: int) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", case, arg, "--workers", str(workers)],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out.update(wall_s=wall, rss_mb=json.loads(done.stderr.strip().splitlines()[-1])["rss_mb"])
    out["cpu_total_s"] = usage.ru_utime + usage.ru_stime  # cumulative over the children so far
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--zoom", type=int, default=9)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--child", nargs=2, metavar=("CASE", "ARG"))
    args = ap.parse_args()
    if args.child:
        result = child(*args.child, args.workers)
        print(json.dumps(result))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"rss_mb": rss}), file=sys.stderr)
        return

    dem = make_dem(args.size, args.zoom)
    print(f"pyramid of geodetic zooms 0..{args.zoom} from a {args.size} px DEM, processes x{args.workers}")
    cpu_before = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for label, base in (("baselevels (overviews from output)", True), ("every zoom from input", False)):
            recipe = Path(tmp) / f"{base}.yaml"
            recipe.write_text(recipe_text(dem, Path(tmp) / f"out-{base}", args.zoom, base))
            r = measure("run", str(recipe), args.workers)
            cpu = r["cpu_total_s"] - cpu_before
            cpu_before = r["cpu_total_s"]
            print(f"  {label:<36} {r['tiles']:>6} tiles  wall {r['wall_s']:6.2f} s  cpu {cpu:6.2f} s  "
                  f"peak RSS {r['rss_mb']:6.0f} MB")
        recipe = Path(tmp) / "plan.yaml"
        recipe.write_text(recipe_text(dem, Path(tmp) / "out-plan", 16, False).replace("[0, 16]", "[14, 16]")
                          + f"bounds: {list(BOX)}\n")
        r = measure("plan", str(recipe), args.workers)
        print(f"planning 0.5 x 0.5 degrees at zooms 14-16: {r['report_tiles']:,} tiles counted in "
              f"{r['count_s'] * 1000:.1f} ms, streamed in {r['enumerate_s']:.2f} s, peak RSS "
              f"{r['rss_mb']:.0f} MB (process wall {r['wall_s']:.2f} s incl. imports); "
              "mapchete: 194 s, 18.6 GB")


if __name__ == "__main__":
    main()
