"""The compiled loops of the temporal reductions, apart so that importing `kernels.temporal`
costs no numba import in a parent that never calls them."""

from __future__ import annotations

import math

import numpy as np

from ziggurat.kernels._jit import kernel, sort_head


@kernel
def _sorted_valid(obs, valid, b, y, x, buf):  # type: ignore[no-untyped-def]
    n = 0
    for t in range(obs.shape[0]):
        if valid[t, y, x]:
            v = obs[t, b, y, x]
            if v == v:   # NaN is no observation, as for numpy's nan-functions
                buf[n] = v
                n += 1
    sort_head(buf, n)
    return n


@kernel
def _quantiles(obs, valid, q, median, out):  # type: ignore[no-untyped-def]
    _, bands, h, w = obs.shape
    buf = np.empty(obs.shape[0], dtype=np.float32)
    half = np.float32(2.0)
    for b in range(bands):
        for y in range(h):
            for x in range(w):
                n = _sorted_valid(obs, valid, b, y, x, buf)
                if n == 0:
                    out[b, y, x] = np.nan
                elif median:   # numpy: (low + high) / 2 in float32, low == high for odd counts
                    hi = n // 2
                    lo = hi if n % 2 else hi - 1
                    out[b, y, x] = (buf[lo] + buf[hi]) / half
                else:   # numpy's linear method: virtual index (n - 1) * q, lerp in float32
                    vi = (n - 1) * q
                    prev = int(math.floor(vi))
                    nxt = prev + 1
                    if vi >= n - 1:
                        prev = nxt = n - 1
                    elif vi < 0:
                        prev = nxt = 0
                    gamma = vi - math.floor(vi)
                    a, bb = buf[prev], buf[nxt]
                    diff = bb - a
                    if gamma >= 0.5:
                        out[b, y, x] = bb - diff * np.float32(1.0 - gamma)
                    else:
                        out[b, y, x] = a + diff * np.float32(gamma)


@kernel
def _best(obs, valid, score, out):  # type: ignore[no-untyped-def]
    steps, bands, h, w = obs.shape
    for y in range(h):
        for x in range(w):
            best, pick = -np.inf, 0
            for t in range(steps):
                s = score[t, y, x]
                if valid[t, y, x] and s == s and s > best:   # the first of equal scores wins
                    best, pick = s, t
            for b in range(bands):
                out[b, y, x] = obs[pick, b, y, x]


@kernel
def _gapfill(values, times, max_gap, nearest, out):  # type: ignore[no-untyped-def]
    steps, bands, h, w = values.shape
    for b in range(bands):
        for y in range(h):
            for x in range(w):
                prev = -1
                for t in range(steps):
                    v = values[t, b, y, x]
                    if v == v:
                        out[t, b, y, x] = v
                        prev = t
                        continue
                    nxt = t + 1
                    while nxt < steps and values[nxt, b, y, x] != values[nxt, b, y, x]:
                        nxt += 1
                    out[t, b, y, x] = np.nan
                    if nearest:
                        dp = times[t] - times[prev] if prev >= 0 else np.inf
                        dn = times[nxt] - times[t] if nxt < steps else np.inf
                        if dp <= dn and dp <= max_gap:
                            out[t, b, y, x] = values[prev, b, y, x]
                        elif dn < dp and dn <= max_gap:
                            out[t, b, y, x] = values[nxt, b, y, x]
                    elif prev >= 0 and nxt < steps and times[nxt] - times[prev] <= max_gap:
                        f = (times[t] - times[prev]) / (times[nxt] - times[prev])
                        a = values[prev, b, y, x]
                        out[t, b, y, x] = a + (values[nxt, b, y, x] - a) * f


__all__ = ["_best", "_gapfill", "_quantiles", "_sorted_valid"]
