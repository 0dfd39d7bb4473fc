"""Reductions of a time series per pixel (the composite's): median, quantile and best pixel of the
valid observations, compiled, for any number of scenes.

The values equal numpy's `nanmedian` and `nanquantile` (linear method) over the valid
observations bit for bit: the same float32 arithmetic in the same order.
"""

from __future__ import annotations

import numpy as np


def median(obs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(time, band, y, x) float32 and (time, y, x) validity -> (band, y, x) float32; NaN where a
    pixel has no valid observation."""
    return quantile(obs, valid, 0.5, _median=True)


def quantile(obs: np.ndarray, valid: np.ndarray, q: float, *, _median: bool = False) -> np.ndarray:
    """As `median`, the `q` quantile (0..1) by numpy's linear method."""
    from ziggurat.kernels import _temporal as loops  # numba loads on the first call
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in 0..1, got {q}")
    obs = np.ascontiguousarray(obs, dtype=np.float32)
    out = np.empty(obs.shape[1:], dtype=np.float32)
    loops._quantiles(obs, np.ascontiguousarray(valid, dtype=bool), float(q), _median, out)
    return out


def best(obs: np.ndarray, valid: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per pixel, the bands of the valid observation with the highest `score` (time, y, x);
    the first scene where none is valid (callers mask those pixels)."""
    from ziggurat.kernels import _temporal as loops  # numba loads on the first call
    obs = np.ascontiguousarray(obs, dtype=np.float32)
    out = np.empty(obs.shape[1:], dtype=np.float32)
    loops._best(obs, np.ascontiguousarray(valid, dtype=bool), np.ascontiguousarray(score, dtype=np.float64), out)
    return out


def gapfill(values: np.ndarray, times: np.ndarray, max_gap: float = np.inf, method: str = "linear") -> np.ndarray:
    """(time, band, y, x) with NaN where a step has no value -> the same with those steps filled
    from their neighbours in time (`times`: each step's position, e.g. days): "linear" between the
    observed steps before and after when they lie at most `max_gap` apart; "nearest": the closer
    one (the earlier on a tie) when it lies within `max_gap`. No extrapolation past the ends."""
    from ziggurat.kernels import _temporal as loops  # numba loads on the first call
    if method not in ("linear", "nearest"):
        raise ValueError(f"gapfill must be linear or nearest, got {method!r}")
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim != 4 or len(times) != values.shape[0]:
        raise ValueError(f"expected (time, band, y, x) values and one time per step, got {values.shape} "
                         f"and {len(times)} times")
    out = np.empty_like(values)
    loops._gapfill(values, np.asarray(times, dtype=np.float64), float(max_gap), method == "nearest", out)
    return out


__all__ = ["best", "gapfill", "median", "quantile"]
