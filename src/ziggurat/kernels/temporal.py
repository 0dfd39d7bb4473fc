"""Reductions of a time series per pixel (the composite's): median, quantile and best pixel of the
valid observations, compiled, for any number of scenes.

The values equal numpy's `nanmedian` and `nanquantile` (linear method) over the valid
observations bit for bit: the same float32 arithmetic in the same order.
"""

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


def median(obs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(time, band, y, x) float32 and (time, y, x) validity -> (band, y, x) float32; NaN where a
    pixel has no valid observation."""
    return quantile(obs, valid, 0.5, _median=True)


def quantile(obs: np.ndarray, valid: np.ndarray, q: float, *, _median: bool = False) -> np.ndarray:
    """As `median`, the `q` quantile (0..1) by numpy's linear method."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in 0..1, got {q}")
    obs = np.ascontiguousarray(obs, dtype=np.float32)
    out = np.empty(obs.shape[1:], dtype=np.float32)
    _quantiles(obs, np.ascontiguousarray(valid, dtype=bool), float(q), _median, out)
    return out


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


def best(obs: np.ndarray, valid: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per pixel, the bands of the valid observation with the highest `score` (time, y, x);
    the first scene where none is valid (callers mask those pixels)."""
    obs = np.ascontiguousarray(obs, dtype=np.float32)
    out = np.empty(obs.shape[1:], dtype=np.float32)
    _best(obs, np.ascontiguousarray(valid, dtype=bool), np.ascontiguousarray(score, dtype=np.float64), out)
    return out


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


def gapfill(values: np.ndarray, times: np.ndarray, max_gap: float = np.inf, method: str = "linear") -> np.ndarray:
    """(time, band, y, x) with NaN where a step has no value -> the same with those steps filled
    from their neighbours in time (`times`: each step's position, e.g. days): "linear" between the
    observed steps before and after when they lie at most `max_gap` apart; "nearest": the closer
    one (the earlier on a tie) when it lies within `max_gap`. No extrapolation past the ends."""
    if method not in ("linear", "nearest"):
        raise ValueError(f"gapfill must be linear or nearest, got {method!r}")
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim != 4 or len(times) != values.shape[0]:
        raise ValueError(f"expected (time, band, y, x) values and one time per step, got {values.shape} "
                         f"and {len(times)} times")
    out = np.empty_like(values)
    _gapfill(values, np.asarray(times, dtype=np.float64), float(max_gap), method == "nearest", out)
    return out


__all__ = ["best", "gapfill", "median", "quantile"]
