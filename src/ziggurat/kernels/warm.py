"""Imported by the process pool's forkserver: every kernel loaded (from the disk cache, or compiled
once on a machine that has none), so the workers it forks share the machine code instead of each
loading or compiling it on its first tile."""

from __future__ import annotations

import numpy as np

from ziggurat.kernels.focal import SHAPES, STATISTICS, focal
from ziggurat.kernels.temporal import best, gapfill, median, quantile
from ziggurat.kernels.terrain import aspect, hillshade, slope


def warm() -> None:
    """One call of each kernel on tiny arrays, for the argument types the processes pass."""
    for dtype in (np.float32, np.float64):
        dem = np.ma.masked_array(np.zeros((3, 3), dtype=dtype), mask=False)
        hillshade(dem, 1.0, -1.0)
        slope(dem, 1.0, -1.0)
        aspect(dem)
    for statistic in STATISTICS:
        for shape in SHAPES:
            focal(np.zeros((3, 3), dtype=np.float32), statistic, 1, shape)
    obs, valid = np.zeros((1, 1, 1, 1), dtype=np.float32), np.ones((1, 1, 1), dtype=bool)
    median(obs, valid)
    quantile(obs, valid, 0.5)
    best(obs, valid, np.zeros((1, 1, 1)))
    gapfill(obs, np.zeros(1))


warm()

__all__ = ["warm"]
