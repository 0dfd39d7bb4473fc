"""The order tiles are handed out in, and where the runs handed to one worker end.

A worker keeps the source blocks it decoded in its own GDAL block cache (pool workers are
processes; threads each have their own dataset handle), so the tiles one worker gets should be
neighbours and the stretches two workers get should touch as little as possible.

- `curve`: a block of tiles along a generalized Hilbert curve (J. Červený's "gilbert", for any
  width and height): any stretch of it is a compact patch, whatever its length, so a run can be
  cut anywhere and still be a lump of neighbours rather than a thin strip of a row.
- `RunSizer`: guided self-scheduling. Each run is `remaining / (2 x workers)` tiles, capped by
  the executor's `run_tiles` and by `RUN_SECONDS` of work at the median tile time so far, and
  not below `run_tiles / 32` (an eighth of each worker's share in a small run) but where the time
  cap says so: big lumps while there is plenty left (few shared edges), small runs at the end
  (workers finish together).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

#: the most work (seconds, at the median tile time so far) one run holds: a slow process gets
#: short runs, so no tile waits long behind its run's others (nor looks hung to the slow-tile watch)
RUN_SECONDS = 2.0
#: the most tiles a run holds while no tile time is known yet (`RunSizer.learn`): the first
#: outcomes, and the first progress, come back after a few tiles, not after 256 slow ones
LEARN_TILES = 16


def _sign(v: int) -> int:
    return (v > 0) - (v < 0)


def curve(rows: range, cols: range) -> Iterator[tuple[int, int]]:
    """Every (row, col) of the block once, along a generalized Hilbert curve.

    Consecutive cells are neighbours (edge neighbours, but for an occasional diagonal step on
    some odd sizes). Iterative (an explicit stack), so each cell costs O(1), not a generator
    chain as deep as the recursion.
    """
    width, height = len(cols), len(rows)
    if width == 0 or height == 0:
        return
    r0, c0 = rows.start, cols.start
    # (x, y): the start cell (x = column, y = row); (ax, ay) the major axis, (bx, by) the minor
    stack = [(0, 0, width, 0, 0, height) if width >= height else (0, 0, 0, height, width, 0)]
    while stack:
        x, y, ax, ay, bx, by = stack.pop()
        w, h = abs(ax + ay), abs(bx + by)
        dax, day, dbx, dby = _sign(ax), _sign(ay), _sign(bx), _sign(by)
        if h == 1:     # a straight line along the major axis
            for i in range(w):
                yield r0 + y + i * day, c0 + x + i * dax
            continue
        if w == 1:     # a straight line along the minor axis
            for i in range(h):
                yield r0 + y + i * dby, c0 + x + i * dbx
            continue
        ax2, ay2, bx2, by2 = ax // 2, ay // 2, bx // 2, by // 2
        w2, h2 = abs(ax2 + ay2), abs(bx2 + by2)
        if 2 * w > 3 * h:   # long and thin: two halves along the major axis (pushed in reverse)
            if w2 % 2 and w > 2:
                ax2, ay2 = ax2 + dax, ay2 + day
            stack.append((x + ax2, y + ay2, ax - ax2, ay - ay2, bx, by))
            stack.append((x, y, ax2, ay2, bx, by))
        else:               # up the minor axis, across, and back down
            if h2 % 2 and h > 2:
                bx2, by2 = bx2 + dbx, by2 + dby
            stack.append((x + (ax - dax) + (bx2 - dbx), y + (ay - day) + (by2 - dby),
                          -bx2, -by2, -(ax - ax2), -(ay - ay2)))
            stack.append((x + bx2, y + by2, ax, ay, bx - bx2, by - by2))
            stack.append((x, y, bx2, by2, ax2, ay2))


@dataclass
class RunSizer:
    """Sizes the runs a task source cuts from its tiles: `took` counts tiles as they are decided
    (handed out or skipped), so `remaining` follows the run; `handed` says where a run ends."""

    workers: int
    largest: int                    # the executor's run_tiles
    remaining: int                  # tiles of the plan not yet decided
    seconds_per_tile: Callable[[], float | None] = lambda: None   # the median so far, if known
    #: runs stay at LEARN_TILES until `seconds_per_tile` knows the tile time (the engine's runs)
    learn: bool = False
    smallest: int = field(init=False)
    _left: int = field(init=False)   # tasks the current run may still take

    def __post_init__(self) -> None:
        # the floor of a run: run_tiles / 32, but an eighth of each worker's share in a small run
        # (12 tiles on 2 workers as runs of 8 and 4 would leave one worker idle half the time)
        self.smallest = max(1, min(self.largest // 32, self.remaining // (8 * max(1, self.workers))))
        self._left = self.size()

    def size(self) -> int:
        """Tiles in the next run."""
        size = min(self.largest, max(self.smallest, self.remaining // (2 * max(1, self.workers))))
        per_tile = self.seconds_per_tile()
        if per_tile:   # slow tiles: shorter runs, down to one tile each
            size = min(size, max(1, int(RUN_SECONDS / per_tile)))
        elif self.learn:   # no tile time yet: short runs until there is one
            size = min(size, LEARN_TILES)
        return max(1, size)

    def took(self, n: int = 1) -> None:
        self.remaining = max(0, self.remaining - n)

    def handed(self) -> bool:
        """One task handed out (after its `took`): True when it fills the current run, which the
        source then ends with RUN_END; the next run is sized now."""
        self._left -= 1
        if self._left > 0:
            return False
        self._left = self.size()
        return True


__all__ = ["LEARN_TILES", "RUN_SECONDS", "RunSizer", "curve"]
