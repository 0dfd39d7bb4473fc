"""The compiled loops of the terrain kernels, apart so that importing `kernels.terrain` (every
process module that shades or slopes) costs no numba import in a parent that never calls them."""

from __future__ import annotations

import math

import numpy as np

from ziggurat.kernels._jit import kernel

_TO_DEG = 180.0 / math.pi


@kernel
def _bad_windows(data, mask, r, bad_rows, bad):  # type: ignore[no-untyped-def]
    """`bad[c]`: the 3x3 window around (r, c) holds a masked or non-finite value. `bad_rows` keeps
    each pixel's own state for rows r-1..r+1 (a ring of 3 rows), so every pixel is tested once."""
    w = data.shape[1]
    if r == 1:
        for k in range(2):
            for c in range(w):
                bad_rows[k, c] = mask[k, c] or not math.isfinite(data[k, c])
    nxt = (r + 1) % 3
    for c in range(w):
        bad_rows[nxt, c] = mask[r + 1, c] or not math.isfinite(data[r + 1, c])
    for c in range(w):   # a column of three
        bad[c] = bad_rows[0, c] or bad_rows[1, c] or bad_rows[2, c]
    prev = bad[0]
    for c in range(1, w - 1):   # ... and three such columns
        here = bad[c]
        bad[c] = prev or here or bad[c + 1]
        prev = here


@kernel
def _window(data, r, c):  # type: ignore[no-untyped-def]
    """The 3x3 window around (r, c) as float64, row by row: w0 w1 w2 / w3 w4 w5 / w6 w7 w8."""
    return (float(data[r - 1, c - 1]), float(data[r - 1, c]), float(data[r - 1, c + 1]),
            float(data[r, c - 1]), float(data[r, c]), float(data[r, c + 1]),
            float(data[r + 1, c - 1]), float(data[r + 1, c]), float(data[r + 1, c + 1]))


@kernel
def _cos_incidence(up, mid, dn, z, ex, ny, sin_alt, sin_az, cos_az, cos_alt, row):  # type: ignore[no-untyped-def]
    """`row[c]`: the cosine of the incidence angle at column c + 1 of the middle row. Pure
    arithmetic without branches, so the compiler runs it on several pixels at once (SIMD); the
    operations and their order are the numpy version's, so the bits are too."""
    for c in range(row.shape[0]):   # (indexes that never go below 0: no wraparound test per pixel)
        a, b, cc = np.float64(up[c]), np.float64(up[c + 1]), np.float64(up[c + 2])
        d, f = np.float64(mid[c]), np.float64(mid[c + 2])
        g, hh, i = np.float64(dn[c]), np.float64(dn[c + 1]), np.float64(dn[c + 2])
        p = z * ((cc + 2 * f + i) - (a + 2 * d + g)) / ex
        q = z * ((a + 2 * b + cc) - (g + 2 * hh + i)) / ny
        row[c] = (sin_alt - (p * sin_az + q * cos_az) * cos_alt) / np.sqrt(1.0 + p * p + q * q)


@kernel
def _hillshade(data, mask, xm, ym, z, sin_alt, sin_az, cos_az, cos_alt, out, out_mask):  # type: ignore[no-untyped-def]
    h, w = data.shape
    bad_rows = np.empty((3, w), dtype=np.bool_)
    bad = np.empty(w, dtype=np.bool_)
    cang = np.empty(w - 2, dtype=np.float64)
    for r in range(1, h - 1):
        _bad_windows(data, mask, r, bad_rows, bad)
        _cos_incidence(data[r - 1], data[r], data[r + 1], z, 8.0 * xm[r], 8.0 * ym, sin_alt, sin_az, cos_az,
                       cos_alt, cang)
        values, masked = out[r], out_mask[r]
        for c in range(w - 2):
            x = cang[c]
            ok = not bad[c + 1] and x - x == 0.0   # (x - x: 0 unless x is infinite or NaN)
            shade = 1.0 if x <= 0.0 else 1.0 + 254.0 * x
            v = min(max(np.floor(shade + 0.5), 1.0), 255.0) if ok else 0.0
            values[c + 1] = np.uint8(v)
            masked[c + 1] = not ok


@kernel
def _rise(up, mid, dn, xm, ym, row):  # type: ignore[no-untyped-def]
    """`row[c]`: the rise (tan of the slope) at column c + 1 of the middle row; branch-free (SIMD)."""
    for c in range(row.shape[0]):
        w0, w1, w2 = np.float64(up[c]), np.float64(up[c + 1]), np.float64(up[c + 2])
        w3, w5 = np.float64(mid[c]), np.float64(mid[c + 2])
        w6, w7, w8 = np.float64(dn[c]), np.float64(dn[c + 1]), np.float64(dn[c + 2])
        dx = ((w0 + w3 + w3 + w6) - (w2 + w5 + w5 + w8)) / xm
        dy = ((w6 + w7 + w7 + w8) - (w0 + w1 + w1 + w2)) / ym
        row[c] = np.sqrt(dx * dx + dy * dy) / 8.0


@kernel
def _slope(data, mask, xm, ym, percent, out, out_mask):  # type: ignore[no-untyped-def]
    h, w = data.shape
    bad_rows = np.empty((3, w), dtype=np.bool_)
    bad = np.empty(w, dtype=np.bool_)
    rise = np.empty(w - 2, dtype=np.float64)
    for r in range(1, h - 1):
        _bad_windows(data, mask, r, bad_rows, bad)
        _rise(data[r - 1], data[r], data[r + 1], xm[r], ym, rise)
        values, masked = out[r], out_mask[r]
        for c in range(w - 2):
            ok = not bad[c + 1]
            x = rise[c]
            v = (100.0 * x if percent else math.atan(x) * _TO_DEG) if ok else 0.0
            values[c + 1] = v
            masked[c + 1] = not ok


@kernel
def _aspect(data, mask, trigonometric, zero_for_flat, out, out_mask):  # type: ignore[no-untyped-def]
    h, w = data.shape
    bad_rows = np.empty((3, w), dtype=np.bool_)
    bad = np.empty(w, dtype=np.bool_)
    for r in range(1, h - 1):
        _bad_windows(data, mask, r, bad_rows, bad)
        for c in range(1, w - 1):
            if bad[c]:
                continue
            w0, w1, w2, w3, _, w5, w6, w7, w8 = _window(data, r, c)
            dx = (w2 + w5 + w5 + w8) - (w0 + w3 + w3 + w6)
            dy = (w6 + w7 + w7 + w8) - (w0 + w1 + w1 + w2)
            if dx == 0 and dy == 0:   # flat: no direction
                if zero_for_flat:
                    out[r, c] = 0.0
                    out_mask[r, c] = False
                continue
            aspect = np.float32(math.atan2(dy, -dx) * _TO_DEG)
            if not trigonometric:   # azimuth, clockwise from north
                aspect = np.float32(450.0) - aspect if aspect > 90.0 else np.float32(90.0) - aspect
            elif aspect < 0:
                aspect += np.float32(360.0)
            out[r, c] = 0.0 if aspect == 360.0 else aspect
            out_mask[r, c] = False


__all__ = ["_aspect", "_bad_windows", "_cos_incidence", "_hillshade", "_rise", "_slope", "_window"]
