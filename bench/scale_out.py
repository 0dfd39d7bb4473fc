"""Scale-out benchmark: what one parent (or one Dask client) spends per tile, and how many
workers it can therefore feed.

A no-op process (a constant 16 x 16 uint8 tile written as a GeoTIFF tile directory) over
10^4 or 10^5 geodetic tiles isolates the engine's own per-tile cost: planning, handing out,
recording (ledger, STAC extent, progress). Each configuration runs in its own child process;
the child samples its own CPU time (`time.process_time()`: every thread of the parent, the Dask
client's event loop included) at each tenth of the run, so the figures show whether the cost
per tile grows with the tiles already done (the last tenth against the first).

Configurations: processes x2, threads x2, Dask LocalCluster x2 (its scheduler lives in the
client process: client + scheduler CPU), Dask on a cluster of separate processes (`dask
scheduler` + 2 `dask worker`, started here; the client's CPU alone, the scheduler's read from
its /proc entry), and three `--part`s at once against one run.

The ceiling: with `c` ms of parent CPU per tile, one parent keeps `t / c` workers busy on tiles
of `t` ms; printed for 15 ms and 500 ms tiles. Prints figures; asserts nothing. Usage:

    python bench/scale_out.py [--tiles 10000 100000] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROCESS = '''\
import numpy as np

def execute(tile):
    return np.full((1, 16, 16), (tile.row + tile.col) % 200 + 1, dtype="uint8")
'''

CONFIGS: dict[str, dict] = {
    "processes x2": {"executor": "processes", "workers": 2},
    "threads x2": {"executor": "threads", "workers": 2},
    "dask LocalCluster x2": {"executor": "dask", "workers": 2},
    "dask separate processes x2": {"executor": "dask", "workers": 2, "separate": True},
    "3 parts at once (processes x1 each)": {"executor": "processes", "workers": 1, "parts": 3},
}


def recipe_text(out: Path, tiles: int) -> str:
    """A geodetic grid of 16 px tiles; zoom 10 has 2048 x 1024 tiles: a block of about `tiles`."""
    side = int(math.sqrt(tiles))
    rows, cols = side, math.ceil(tiles / side)
    step = 180 / 1024
    west, north = -180 + 10 * step, 90 - 10 * step
    bounds = [west, north - rows * step, west + cols * step, north]
    return (f"process: noop.py\nzoom_levels: 10\npyramid: {{grid: geodetic, tile_size: 16}}\n"
            f"bounds: {bounds}\noutput: {{path: {out}, format: GTiff, dtype: uint8, bands: 1}}\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_of(pid: int) -> float:
    """CPU seconds of a live process, from /proc (utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_of(pid: int) -> float:
    """Peak RSS of a live process (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Cluster:
    """`dask scheduler` and two `dask worker`s, each worker in a folder of its own."""

    def __init__(self, root: Path) -> None:
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                        "--port", str(self.port), "--no-dashboard"], cwd=root,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
        for i in range(2):
            folder = root / f"worker{i}"
            folder.mkdir()
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nthreads", "1",
                 "--no-dashboard", "--no-nanny", "--local-directory", str(folder)], cwd=folder,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))

    @property
    def scheduler_pid(self) -> int:
        return self.procs[0].pid

    def close(self) -> None:
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.wait(timeout=30)


def child(name: str, recipe: Path, total: int, extra: dict) -> None:
    """One configuration in this process; prints a JSON line of figures."""
    from ziggurat import execute

    config = CONFIGS[name]
    marks: list[float] = []
    steps: list[int] = []   # a tenth of this run's own tiles (a part has fewer than the recipe)

    def progress(event) -> None:
        if not steps:
            steps.append(max(1, event.total // 10))
        if event.done % steps[0] == 0 or event.done == event.total:
            marks.append(time.process_time())

    options: dict = {}
    if config.get("separate"):
        from ziggurat.executors.dask import DaskExecutor
        executor = DaskExecutor(scheduler=extra["scheduler"])
    else:
        executor = config["executor"]
        options["workers"] = config["workers"]
        if executor == "dask":
            from ziggurat.executors.dask import DaskExecutor
            executor = DaskExecutor(config["workers"], dashboard_address=":0")
    if extra.get("part"):
        options["part"] = extra["part"]
    start, cpu0 = time.perf_counter(), time.process_time()
    marks.append(cpu0)
    summary = execute(recipe, executor=executor, progress=progress, quicklook=False, **options)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    step = steps[0] if steps else max(1, total // 10)
    tenths = [(b - a) / step * 1000 for a, b in zip(marks, marks[1:])][:10]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"wall": wall, "cpu": cpu, "tiles": summary.total, "tenths_ms": tenths,
                      "children_cpu": children.ru_utime + children.ru_stime,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


def _run_child(name: str, recipe: Path, total: int, extra: dict) -> dict:
    argv = [sys.executable, __file__, "--child", name, "--recipe", str(recipe), "--total", str(total),
            "--extra", json.dumps(extra)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def measure(name: str, tiles: int, root: Path) -> dict:
    work = root / name.replace(" ", "_")
    work.mkdir()
    (work / "noop.py").write_text(PROCESS)
    recipe = work / "recipe.yaml"
    recipe.write_text(recipe_text(work / "out", tiles))
    config = CONFIGS[name]
    if config.get("parts"):
        return _measure_parts(name, recipe, tiles, config["parts"])
    cluster = Cluster(work) if config.get("separate") else None
    try:
        extra = {"scheduler": cluster.address} if cluster else {}
        if cluster:
            time.sleep(3)   # the workers connect
        sched0 = _cpu_of(cluster.scheduler_pid) if cluster else 0.0
        result = _run_child(name, recipe, tiles, extra)
        if cluster:
            result["scheduler_cpu"] = _cpu_of(cluster.scheduler_pid) - sched0
            result["scheduler_rss_mb"] = _peak_rss_of(cluster.scheduler_pid)
    finally:
        if cluster:
            cluster.close()
    return result


def _measure_parts(name: str, recipe: Path, tiles: int, parts: int) -> dict:
    """`parts` copies at once, each `--part i/parts`, then the ending run."""
    start = time.perf_counter()
    argv = [sys.executable, __file__, "--child", name, "--recipe", str(recipe), "--total", str(tiles)]
    procs = [subprocess.Popen([*argv, "--extra", json.dumps({"part": f"{i}/{parts}"})], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(1, parts + 1)]
    results = []
    for p in procs:
        out, err = p.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if p.returncode or not lines:
            raise RuntimeError(f"{name} failed ({p.returncode}):\n{err[-3000:]}")
        results.append(json.loads(lines[-1]))
    ending = _run_child(name, recipe, tiles, {})
    wall = time.perf_counter() - start
    tenths = [max(r["tenths_ms"][i] for r in results) for i in range(min(len(r["tenths_ms"]) for r in results))]
    return {"wall": wall, "cpu": sum(r["cpu"] for r in results) + ending["cpu"], "tiles": tiles,
            "tenths_ms": tenths, "ending_wall": ending["wall"], "rss_mb": max(r["rss_mb"] for r in results)}


def report(name: str, tiles: int, r: dict, base_wall: float | None) -> None:
    tenths = r["tenths_ms"]
    per_tile = r["cpu"] / max(1, tiles) * 1000
    flat = tenths[-1] / tenths[0] if tenths and tenths[0] else float("nan")
    extra = (f", scheduler {r['scheduler_cpu'] / tiles * 1000:.3f} ms/tile and {r['scheduler_rss_mb']:.0f} MB peak"
             if "scheduler_cpu" in r else "")
    ratio = f" ({r['wall'] / base_wall:.2f}x processes)" if base_wall else ""
    print(f"  {name:38s} wall {r['wall']:7.1f} s{ratio}; parent CPU {per_tile:.3f} ms/tile{extra}; "
          f"last/first tenth {flat:.2f}; peak RSS {r['rss_mb']:.0f} MB")
    print(f"  {'':38s} by tenth (ms/tile): {' '.join(f'{t:.3f}' for t in tenths)}")
    if per_tile > 0:
        print(f"  {'':38s} ceiling: {15 / per_tile:,.0f} workers of 15 ms tiles, "
              f"{500 / per_tile:,.0f} of 500 ms tiles; 10^7 tiles (extrapolated, flat per tile): "
              f"{per_tile * 1e7 / 1000 / 3600:.1f} h of parent CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS))
    parser.add_argument("--child")
    parser.add_argument("--recipe", type=Path)
    parser.add_argument("--total", type=int)
    parser.add_argument("--extra", default="{}")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.recipe, args.total, json.loads(args.extra))
        return
    names = args.only or list(CONFIGS)
    for tiles in args.tiles:
        print(f"{tiles:,} tiles (no-op process, 16 px GeoTIFF tiles)")
        root = Path(tempfile.mkdtemp(prefix="zig-scale-"))
        base_wall = None
        try:
            for name in names:
                r = measure(name, tiles, root)
                tiles_run = r["tiles"]
                if name == "processes x2":
                    base_wall = r["wall"]
                report(name, tiles_run, r, base_wall if name != "processes x2" else None)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
