"""Cloudless composite: ziggurat's `stac` input + `composite` process against odc-stac + dask.

24 synthetic scenes of 2048 x 2048 px (4 uint16 bands + an SCL band, moving clouds; made by
recipes/data/make_scenes.py, cached in bench/.cache) composited by per-pixel median of the clear
observations into 16 process tiles of 512 x 512 (geodetic zoom 12, metatiling 2) with 2 worker
processes; the same with odc-stac's `load` (dask chunks of 512, a LocalCluster of 2 single-thread
workers) and a masked median written to one GeoTIFF. odc-stac runs in its own environment
(`make bench` creates .venv-odc; `--odc-python` points elsewhere). Prints wall, CPU of the whole
process tree, peak RSS and ratios, and checks the two composites agree; asserts nothing.

    python bench/composite.py [--size 2048] [--scenes 24] [--rounds 2]
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
from typing import Callable

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from run import _peak_rss_mb, _stop_forkserver, child_result  # noqa: E402  (measured as bench/run.py measures)

ODC_PYTHON = REPO / ".venv-odc" / "bin" / "python"


def cached_catalog(name: str, make: str, **options: object) -> Path:
    """bench/.cache/<name>/catalog.json, made once by recipes/data/make_scenes.py's `make`."""
    folder = CACHE / name
    if not (folder / "catalog.json").is_file():
        sys.path.insert(0, str(REPO / "recipes" / "data"))
        import make_scenes

        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        getattr(make_scenes, make)(tmp, **options)
        tmp.rename(folder)
    return folder / "catalog.json"


def catalog(size: int, scenes: int) -> Path:
    return cached_catalog(f"scenes-{size}-{scenes}", "make_catalog", size=size, scenes=scenes, decoys=False)


def measured_run(recipe: Path) -> None:
    """Run a recipe with 2 worker processes; print the measurements as one JSON line."""
    from ziggurat.engine.run import execute

    start = time.perf_counter()
    summary = execute(recipe, executor="processes", workers=2)
    _stop_forkserver()
    print(json.dumps({"tiles": summary.written, **_usage(start)}))


def _usage(start: float) -> dict:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": time.perf_counter() - start, "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
            "parent_rss_mb": _peak_rss_mb(), "child_rss_mb": kids.ru_maxrss / 1024}


def run_ziggurat(cat: Path, workdir: Path) -> None:
    recipe = workdir / "composite.yaml"
    recipe.write_text(f"""process: composite
zoom_levels: 12
pyramid: {{grid: geodetic, metatiling: 2}}
input:
  scenes: {{stac: {cat}, assets: [B02, B03, B04, B08, SCL]}}
process_parameters: {{method: median, count: false}}
output: {{path: {workdir / 'out'}, dtype: uint16, nodata: 0, bands: 4, metatiling: 2}}
""")
    measured_run(recipe)


#: the end of every peer script: its measurements as one JSON line, as `measured_run` prints ziggurat's
#: (the script defines `start` and `items`)
PEER_REPORT = r'''me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
peak = [int(l.split()[1]) / 1024 for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:")]
print(json.dumps({"tiles": len(items), "wall": time.perf_counter() - start,
                  "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, "parent_rss_mb": peak[0],
                  "child_rss_mb": kids.ru_maxrss / 1024}))
'''

ODC_SCRIPT = r'''
import json, resource, sys, time
from pathlib import Path
start = time.perf_counter()
import numpy as np, pystac, rasterio
from dask.distributed import Client, LocalCluster
from odc.stac import load
cat, out = sys.argv[1], Path(sys.argv[2])
items = list(pystac.Catalog.from_file(cat).get_items(recursive=True))
with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
        Client(cluster):
    ds = load(items, bands=["B02", "B03", "B04", "B08", "SCL"], chunks={"x": 512, "y": 512}, groupby=None,
              resampling="nearest", crs="EPSG:4326", resolution=float(sys.argv[3]))
    scl = ds["SCL"]
    bad = scl.isin([0, 1, 2, 3, 8, 9, 10, 11])
    bands = [ds[b].where(~bad & (ds[b] != 0)).median("time", skipna=True) for b in ("B02", "B03", "B04", "B08")]
    import dask
    arrays = dask.compute(*[b.data for b in bands])
    geobox = ds.odc.geobox
data = np.stack([np.nan_to_num(a, nan=0).round().astype("uint16") for a in arrays])
profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=4, dtype="uint16", nodata=0,
               crs="EPSG:4326", transform=geobox.affine, tiled=True, blockxsize=512, blockysize=512,
               compress="deflate", predictor=2)
with rasterio.open(out, "w", **profile) as dst:
    dst.write(data)
''' + PEER_REPORT


