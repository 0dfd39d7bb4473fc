"""Helpers for the STAC/index tests: real runs of the engine on position rasters, and the
mosaic the tiles on disk add up to (built tile by tile with rasterio, independent of ziggurat)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import morecantile
import numpy as np
import pyproj
import rasterio
import yaml

from ziggurat.core.grid import Bounds, Grid
from ziggurat.engine.run import RunSummary, execute

from conftest import position_raster

NODATA = -9999.0
IDENTITY = """
from ziggurat import Empty

def execute(src):
    data = src.read()
    if data.mask.all():
        raise Empty
    return data
"""
#: grid name -> (zoom the source is aligned to, anchor tile row/col at that zoom, CRS of the source)
GRIDS = {
    "geodetic": (6, (10, 20), "EPSG:4326"),
    "mercator": (6, (24, 33), "EPSG:3857"),
    "utm": (7, (59, 4), "EPSG:32633"),
}


def utm_grid_file(folder: Path) -> Path:
    """A custom UTM 33N tile matrix set as a TMS JSON file (what `pyramid.grid` can point to)."""
    tms = morecantile.TileMatrixSet.custom([166021.44, 0.0, 833978.56, 9329005.18],
                                           pyproj.CRS.from_epsg(32633), id="UTM33N")
    path = folder / "utm33n.json"
    path.write_text(tms.model_dump_json(exclude_none=True))
    return path


def make_recipe(tmp_path: Path, grid: str = "geodetic", *, zooms: tuple[int, int] | None = None,
                metatiling: int = 1, output_metatiling: int = 1, pixelbuffer: int = 0,
                tile_size: int | None = None, size: tuple[int, int] = (600, 500),
                offset: tuple[int, int] = (53, 37), out: str = "out", output: dict[str, Any] | None = None,
                **top: Any) -> tuple[Path, Grid]:
    """Write a source raster (values encode row/col), the identity process and a recipe.

    The source starts `offset` (cols, rows) pixels into the anchor tile at the aligned zoom, so
    tiles at its edges are partly nodata and seams fall inside the data.
    """
    zoom, (row, col), crs = GRIDS[grid]
    grid_spec = str(utm_grid_file(tmp_path)) if grid == "utm" else grid
    g = (Grid(morecantile.TileMatrixSet.model_validate_json(Path(grid_spec).read_text()), grid_spec)
         if grid == "utm" else Grid.from_name(grid))
    if tile_size:
        g = Grid(g.tms, g.name, tile_size=tile_size)
    res = g.resolution(zoom)[0]
    anchor = g.tile(zoom, row, col).bounds
    src = tmp_path / f"src_{grid}.tif"
    if not src.exists():
        position_raster(src, left=anchor.left + offset[0] * res, top=anchor.top - offset[1] * res, res=res,
                        width=size[0], height=size[1], crs=crs, nodata=NODATA)
    (tmp_path / "proc.py").write_text(textwrap.dedent(IDENTITY))
    pyramid: dict[str, Any] = {"grid": grid_spec, "metatiling": metatiling, "pixelbuffer": pixelbuffer}
    if tile_size:
        pyramid["tile_size"] = tile_size
    recipe = {
        "process": "proc.py",
        "zoom_levels": list(zooms or (zoom - 2, zoom)),
        "pyramid": pyramid,
        "input": {"src": str(src)},
        "output": {"path": str(tmp_path / out), "dtype": "float32", "nodata": NODATA,
                   "metatiling": output_metatiling, **(output or {})},
        **top,
    }
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path, g.with_options(metatiling=output_metatiling)


def run(recipe: Path, **kwargs: Any) -> RunSummary:
    summary = execute(recipe, executor="sequential", **kwargs)
    assert not summary.failed, summary.failed
    return summary


def tiles_on_disk(out: Path) -> dict[int, list[tuple[int, int]]]:
    """zoom -> sorted (row, col) of the .tif tiles, read from the folder names."""
    found: dict[int, list[tuple[int, int]]] = {}
    for p in out.glob("*/*/*.tif"):
        found.setdefault(int(p.parts[-3]), []).append((int(p.parts[-2]), int(p.stem)))
    return {z: sorted(v) for z, v in sorted(found.items())}


def extent(grid: Grid, zoom: int, cells: list[tuple[int, int]]) -> Bounds:
    rows, cols = [r for r, _ in cells], [c for _, c in cells]
    a, b = grid.tile_bounds(zoom, min(rows), min(cols)), grid.tile_bounds(zoom, max(rows), max(cols))
    return Bounds(a.left, b.bottom, b.right, a.top)


def mosaic(out: Path, grid: Grid, zoom: int, bounds: Bounds, bands: int = 1) -> np.ndarray:
    """What the tiles of `zoom` on disk show over `bounds` (nodata where there is no tile)."""
    xres, yres = grid.resolution(zoom)
    w, h = round((bounds.right - bounds.left) / xres), round((bounds.top - bounds.bottom) / yres)
    dest = np.full((bands, h, w), NODATA, dtype="float32")
    for row, col in tiles_on_disk(out).get(zoom, []):
        b = grid.tile_bounds(zoom, row, col)
        r0, c0 = round((bounds.top - b.top) / yres), round((b.left - bounds.left) / xres)
        with rasterio.open(out / str(zoom) / str(row) / f"{col}.tif") as src:
            data = src.read()
        th, tw = data.shape[1:]
        rs, cs = max(0, -r0), max(0, -c0)
        re, ce = min(th, h - r0), min(tw, w - c0)
        if rs < re and cs < ce:
            dest[:, r0 + rs:r0 + re, c0 + cs:c0 + ce] = data[:, rs:re, cs:ce]
    return dest


def recorded_tiles(out: Path) -> int:
    """Process tiles the output's ledger records as written or empty (0 before it exists)."""
    import sqlite3
    from contextlib import closing

    from ziggurat.records.ledger import ledger_path

    try:
        with closing(sqlite3.connect(f"file:{ledger_path(out)}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM process_tiles WHERE status IN ('written', 'empty')"
                              ).fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def kill_9_after(command: list[str], out: Path, recorded: int, timeout: float = 120) -> None:
    """Start `command` in its own session and kill -9 the whole group once the ledger of `out`
    records `recorded` tiles (fails if the run ends first)."""
    import os
    import signal
    import subprocess
    import time

    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while recorded_tiles(out) < recorded and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert run.poll() is None, "the run ended before it could be killed"
        os.killpg(run.pid, signal.SIGKILL)
    finally:
        run.wait()
        assert run.stdout is not None and run.stderr is not None
        run.stdout.close()
        run.stderr.close()

