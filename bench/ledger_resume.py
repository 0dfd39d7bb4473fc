"""The parent's cost of a resume per tile, from 10^4 to 10^6 ledger rows, in row order and along
the curve the pool walks: every tile recorded as done with the current recipe, and the engine's own
`RunRecorder.is_done` asked about each, as a continue-mode run with nothing to do asks. Then the
parent's ledger work in a fresh run: from an empty ledger, each tile along the curve asked
(`is_done`) and its outcome recorded (`RunRecorder.add`: the process row, the output tile's
checksum, timed commits), as the engine's loop does for every tile a worker finishes; per tile for
the first and the last tenth of the run. Prints microseconds per tile and the ratio of the
largest to the smallest; asserts nothing. Usage:

    python bench/ledger_resume.py [--sides 100 316 1000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger_keys import _setup  # noqa: E402  (the same recipe and source)


def resume_cost(side: int) -> dict[str, float]:
    """Microseconds per tile of `is_done` over a full ledger of side² tiles, by walk order."""
    out = _walks(side, baselevels=False)
    out.update(_walks(side, baselevels=True))
    return out


def _walks(side: int, baselevels: bool) -> dict[str, float]:
    from ziggurat.engine.run import plan
    from ziggurat.io import open_output
    from ziggurat.plan.schedule import Schedule
    from ziggurat.recipe import load_recipe
    from ziggurat.records.provenance import begin_run, run_keys

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(_setup(Path(tmp), side, baselevels))
        run_plan = plan(recipe)
        output = open_output(recipe.output, recipe.grid)
        output.prepare(False)
        keys = run_keys(recipe)
        recorder = begin_run(recipe, output, executor="bench", workers=1, options={})
        ledger = recorder.ledger
        for z in run_plan.zooms:
            ledger.record_key(keys.key(z), keys.parts_json(z))
        rows = ((t.zoom, t.row, t.col, "written", "r1", 0.0, keys.key(t.zoom), None) for t in run_plan.tiles())
        ledger._conn.executemany("INSERT INTO process_tiles VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        ledger.commit()
        if baselevels:   # the schedule's depth-first walk over every zoom, as a run with baselevels walks
            asked = [0]

            def is_done(tile) -> bool:
                asked[0] += 1
                return recorder.is_done(tile)

            start = time.perf_counter()
            handed = list(Schedule(run_plan, (10, 10), is_done))
            out["with baselevels"] = (time.perf_counter() - start) / asked[0] * 1e6
            assert not handed, len(handed)
            keys.close()
            return out
        for order, curve in (("row order", False), ("along the curve", True)):
            asked = done = 0
            start = time.perf_counter()
            for tile in run_plan.tiles(curve=curve):   # the walk itself is timed too, as a run walks
                asked += 1
                done += recorder.is_done(tile)
            out[order] = (time.perf_counter() - start) / asked * 1e6
            assert done == asked, (done, asked)
        keys.close()
    return out


def fresh_cost(side: int) -> dict[str, float]:
    """Microseconds per tile of a fresh run's ledger work (ask, then record), first and last tenth."""
    from ziggurat.core.grid import TileIndex
    from ziggurat.core.tasks import TileOutcome
    from ziggurat.engine.run import plan
    from ziggurat.io import open_output
    from ziggurat.recipe import load_recipe
    from ziggurat.records.provenance import begin_run

    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(_setup(Path(tmp), side))
        run_plan = plan(recipe)
        output = open_output(recipe.output, recipe.grid)
        output.prepare(False)
        recorder = begin_run(recipe, output, executor="bench", workers=1, options={})
        tiles = list(run_plan.tiles(curve=True))
        tenth = max(len(tiles) // 10, 1)
        marks: list[float] = []
        for i, tile in enumerate(tiles):
            if i % tenth == 0:
                marks.append(time.perf_counter())
            assert not recorder.is_done(tile)
            recorder.add(TileOutcome(TileIndex(*tile.index), "written", (TileIndex(*tile.index),),
                                     checksums=(f"{i:064x}",)))
        marks.append(time.perf_counter())
        recorder.ledger.commit()
        recorder.ledger.close()
    return {"first tenth": (marks[1] - marks[0]) / tenth * 1e6, "last tenth": (marks[-1] - marks[-2]) /
            (len(tiles) - tenth * (len(marks) - 2)) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sides", type=int, nargs="+", default=[100, 316, 1000])
    args = parser.parse_args()
    results = {side: resume_cost(side) for side in args.sides}
    print("resume with nothing to do: RunRecorder.is_done per tile (microseconds)")
    print(f"{'ledger rows':>12} {'row order':>10} {'along the curve':>16} {'with baselevels':>16}")
    for side, cost in results.items():
        print(f"{side * side:>12,} {cost['row order']:>10.1f} {cost['along the curve']:>16.1f} "
              f"{cost['with baselevels']:>16.1f}")
    for order in ("row order", "along the curve", "with baselevels"):
        values = [r[order] for r in results.values()]
        print(f"{order}: largest / smallest {max(values) / min(values):.2f}")
    fresh = {side: fresh_cost(side) for side in args.sides}
    print("\nfresh run: the parent's ledger work per tile (is_done, then RunRecorder.add), microseconds")
    print(f"{'tiles':>12} {'first tenth':>12} {'last tenth':>11}")
    for side, cost in fresh.items():
        print(f"{side * side:>12,} {cost['first tenth']:>12.1f} {cost['last tenth']:>11.1f}")
    values = [v for cost in fresh.values() for v in cost.values()]
    print(f"fresh run: largest / smallest {max(values) / min(values):.2f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
