"""Planning by index arithmetic: a 0.5 x 0.5 degree box at geodetic zooms 14-16 (and 23, WorldCRS84Quad's deepest)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from ziggurat.engine import dry_run, execute

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


def test_blocked_order_gives_the_same_tiles_as_neighbours():
    """Runs of tiles handed to one worker come from 2D blocks: same tiles, neighbours together."""
    from ziggurat.executors.base import run_block
    from ziggurat.grid import Bounds, Grid
    from ziggurat.plan.tiles import Plan

    grid = Grid.from_name("geodetic")
    first, last = grid.tile_bounds(8, 40, 100), grid.tile_bounds(8, 49, 112)   # 10 x 13 tiles
    plan = Plan(grid, (8,), Bounds(first.left + 1e-6, last.bottom + 1e-6, last.right - 1e-6, first.top - 1e-6))
    rows = [t.index for t in plan.tiles()]
    blocked = [t.index for t in plan.tiles(run_block(32))]
    assert run_block(32) == (4, 8) and sorted(blocked) == sorted(rows) and len(rows) == 130
    first_run = blocked[:32]
    assert {(i.row, i.col) for i in first_run} == {(r, c) for r in range(40, 44) for c in range(100, 108)}
    # the source marks where each block ends: the pool's runs never straddle two blocks
    from ziggurat.executors.feeder import Feeder
    from ziggurat.plan.schedule import PlanSource

    feeder = Feeder(PlanSource(plan, lambda tile: False, lambda tile: None, run_block(32)))
    runs = []
    while not feeder.exhausted:
        run = list(feeder.take(32))
        if run:
            runs.append(run)
    assert sum(len(r) for r in runs) == 130 and [len(r) for r in runs[:2]] == [32, 20]   # 4 x 8, 4 x 5
    for run in runs:
        assert len({i.row for i in run}) <= 4 and len({i.col for i in run}) <= 8
    assert [t.index for t in plan.tiles(None)] == rows
