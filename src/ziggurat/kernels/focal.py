"""Focal (moving-window) statistics: mean, min, max, std, sum or median of the valid values in a
square or circular window around each pixel, compiled.

Masked and NaN values are left out of every window; a pixel whose window holds no valid value is
masked, and so is every pixel within `radius` of the array's edge (its window does not fit: a
tile needs a pixel buffer of at least `radius`).
"""

from __future__ import annotations

import math

import numpy as np

from ziggurat.kernels._jit import kernel, sort_head

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


@kernel
def _reduce(buf, n, stat):  # type: ignore[no-untyped-def]
    if stat == 1 or stat == 2:   # min, max
        best = buf[0]
        for k in range(1, n):
            if (stat == 1 and buf[k] < best) or (stat == 2 and buf[k] > best):
                best = buf[k]
        return best
    if stat == 5:   # median
        sort_head(buf, n)
        h = n // 2
        return buf[h] if n % 2 else (buf[h - 1] + buf[h]) / 2.0
    total = 0.0
    for k in range(n):
        total += buf[k]
    if stat == 4:   # sum
        return total
    mean = total / n
    if stat == 0:
        return mean
    dev = 0.0   # std (population), two passes
    for k in range(n):
        dev += (buf[k] - mean) * (buf[k] - mean)
    return math.sqrt(dev / n)


@kernel
def _focal(data, mask, offsets, radius, stat, out, out_mask):  # type: ignore[no-untyped-def]
    h, w = data.shape
    buf = np.empty(offsets.shape[0], dtype=np.float64)
    for r in range(radius, h - radius):
        for c in range(radius, w - radius):
            n = 0
            for k in range(offsets.shape[0]):
                y, x = r + offsets[k, 0], c + offsets[k, 1]
                v = float(data[y, x])
                if not mask[y, x] and v == v:
                    buf[n] = v
                    n += 1
            if n:
                out[r, c] = _reduce(buf, n, stat)
                out_mask[r, c] = False


@kernel
def _box_sums(data, mask, radius, mean, out, out_mask):  # type: ignore[no-untyped-def]
    """Mean or sum over square windows: per row, each column's sum over the window's rows, then
    the window's columns; the same order of additions wherever the tile starts."""
    h, w = data.shape
    col_sum = np.empty(w, dtype=np.float64)
    col_n = np.empty(w, dtype=np.int64)
    for r in range(radius, h - radius):
        for c in range(w):
            s, n = 0.0, 0
            for y in range(r - radius, r + radius + 1):
                v = float(data[y, c])
                if not mask[y, c] and v == v:
                    s += v
                    n += 1
            col_sum[c], col_n[c] = s, n
        for c in range(radius, w - radius):
            s, n = 0.0, 0
            for x in range(c - radius, c + radius + 1):
                s += col_sum[x]
                n += col_n[x]
            if n:
                out[r, c] = s / n if mean else s
                out_mask[r, c] = False


def focal(data: np.ndarray | np.ma.MaskedArray, statistic: str = "mean", radius: int = 1,
          shape: str = "square") -> np.ma.MaskedArray:
    """The `statistic` of the valid values in the window around each pixel of a 2D array, as
    float32 (sums and means accumulate in float64)."""
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
        _box_sums(values, mask, int(radius), statistic == "mean", out, out_mask)
    else:
        _focal(values, mask, offsets, int(radius), STATISTICS.index(statistic), out, out_mask)
    return np.ma.masked_array(out, mask=out_mask)


__all__ = ["SHAPES", "STATISTICS", "focal", "window_offsets"]
