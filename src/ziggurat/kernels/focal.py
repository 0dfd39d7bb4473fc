"""Focal (moving-window) statistics: mean, min, max, std, sum or median of the valid values in a
square or circular window around each pixel, compiled.

Masked and NaN values are left out of every window; a pixel whose window holds no valid value is
masked, and so is every pixel within `radius` of the array's edge (its window does not fit: a
tile needs a pixel buffer of at least `radius`).
"""

from __future__ import annotations

import numpy as np

STATISTICS = ("mean", "min", "max", "std", "sum", "median")
SHAPES = ("square", "circle")


def window_offsets(radius: int, shape: str = "square") -> np.ndarray:
    """(dy, dx) of every window cell: all of the (2r+1)² square, or those within `radius` of the
    centre (a circle, cell centres at distance <= radius)."""
    if radius < 1 or int(radius) != radius:
        raise ValueError(f"radius must be a whole number of pixels >= 1, got {radius!r}")
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    r = int(radius)
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    keep = np.ones_like(dy, dtype=bool) if shape == "square" else dy * dy + dx * dx <= r * r
    return np.ascontiguousarray(np.stack([dy[keep], dx[keep]], axis=1).astype(np.int64))


def focal(data: np.ndarray | np.ma.MaskedArray, statistic: str = "mean", radius: int = 1,
          shape: str = "square") -> np.ma.MaskedArray:
    """The `statistic` of the valid values in the window around each pixel of a 2D array, as
    float32 (sums and means accumulate in float64)."""
    from ziggurat.kernels import _focal as loops  # numba loads on the first call
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
    offsets = window_offsets(radius, shape)
    arr = np.ma.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"data must be 2D, got shape {arr.shape}")
    values = np.ascontiguousarray(np.ma.getdata(arr))
    mask = np.ascontiguousarray(np.ma.getmaskarray(arr))
    out = np.zeros(values.shape, dtype=np.float32)
    out_mask = np.ones(values.shape, dtype=bool)
    if shape == "square" and statistic in ("mean", "sum"):
        loops._box_sums(values, mask, int(radius), statistic == "mean", out, out_mask)
    elif statistic == "median":   # each window row's reach: the largest dx of that dy
        half = np.zeros(2 * int(radius) + 1, dtype=np.int64)
        np.maximum.at(half, offsets[:, 0] + int(radius), offsets[:, 1])
        loops._median_rows(values, mask, half, int(radius), out, out_mask)
    else:
        loops._focal(values, mask, offsets, int(radius), STATISTICS.index(statistic), out, out_mask)
    return np.ma.masked_array(out, mask=out_mask)


__all__ = ["SHAPES", "STATISTICS", "focal", "window_offsets"]
