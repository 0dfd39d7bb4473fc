"""Time series out: ziggurat's `timeseries` process into a Zarr time axis against xarray + dask.

A synthetic year of 48 scenes of 2048 x 2048 px (B04, B08 and an SCL band; four a month, March,
July and August overcast; recipes/data/make_scenes.py --series, cached in bench/.cache) turned
into 12 monthly steps: per pixel the median of each month's clear observations, months without
one filled linearly between neighbours at most 70 days apart, then a Savitzky-Golay filter
(window 5, order 2) over every complete series; written to Zarr. ziggurat: geodetic zoom 12,
metatiling 2 (16 process tiles of 512 px), 2 worker processes. The peer, in its own environment
(.venv-odc; `make bench` creates it): odc-stac `load` (dask chunks of 512) on a LocalCluster of 2
single-thread workers, `resample(time="1MS").median()`, `interpolate_na(max_gap=70 days)` on the
steps' centres, `scipy.signal.savgol_filter` through `apply_ufunc`, `to_zarr`. Prints wall, CPU of
the process tree, peak RSS, the ratios and how far the two series differ; asserts nothing.

    python bench/timeseries.py [--size 2048] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


from composite import ODC_PYTHON, PEER_REPORT, cached_catalog, compare, measured_run  # noqa: E402

PARAMS = "{method: median, gapfill: linear, max_gap: 70 days, smooth: {savgol: {window: 5, order: 2}}}"


def run_ziggurat(cat: Path, workdir: Path) -> None:
    recipe = workdir / "series.yaml"
    recipe.write_text(f"""process: timeseries
zoom_levels: 12
pyramid: {{grid: geodetic, metatiling: 2}}
input:
  scenes: {{stac: {cat}, assets: [B04, B08, SCL]}}
process_parameters: {PARAMS}
output: {{path: {workdir / 'out.zarr'}, dtype: float32, nodata: -9999, bands: 2, metatiling: 2,
          time: {{start: 2024-01-01, end: 2024-12-31, every: 1 month}}}}
""")
    measured_run(recipe)


PEER_SCRIPT = r'''
import json, resource, sys, time
from pathlib import Path
start = time.perf_counter()
import numpy as np, pandas as pd, pystac, xarray as xr
from dask.distributed import Client, LocalCluster
from odc.stac import load
from scipy.signal import savgol_filter
cat, out, res = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
items = list(pystac.Catalog.from_file(cat).get_items(recursive=True))


def smooth(series):   # (..., time): Savitzky-Golay where the series is complete, as it is elsewhere
    complete = ~np.isnan(series).any(axis=-1)
    out = series.copy()
    if complete.any():
        out[complete] = savgol_filter(series[complete], 5, 2, axis=-1, mode="interp")
    return out


with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
        Client(cluster):
    ds = load(items, bands=["B04", "B08", "SCL"], chunks={"x": 512, "y": 512}, groupby=None,
              resampling="nearest", crs="EPSG:4326", resolution=res)
    ds = ds.rename({k: v for k, v in {"latitude": "y", "longitude": "x"}.items() if k in ds.dims})
    bad = ds["SCL"].isin([0, 1, 2, 3, 8, 9, 10, 11])
    clear = xr.concat([ds[b].where(~bad & (ds[b] != 0)) for b in ("B04", "B08")], dim="band")
    clear = clear.chunk({"time": -1})   # all of a pixel's scenes in one chunk: what median wants
    monthly = clear.resample(time="1MS").median(skipna=True).astype("float32")
    starts = pd.DatetimeIndex(monthly.time.values)
    ends = starts + pd.offsets.MonthBegin(1)
    monthly = monthly.assign_coords(time=starts + (ends - starts) / 2)    # each step at its centre
    filled = monthly.chunk({"time": -1}).interpolate_na("time", method="linear", max_gap=pd.Timedelta("70D"))
    smoothed = xr.apply_ufunc(smooth, filled.chunk({"time": -1}), input_core_dims=[["time"]],
                              output_core_dims=[["time"]], dask="parallelized", output_dtypes=["float32"])
    smoothed.transpose("time", "band", "y", "x").to_dataset(name="data").to_zarr(out, mode="w")
''' + PEER_REPORT


def _agree(zarr_z: Path, zarr_peer: Path) -> str:
    """How far the two series are apart where both have a value, and where only one has."""
    import numpy as np
    import xarray as xr

    ours = xr.open_zarr(zarr_z, group="12").data
    theirs = xr.open_zarr(zarr_peer).data
    x0 = int(np.abs(ours.x.values - float(theirs.x[0])).argmin())
    y0 = int(np.abs(ours.y.values - float(theirs.y[0])).argmin())
    a = ours.values[:, :, y0:y0 + theirs.sizes["y"], x0:x0 + theirs.sizes["x"]]
    b = theirs.values[:, :, :a.shape[2], :a.shape[3]]
    both = ~np.isnan(a) & ~np.isnan(b)
    only = int((np.isnan(a) != np.isnan(b)).sum())
    worst = float(np.abs(a - b)[both].max()) if both.any() else float("nan")
    return f"{int(both.sum())} values compared, largest difference {worst:.4g}; {only} valid in one only"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--odc-python", type=Path, default=ODC_PYTHON)
    parser.add_argument("--child", type=Path)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.child:
        run_ziggurat(args.child, args.workdir)
        return
    cat = cached_catalog(f"series-{args.size}", "make_series_catalog", size=args.size)
    print(f"a year of 48 scenes of {args.size} x {args.size} px into 12 monthly steps (median, linear fill within "
          f"70 days, Savitzky-Golay 5/2), Zarr, 2 workers, {os.cpu_count()} CPUs")
    res = 180 / 2 ** 12 / 256
    compare(args.rounds, "xarray + dask", args.odc_python,
            lambda peer: ["-c", PEER_SCRIPT, str(cat), str(peer / "series.zarr"), repr(res)],
            lambda work: [__file__, "--child", str(cat), "--workdir", str(work)],
            lambda work, peer: _agree(work / "out.zarr", peer / "series.zarr"))

if __name__ == "__main__":
    main()
