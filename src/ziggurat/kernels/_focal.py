"""The compiled loops of the focal statistics, apart so that importing `kernels.focal` costs no
numba import in a parent that never calls them."""

from __future__ import annotations

import math

import numpy as np

from ziggurat.kernels._jit import kernel, sort_head


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


__all__ = ["_box_sums", "_focal", "_reduce"]
