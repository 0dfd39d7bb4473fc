"""Overviews from `baselevels`: lower zooms from the children, higher zooms from the parent,
correct on the first run, scheduled as soon as their sources are done."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from ziggurat.core.grid import Bounds
from ziggurat.engine.run import execute
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
    # the source tiles covering the tile: its own extent at the finer zoom; at the coarser, the
    # parent and what its neighbours hold within 4 pixels of the tile (no seams at parent edges)
    if source_zoom < zoom:
        b = Bounds(b.left - 4 * xres, b.bottom - 4 * yres, b.right + 4 * xres, b.top + 4 * yres)
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


@pytest.mark.parametrize("resampling", ["bilinear", "cubic"])
def test_higher_overviews_of_a_smooth_surface_have_no_seams_at_parent_edges(tmp_path, resampling):
    """The source is a plane (value = row * 1000 + col): upsampled, every step between neighbouring
    pixels is the same, also across the edges of the parent tiles the higher tiles were made from."""
    recipe, grid = make_recipe(tmp_path, zooms=(6, 7), size=(900, 700),
                               baselevels={"min": 6, "max": 6, "higher": resampling})
    assert not execute(recipe, executor="processes", workers=2).failed
    out = tmp_path / "out"
    parent = grid.tile(6, 10, 21)              # inside the data, with neighbours on every side
    inner = grid.tile_bounds(7, 2 * 10 + 1, 2 * 21 + 1)
    area = Bounds(parent.bounds.left + (parent.bounds.right - parent.bounds.left) / 2, inner.bottom - 0.5,
                  inner.right + 0.7, inner.top)    # across the parent's right and bottom edges
    view = mosaic(out, grid, 7, area)[0]
    assert (view != NODATA).all()
    xres, yres = grid.resolution(7)
    edge_col = round((parent.bounds.right - area.left) / xres)
    edge_row = round((area.top - parent.bounds.bottom) / yres)
    across, down = np.diff(view, axis=1), np.diff(view, axis=0)
    np.testing.assert_allclose(across, 0.5, atol=1e-3)        # half a source pixel per pixel
    np.testing.assert_allclose(down, 500.0, atol=1e-1)
    assert abs(across[:, edge_col - 1].mean() - 0.5) < 1e-3 and abs(down[edge_row - 1].mean() - 500) < 1e-1


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


def test_a_higher_tile_waits_for_its_parents_neighbours():
    """The schedule hands out a higher tile only once its parent and the parent's neighbours in the
    run are done: it reads their edge pixels."""
    from ziggurat.core.grid import Grid
    from ziggurat.core.tasks import WAIT, OverviewTask
    from ziggurat.plan.schedule import Schedule
    from ziggurat.plan.tiles import Plan

    grid = Grid.from_name("geodetic")
    first, last = grid.tile_bounds(6, 10, 20), grid.tile_bounds(6, 12, 22)
    plan = Plan(grid, (6, 7), Bounds(first.left + 0.01, last.bottom + 0.01, last.right - 0.01, first.top - 0.01))
    source = Schedule(plan, (6, 6))
    pulled, higher_seen = iter(source), []
    base = []
    for task in pulled:
        if task is WAIT:
            break
        base.append(task)
    assert sorted((t.row, t.col) for t in base) == [(r, c) for r in (10, 11, 12) for c in (20, 21, 22)]
    done: set[tuple[int, int]] = set()
    for task in sorted(base, key=lambda t: (t.row, t.col)):   # finished row by row
        source.finished(task, True)
        done.add((task.row, task.col))
        for ready in list(source._ready):
            assert isinstance(ready, OverviewTask)
            parent = (ready.row // 2, ready.col // 2)
            hood = {(parent[0] + dr, parent[1] + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)}
            assert hood & {(r, c) for r in (10, 11, 12) for c in (20, 21, 22)} <= done, ready
            higher_seen.append(ready)
        source._ready.clear()
    assert {(t.row // 2, t.col // 2) for t in higher_seen} == {(r, c) for r in (10, 11, 12) for c in (20, 21, 22)}
    # the centre's children come only after the last neighbour of the centre (12, 21) finished
    assert max(i for i, t in enumerate(higher_seen) if (t.row // 2, t.col // 2) == (11, 21)) > \
        min(i for i, t in enumerate(higher_seen) if (t.row // 2, t.col // 2) == (10, 20))
