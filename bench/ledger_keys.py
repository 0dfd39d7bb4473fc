"""Continue mode at scale: deciding skip or stale for 1,000,000 ledger rows.

An output whose ledger holds 1,000,000 process tiles (1,000 x 1,000 at geodetic zoom 10),
half made by the current recipe and half by an older one (another process parameter), and
the engine's own `RunRecorder.is_done` asked about every tile of the plan, in plan order, as
a continue-mode run does. Prints seconds, tiles per second, peak RSS and the counts; asserts
nothing. Usage:

    python bench/ledger_keys.py [--side 1000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine


def _setup(folder: Path, side: int, baselevels: bool = False) -> Path:
    with rasterio.open(folder / "src.tif", "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=Affine(0.01, 0, 0, 0, -0.01, 0.08)) as dst:
        dst.write(np.ones((1, 8, 8), "uint8"))
    (folder / "proc.py").write_text("def execute(src, gain=1.0):\n    return src.read(1) * gain\n")
    span = 180 / 2**10
    recipe = folder / "recipe.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        process: proc.py
        zoom_levels: {"[4, 10]" if baselevels else 10}
        {"baselevels: {min: 10, max: 10}" if baselevels else ""}
        pyramid: {{grid: geodetic}}
        input: {{src: src.tif}}
        output: {{path: out, dtype: uint8, nodata: 0}}
        bounds: [-180, {90 - side * span + span / 2}, {-180 + side * span - span / 2}, 90]
        process_parameters: {{gain: 2.0}}
        """))
    return recipe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=1000, help="tiles per side (rows = side**2)")
    args = parser.parse_args()
    from ziggurat.engine.run import plan
    from ziggurat.io import open_output
    from ziggurat.recipe import load_recipe
    from ziggurat.records.provenance import begin_run, run_keys

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        recipe = load_recipe(_setup(folder, args.side))
        run_plan = plan(recipe)
        output = open_output(recipe.output, recipe.grid)
        output.prepare(False)
        current = run_keys(recipe)
        older = run_keys(load_recipe(_older(folder)))
        recorder = begin_run(recipe, output, executor="bench", workers=1, options={})
        ledger = recorder.ledger
        now, old = current.key(10), older.key(10)
        ledger.record_key(now, current.parts_json(10))
        ledger.record_key(old, older.parts_json(10))
        t0 = time.perf_counter()
        rows = ((t.zoom, t.row, t.col, "written", "r1", 0.0, now if (t.row + t.col) % 2 else old, None)
                for t in run_plan.tiles())
        ledger._conn.executemany("INSERT INTO process_tiles VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        ledger.commit()
        filled = time.perf_counter() - t0
        count = ledger._conn.execute("SELECT count(*) FROM process_tiles").fetchone()[0]
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        done = stale = 0
        reasons = set()
        for tile in run_plan.tiles():
            if recorder.is_done(tile):
                done += 1
            else:  # a run processes it next; its outcome clears the remembered reason
                stale += 1
                reasons.add(recorder._stale_reasons.pop(tile.index))
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"ledger rows: {count:,} (filled in {filled:.1f} s)")
        print(f"decided {done + stale:,} tiles in {seconds:.2f} s ({(done + stale) / seconds:,.0f} tiles/s): "
              f"{done:,} skip, {stale:,} stale ({', '.join(sorted(reasons))})")
        print(f"peak RSS {peak:.0f} MB (before deciding: {base_rss:.0f} MB); targets: < 5 s, < 300 MB")
        current.close()
        older.close()


def _older(folder: Path) -> Path:
    older = folder / "older.yaml"
    older.write_text((folder / "recipe.yaml").read_text().replace("gain: 2.0", "gain: 3.0"))
    return older


if __name__ == "__main__":
    main()
