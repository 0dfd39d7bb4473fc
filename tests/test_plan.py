"""Planning by index arithmetic: a 0.5 x 0.5 degree box at geodetic zooms 14-16 (and 23, WorldCRS84Quad's deepest)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from ziggurat.audit.report import dry_run
from ziggurat.engine.run import execute

from pyramid_helpers import make_recipe

BOX = (10.1, 45.1, 10.6, 45.6)   # west south east north, degrees


def _by_hand(zoom: int) -> int:
    """WorldCRS84Quad: tiles span 180 / 2**zoom degrees from (-180, 90)."""
    span = 180 / 2 ** zoom
    west, south, east, north = BOX
    cols = math.ceil((east + 180) / span) - math.floor((west + 180) / span)
    rows = math.ceil((90 - south) / span) - math.floor((90 - north) / span)
    return rows * cols


def test_tile_counts_of_a_half_degree_box_match_a_hand_computation(tmp_path):
    recipe, _ = make_recipe(tmp_path, zooms=(14, 23), bounds=list(BOX))
    report = dry_run(recipe, zoom="14,16")
    assert [z.zoom for z in report.zooms] == [14, 15, 16]
    for z in report.zooms:
        assert z.process_tiles == z.output_tiles == _by_hand(z.zoom)
        assert z.kind == "process" and z.recorded == 0 and z.estimate_basis == "uncompressed"
        assert z.estimated_bytes == z.output_tiles * 256 * 256 * 4
    assert _by_hand(14) == 46 * 46 and _by_hand(16) == 183 * 183   # 0.5 / (180 / 2**z) tiles a side (+1)
    deep = dry_run(recipe, zoom=23).zooms[0]  # the grid's deepest zoom: counts only, never enumerated
    assert deep.process_tiles == _by_hand(23) > 5 * 10 ** 8


def test_plan_counts_what_the_ledger_has_and_prints_json(tmp_path):
    recipe, grid = make_recipe(tmp_path, zooms=(5, 6), baselevels={"min": 6})
    execute(recipe, executor="sequential", zoom=6)
    report = dry_run(recipe)
    by_zoom = {z.zoom: z for z in report.zooms}
    assert by_zoom[5].kind == "lower" and by_zoom[5].recorded == 0
    assert by_zoom[6].recorded == by_zoom[6].process_tiles > 0
    assert by_zoom[6].estimate_basis.startswith("mean of")
    cli = Path(sys.executable).with_name("ziggurat")
    done = subprocess.run([str(cli), "plan", str(recipe), "--json"], capture_output=True, text=True, check=True)
    data = json.loads(done.stdout)
    assert [z["zoom"] for z in data["zooms"]] == [5, 6] and data["zooms"][1]["recorded"] == by_zoom[6].recorded


def test_curve_visits_every_cell_once_as_neighbours():
    """The generalized Hilbert curve covers any rectangle, each step to a neighbouring cell, and
    a stretch of it is a compact patch (not a thin strip of a row)."""
    from ziggurat.plan.order import curve

    for height, width in [(1, 1), (1, 7), (6, 1), (2, 3), (5, 4), (8, 9), (13, 10), (32, 32), (10, 130)]:
        cells = list(curve(range(40, 40 + height), range(100, 100 + width)))
        assert sorted(cells) == [(r, c) for r in range(40, 40 + height) for c in range(100, 100 + width)]
        assert all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) == 1 for a, b in zip(cells, cells[1:]))
        diagonal = sum(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 2 for a, b in zip(cells, cells[1:]))
        assert diagonal <= 1, (height, width)
    cells = list(curve(range(64), range(64)))
    for start in range(0, 4096, 256):   # every stretch of 256 is the 16 x 16 square a quadtree would give
        patch = cells[start:start + 256]
        assert max(r for r, _ in patch) - min(r for r, _ in patch) == 15
        assert max(c for _, c in patch) - min(c for _, c in patch) == 15
    wide = list(curve(range(3), range(5000)))   # a long strip goes along, not up and down its length
    assert max(c for _, c in wide[:300]) < 110


def test_run_sizer_is_guided_capped_and_shortens_for_slow_tiles():
    from ziggurat.plan.order import RUN_SECONDS, RunSizer

    median: list[float | None] = [None]
    sizer = RunSizer(workers=2, largest=256, remaining=10_000, seconds_per_tile=lambda: median[0])
    assert sizer.size() == 256 and sizer.smallest == 8       # plenty left: the cap
    sizer.took(10_000 - 400)
    assert sizer.size() == 100                                # 400 left / (2 x 2 workers)
    sizer.took(390)
    assert sizer.size() == 8                                  # the end: the smallest, not 2
    sizer.remaining = 10_000
    median[0] = 0.5                                           # slow tiles: RUN_SECONDS of work
    assert sizer.size() == int(RUN_SECONDS / 0.5)
    median[0] = 30.0                                          # very slow: one at a time
    assert sizer.size() == 1
    small = RunSizer(workers=2, largest=256, remaining=12)   # a small run: no floor of 8
    assert [small.size(), small.smallest] == [3, 1]
    assert RunSizer(workers=768, largest=256, remaining=1000).size() == 1


def test_runs_stay_short_until_the_tile_time_is_known():
    """The first outcomes (and progress) come back after a few tiles even when tiles are slow."""
    from ziggurat.plan.order import LEARN_TILES, RunSizer

    median: list[float | None] = [None]
    sizer = RunSizer(workers=2, largest=256, remaining=10_000, seconds_per_tile=lambda: median[0], learn=True)
    assert sizer.size() == LEARN_TILES
    median[0] = 0.001                                         # fast tiles, now known: the cap
    assert sizer.size() == 256


def test_runs_along_the_curve_give_the_same_tiles_as_neighbours():
    """With a run sizer, the source hands out the plan's tiles along the curve, cut into runs of
    neighbours that shrink towards the end; without one, in rows."""
    from ziggurat.core.grid import Bounds, Grid
    from ziggurat.executors.feeder import Feeder
    from ziggurat.plan.order import RunSizer
    from ziggurat.plan.schedule import PlanSource
    from ziggurat.plan.tiles import Plan

    grid = Grid.from_name("geodetic")
    first, last = grid.tile_bounds(8, 40, 100), grid.tile_bounds(8, 71, 131)   # 32 x 32 tiles
    plan = Plan(grid, (8,), Bounds(first.left + 1e-6, last.bottom + 1e-6, last.right - 1e-6, first.top - 1e-6))
    rows = [t.index for t in plan.tiles()]
    assert len(rows) == 1024 and rows == sorted(rows)
    sizer = RunSizer(workers=2, largest=64, remaining=plan.count())
    done = {rows[5], rows[700]}   # continue mode: skipped tiles are not handed out
    skipped: list = []
    feeder = Feeder(PlanSource(plan, lambda tile: tile.index in done, lambda tile: skipped.append(tile.index),
                               sizer))
    runs = []
    while not feeder.exhausted:
        run = list(feeder.take(1000))
        if run:
            runs.append(run)
    handed = [i for run in runs for i in run]
    assert sorted(handed + skipped) == rows and sorted(skipped) == sorted(done) and len(set(handed)) == 1022
    sizes = [len(r) for r in runs]
    # the cap while plenty is left, then a quarter of what is left per run, down to the smallest
    # (2); the last run holds what is left over
    assert sizes[:12] == [64] * 12 and sizes == sorted(sizes, reverse=True), sizes
    assert sizes[12:16] == [63, 47, 36, 27] and sizes[-5:] == [2, 2, 2, 2, 1], sizes
    for run in runs:   # each a patch: its tiles and their neighbours (the source blocks a 1 px
        # buffer reads) are 100 for 64 tiles in 8 x 8, 198 for a strip of 64 tiles of a row
        halo = {(i.row + dr, i.col + dc) for i in run for dr in (-1, 0, 1) for dc in (-1, 0, 1)}
        assert len(halo) <= (len(run) ** 0.5 + 3) ** 2, (len(run), len(halo))
        assert max(i.row for i in run) - min(i.row for i in run) < 10
        assert max(i.col for i in run) - min(i.col for i in run) < 10
    assert sizer.remaining == 0
    assert [t.index for t in plan.tiles(curve=False)] == rows


def test_inputs_far_apart_run_only_the_tiles_they_reach(tmp_path, write_recipe):
    """Two rasters 90 degrees apart and no bounds: the run covers the tiles each reaches (as
    mapchete's process area is the union of its inputs), not every tile of the box around both;
    nothing is masked (rasters read as before)."""
    from conftest import position_raster

    for name, left in (("west", -60.0), ("east", 30.0)):
        position_raster(tmp_path / f"{name}.tif", left=left, top=10.0, res=1 / 64, width=128, height=128)
    recipe = write_recipe(f"""
        process: proc.py
        zoom_levels: 7
        pyramid: {{grid: geodetic}}
        input: {{west: {tmp_path / 'west.tif'}, east: {tmp_path / 'east.tif'}}}
        output: {{path: {tmp_path / 'out'}, dtype: float32, nodata: -9999}}
        """, "r.yaml", """
        def execute(west, east):
            data = west.read(1) if not west.is_empty() else east.read(1)
            return data
        """)
    from ziggurat.engine.run import load, plan

    every = plan(load(recipe))
    box = 66 * 3   # the box around both: 66 columns of zoom 7 tiles (1.40625 degrees) between them
    assert every.geometry is not None and every.count() <= 2 * 3 * 3 < box   # 2 x 2 degrees each
    summary = execute(recipe, executor="sequential")
    assert summary.written == every.count() and summary.empty == 0
