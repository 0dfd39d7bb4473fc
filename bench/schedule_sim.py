"""How many source blocks workers decode, by how tiles are handed out: a simulation.

Each tile reads its 3 x 3 source blocks (a tile the size of a source block with a 1 px buffer);
each worker keeps every block it decoded (its own GDAL cache); a worker takes the next run when
it is free (tile times vary by +-30 %, a decode costs 0.13 of a tile, as a 256² float32 deflate
block against the hillshade's ~11 ms tile). Compared: ziggurat's runs (`plan.order`: the
Hilbert curve cut by `RunSizer`, run_tiles 256), fixed 4 x 8 blocks walked in rows (the scheme
before), fixed runs of 32 along the curve, and single tiles in rows. Prints decoded blocks per
tile and the last worker's finish against the ideal (all work / workers); asserts nothing:

    python bench/schedule_sim.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import heapq
import random
from typing import Iterator

from ziggurat.plan.order import RunSizer, curve

DECODE = 0.13
JITTER = 0.3
Cell = tuple[int, int]


def guided(n: int, workers: int, largest: int) -> list[list[Cell]]:
    """ziggurat's runs: the curve, cut where `RunSizer` says (tile times not known: no time cap)."""
    sizer = RunSizer(workers, largest, n * n)
    runs: list[list[Cell]] = [[]]
    for cell in curve(range(n), range(n)):
        sizer.took()
        runs[-1].append(cell)
        if sizer.handed():
            runs.append([])
    return [r for r in runs if r]


def fixed_curve(n: int, size: int) -> list[list[Cell]]:
    cells = list(curve(range(n), range(n)))
    return [cells[i:i + size] for i in range(0, len(cells), size)]


def blocks(n: int, band: int = 4, group: int = 8) -> list[list[Cell]]:
    return [[(r, c) for r in range(r0, min(r0 + band, n)) for c in range(c0, min(c0 + group, n))]
            for r0 in range(0, n, band) for c0 in range(0, n, group)]


def singles(n: int) -> list[list[Cell]]:
    return [[(r, c)] for r in range(n) for c in range(n)]


def simulate(runs: list[list[Cell]], workers: int, seed: int) -> tuple[float, float]:
    rng = random.Random(seed)
    caches: list[set[Cell]] = [set() for _ in range(workers)]
    free = [(0.0, w) for w in range(workers)]
    decodes, end = 0, 0.0
    for run in runs:
        at, w = heapq.heappop(free)
        cost = 0.0
        for r, c in run:
            cost += 1 + rng.uniform(-JITTER, JITTER)
            for block in _around(r, c):
                if block not in caches[w]:
                    caches[w].add(block)
                    decodes += 1
                    cost += DECODE
        end = max(end, at + cost)
        heapq.heappush(free, (at + cost, w))
    tiles = sum(len(r) for r in runs)
    return decodes / tiles, end / (tiles * (1 + DECODE) / workers)


def _around(r: int, c: int) -> Iterator[Cell]:
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            yield r + dr, c + dc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'tiles':>9}{'workers':>9}  {'scheme':<34}{'blocks/tile':>12}{'finish/ideal':>14}")
    for n, workers in ((32, 2), (64, 2), (200, 2), (200, 8), (400, 32)):
        schemes = {"ziggurat: curve, guided runs <= 256": guided(n, workers, 256),
                   "4 x 8 blocks in rows (before)": blocks(n),
                   "curve, fixed runs of 32": fixed_curve(n, 32),
                   "single tiles in rows": singles(n)}
        for name, runs in schemes.items():
            got = [simulate(runs, workers, seed) for seed in range(args.seeds)]
            print(f"{n * n:>9,}{workers:>9}  {name:<34}{sum(d for d, _ in got) / len(got):>12.2f}"
                  f"{sum(f for _, f in got) / len(got):>14.3f}")


if __name__ == "__main__":
    main()
