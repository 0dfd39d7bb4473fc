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




@kernel
def _sorted_remove(buf, n, v):  # type: ignore[no-untyped-def]
    """Take one value equal to `v` out of the sorted `buf[:n]`; returns the new count."""
    lo, hi = 0, n
    while lo < hi:   # the first index holding a value >= v
        mid = (lo + hi) // 2
        if buf[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    for k in range(lo, n - 1):
        buf[k] = buf[k + 1]
    return n - 1


@kernel
def _sorted_insert(buf, n, v):  # type: ignore[no-untyped-def]
    """Put `v` into the sorted `buf[:n]`; returns the new count."""
    k = n
    while k > 0 and buf[k - 1] > v:
        buf[k] = buf[k - 1]
        k -= 1
    buf[k] = v
    return n + 1


@kernel
def _median_rows(data, mask, half, radius, out, out_mask):  # type: ignore[no-untyped-def]
    """The median of a window whose row dy spans columns -half[dy]..half[dy] (a square or a
    circle), kept sorted as it slides along a row: each step takes out the cells that leave on
    the left and puts in those that enter on the right, instead of sorting the window again.
    The sorted values are those a sort of the window gives, so the medians are too."""
    h, w = data.shape
    buf = np.empty(half.shape[0] * (2 * radius + 1), dtype=np.float64)
    for r in range(radius, h - radius):
        n = 0
        for dy in range(-radius, radius + 1):   # the first window of the row
            for dx in range(-half[dy + radius], half[dy + radius] + 1):
                v = float(data[r + dy, radius + dx])
                if not mask[r + dy, radius + dx] and v == v:
                    n = _sorted_insert(buf, n, v)
        for c in range(radius, w - radius):
            if c > radius:
                for dy in range(-radius, radius + 1):
                    y, reach = r + dy, half[dy + radius]
                    v = float(data[y, c - 1 - reach])
                    if not mask[y, c - 1 - reach] and v == v:
                        n = _sorted_remove(buf, n, v)
                    v = float(data[y, c + reach])
                    if not mask[y, c + reach] and v == v:
                        n = _sorted_insert(buf, n, v)
            if n:
                m = n // 2
                out[r, c] = buf[m] if n % 2 else (buf[m - 1] + buf[m]) / 2.0
                out_mask[r, c] = False


__all__ = ["_box_sums", "_focal", "_median_rows", "_reduce"]
