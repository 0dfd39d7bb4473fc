"""Overviews from `baselevels`: lower zooms from the children, higher zooms from the parent,
correct on the first run, scheduled as soon as their sources are done."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from ziggurat.engine import execute
from ziggurat.grid import Bounds
from ziggurat.records.provenance import read_manifest, read_tile_records

from pyramid_helpers import NODATA, make_recipe, mosaic, tiles_on_disk

BASE = 6   # the source is aligned to geodetic zoom 6
LEVELS = {"min": BASE, "max": BASE, "lower": "average", "higher": "bilinear"}


def _recipe(tmp_path, **levels):
    return make_recipe(tmp_path, zooms=(3, 7), baselevels={**LEVELS, **levels})


def _expected(out, grid, zoom, row, col, source_zoom, resampling):
    """A direct resampling of the source zoom's tiles on disk onto the tile (independent of ziggurat)."""
    tile = grid.tile(zoom, row, col)
    b = tile.bounds
    xres, yres = grid.resolution(source_zoom)
    # the source tiles covering the tile: its own extent at the finer zoom, or the parent's at the coarser
    src_tiles = list(grid.tiles_in_bounds(b, source_zoom))
    area = Bounds(min(t.bounds.left for t in src_tiles), min(t.bounds.bottom for t in src_tiles),
                  max(t.bounds.right for t in src_tiles), max(t.bounds.top for t in src_tiles))
    src = mosaic(out, grid, source_zoom, area)
    dest = np.full((1, *tile.shape), NODATA, dtype="float32")
    reproject(src, dest, src_transform=rasterio.Affine(xres, 0, area.left, 0, -yres, area.top),
              src_crs="EPSG:4326", dst_transform=tile.affine, dst_crs="EPSG:4326",
              src_nodata=NODATA, dst_nodata=NODATA, resampling=Resampling[resampling])
    return dest


@pytest.mark.parametrize("executor", ["sequential", "threads", "processes"])
def test_overview_pixels_equal_a_resampling_of_their_sources_on_the_first_run(tmp_path, executor):
    recipe, grid = _recipe(tmp_path)
    summary = execute(recipe, executor=executor, workers=2)
    assert not summary.failed
    out = tmp_path / "out"
    found = tiles_on_disk(out)
    assert set(found) == {3, 4, 5, 6, 7}
    checked = 0
    for zoom, cells in found.items():
        if zoom == BASE:
            continue
        source, resampling = (zoom + 1, "average") if zoom < BASE else (zoom - 1, "bilinear")
        for row, col in cells:
            with rasterio.open(out / str(zoom) / str(row) / f"{col}.tif") as ds:
                got = ds.read()
            np.testing.assert_array_equal(got, _expected(out, grid, zoom, row, col, source, resampling),
                                          err_msg=f"tile {zoom}/{row}/{col}")
            checked += 1
    assert checked >= 8
    # every planned tile has an outcome, and a rerun finds them all in the ledger
    again = execute(recipe, executor=executor, workers=2)
    assert again.skipped == again.total == summary.total and again.written == again.empty == 0


def test_nearest_lower_and_higher_and_processing_only_the_baselevel(tmp_path):
    recipe, grid = _recipe(tmp_path, lower="nearest", higher="nearest")
    calls = tmp_path / "calls.txt"
    proc = tmp_path / "proc.py"
    proc.write_text(proc.read_text().replace(
        "def execute(src):", f"def execute(src, tile):\n    open({str(calls)!r}, 'a').write(f'{{tile.zoom}}\\n')"))
    execute(recipe, executor="sequential")
    assert set(calls.read_text().split()) == {str(BASE)}  # only the baselevel ran the process
    out = tmp_path / "out"
    for zoom, cells in tiles_on_disk(out).items():
        if zoom != BASE:
            source = zoom + 1 if zoom < BASE else zoom - 1
            for row, col in cells:
                with rasterio.open(out / str(zoom) / str(row) / f"{col}.tif") as ds:
                    np.testing.assert_array_equal(ds.read(), _expected(out, grid, zoom, row, col, source,
                                                                       "nearest"))


def test_a_lower_tile_runs_before_the_last_baselevel_tile(tmp_path):
    recipe, _ = _recipe(tmp_path)
    order = []
    execute(recipe, executor="sequential", progress=lambda e: order.append(e.outcome.index))
    zooms = [index.zoom for index in order]
    first_lower = zooms.index(BASE - 1)
    last_base = len(zooms) - 1 - zooms[::-1].index(BASE)
    assert first_lower < last_base, zooms
    # every lower tile comes after all its children, every higher tile after its parent
    position = {tuple(i): n for n, i in enumerate(order)}
    for (z, r, c), n in position.items():
        if z < BASE:
            kids = [k for k in position if k[0] == z + 1 and k[1] // 2 == r and k[2] // 2 == c]
            assert kids and all(position[k] < n for k in kids)
        if z > BASE:
            assert position[(z - 1, r // 2, c // 2)] < n


def test_a_regional_update_rebuilds_only_the_affected_ancestors_and_descendants(tmp_path):
    recipe, grid = _recipe(tmp_path)
    out = tmp_path / "out"
    first = execute(recipe, executor="threads", workers=2)
    run1 = read_manifest(out)["run"]
    t = grid.tile(BASE, 11, 21)  # a small box inside one baselevel tile
    b = t.bounds
    box = (b.left + 0.1, b.bottom + 0.1, b.left + 0.3, b.bottom + 0.3)
    second = execute(recipe, executor="threads", workers=2, bounds=box, overwrite=True)
    run2 = read_manifest(out)["run"]
    expected = {(z, r, c) for z in range(3, 8) for r in grid.tile_range(box, z)[0]
                for c in grid.tile_range(box, z)[1]}
    assert second.total == len(expected) == 5  # one tile per zoom: its ancestors and descendant
    records = read_tile_records(out)
    assert {tuple(r.index) for r in records.values() if r.run == run2} == expected
    assert sum(r.run == run1 for r in records.values()) == len(records) - len(expected)
    assert first.total > 4 * second.total