def _agree(workdir_z: Path, odc_tif: Path) -> str:
    """Largest difference between the two composites over the pixels both have."""
    import numpy as np
    import rasterio

    with rasterio.open(odc_tif) as src:
        ref, transform = src.read(), src.transform
    worst, compared = 0, 0
    for tif in (workdir_z / "out" / "12").glob("*/*.tif"):
        with rasterio.open(tif) as t:
            data, b = t.read(), t.bounds
        col = round((b.left - transform.c) / transform.a)
        row = round((b.top - transform.f) / transform.e)
        if col < 0 or row < 0:
            continue
        part = ref[:, row:row + data.shape[1], col:col + data.shape[2]]
        if part.shape != data.shape:
            continue
        both = (part != 0) & (data != 0)
        compared += int(both.sum())
        if both.any():
            worst = max(worst, int(np.abs(part.astype(int) - data.astype(int))[both].max()))
    return f"{compared} values compared, largest difference {worst} DN"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--odc-python", type=Path, default=ODC_PYTHON)
    parser.add_argument("--child", type=Path)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.child:
        run_ziggurat(args.child, args.workdir)
        return
    cat = catalog(args.size, args.scenes)
    print(f"median composite of {args.scenes} scenes of {args.size} x {args.size} px (5 assets), 16 tiles of 512 px, "
          f"2 workers, {os.cpu_count()} CPUs")
    res = 180 / 2 ** 12 / 256   # geodetic zoom 12, the scenes' own pixel size
    compare(args.rounds, "odc-stac + dask", args.odc_python,
            lambda peer: ["-c", ODC_SCRIPT, str(cat), str(peer / "composite.tif"), repr(res)],
            lambda work: [__file__, "--child", str(cat), "--workdir", str(work)],
            lambda work, peer: _agree(work, peer / "composite.tif"))


def compare(rounds: int, peer: str, odc_python: Path, peer_args: Callable[[Path], list[str]],
            ziggurat_args: Callable[[Path], list[str]], agree: Callable[[Path, Path], str]) -> None:
    """`rounds` of the peer (with `odc_python`, when there is one) and of ziggurat, each in a
    temporary folder of its own: a row per tool, the ratios to the peer, how far the two agree."""
    print(f"{'tool':<22}{'round':>6}{'wall s':>9}{'cpu s':>9}{'parent MB':>11}{'child MB':>10}{'wall/peer':>10}"
          f"{'cpu/peer':>9}")
    for rnd in range(1, rounds + 1):
        work, there = Path(tempfile.mkdtemp(prefix="zbench-")), Path(tempfile.mkdtemp(prefix="peer-"))
        try:
            results = {}
            if odc_python.exists():
                results[peer] = child_result([str(odc_python), *peer_args(there)], " ")
            else:
                print(f"  {peer} not run: no {odc_python} (make bench creates it)")
            results["ziggurat"] = child_result([sys.executable, *ziggurat_args(work)], " ")
            base = results.get(peer)
            for name, r in results.items():
                if r is None:
                    continue
                ratio = f"{r['wall'] / base['wall']:>10.2f}{r['cpu'] / base['cpu']:>9.2f}" if base else ""
                print(f"{name:<22}{rnd:>6}{r['wall']:>9.2f}{r['cpu']:>9.2f}{r['parent_rss_mb']:>11.0f}"
                      f"{r['child_rss_mb']:>10.0f}{ratio}")
            if base and results.get("ziggurat"):
                print("  agreement:", agree(work, there))
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(there, ignore_errors=True)

if __name__ == "__main__":
    main()
