"""A time series out of a time series in (a `stac` input into an output with `time:` steps): per
pixel, the clear observations of each step reduced to one value, the steps without one filled
in time, the series optionally smoothed.

Clear observations are the composite's (`mask_asset`, `mask_values`, `mask`: see `composite`).
`method` reduces a step's clear observations: median, mean, min, max, first, last, count (how
many), or quantile (`q` in 0..1); median and quantile are compiled and equal numpy's
`nanmedian`/`nanquantile`. `gapfill: linear` fills a step without observations between the
observed steps before and after it (placed at the middle of their steps) when those lie at most
`max_gap` apart (``60 days``; no limit when not given); `gapfill: nearest` takes the nearer one
within `max_gap`; nothing is extrapolated past the first or last observation. `smooth: {savgol:
{window, order}}` runs a Savitzky-Golay filter (scipy's, `mode: interp`) along time over every
series that has a value at every step after filling (a series with gaps is left as it is:
a filter through nodata has no meaning). `count: true` adds a last band per step: the number of
clear observations it had (0 for a filled step).
"""

from __future__ import annotations

import datetime as dt
import warnings
from typing import Any, Sequence

import numpy as np

from ziggurat import Empty, kernels
from ziggurat_processes.composite import SCL_INVALID, clear_observations

METHODS = ("median", "mean", "min", "max", "first", "last", "count", "quantile")


def time_steps_independent(gapfill: str | None = None, smooth: dict[str, Any] | None = None, **_: Any) -> bool:
    """Each step from its own scenes alone, unless gaps are filled or the series smoothed: a run
    appending steps to the output then computes only the new ones."""
    return gapfill is None and smooth is None


def reduce_step(obs: np.ndarray, valid: np.ndarray, method: str, q: float) -> np.ndarray:
    """(time, band, y, x) observations of one step and their clearness -> (band, y, x), NaN where
    none is clear."""
    if method in ("median", "quantile"):
        return kernels.median(obs, valid) if method == "median" else kernels.quantile(obs, valid, q)
    n = valid.sum(axis=0)
    if method == "count":
        return np.broadcast_to(n.astype(np.float32), obs.shape[1:]).copy()
    if method in ("first", "last"):
        order = range(obs.shape[0]) if method == "first" else range(obs.shape[0] - 1, -1, -1)
        out = np.full(obs.shape[1:], np.nan, dtype=np.float32)
        for t in order:
            take = valid[t] & np.isnan(out[0])
            out[:, take] = obs[t][:, take]
        return out
    clear = np.where(valid[:, None], obs, np.float32(np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN pixels: NaN, as wanted
        if method == "mean":
            reduced = np.nanmean(clear, axis=0)
        else:
            reduced = np.nanmin(clear, axis=0) if method == "min" else np.nanmax(clear, axis=0)
    return np.asarray(reduced, dtype=np.float32)


def smooth_series(values: np.ndarray, window: int, order: int) -> np.ndarray:
    """Savitzky-Golay along time (axis 0) of every complete series; others are kept as they are."""
    try:
        from scipy.signal import savgol_filter
    except ImportError as exc:   # an optional extra
        raise ImportError("smooth: savgol needs scipy: pip install 'ziggurat[timeseries]'") from exc
    if not (isinstance(window, int) and isinstance(order, int) and 0 <= order < window <= values.shape[0]
            and window % 2 == 1):
        raise ValueError(f"smooth.savgol: expected an odd window of at most {values.shape[0]} steps and an order "
                         f"below it, got window {window!r}, order {order!r}")
    complete = ~np.isnan(values).any(axis=0)
    out = values.copy()
    if complete.any():
        out[:, complete] = savgol_filter(values[:, complete], window, order, axis=0, mode="interp")
    return out


def _when(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def series(stack: np.ma.MaskedArray, names: Sequence[str], datetimes: Sequence[dt.datetime], time_steps: Any, *,
           method: str = "median", q: float = 0.5, mask_asset: str | None = "SCL",
           mask_values: Sequence[int] = SCL_INVALID, mask: str | None = None, gapfill: str | None = None,
           max_gap: str | None = None, smooth: dict[str, Any] | None = None, count: bool = False) -> np.ndarray:
    """(scene, band, y, x) with the scenes' datetimes -> (step, band, y, x) float32, NaN for no value."""
    from ziggurat.core.timesteps import duration_days

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    obs, valid, _ = clear_observations(stack, names, mask_asset, mask_values, mask)
    when = [_when(d) for d in datetimes]
    steps, counts = [], []
    for step in time_steps:
        picked = [i for i, d in enumerate(when) if step.holds(d)]
        if picked:
            steps.append(reduce_step(obs[picked], valid[picked], method, q))
            counts.append(valid[picked].sum(axis=0).astype(np.float32))
        else:
            steps.append(np.full(obs.shape[1:], np.nan, dtype=np.float32))
            counts.append(np.zeros(obs.shape[2:], dtype=np.float32))
    values = np.stack(steps)
    if gapfill is not None:
        gap = np.inf if max_gap is None else duration_days(max_gap)
        values = kernels.gapfill(values, np.array([s.centre_days for s in time_steps]), gap, gapfill)
    if smooth is not None:
        unknown = set(smooth) - {"savgol"}
        if unknown or not isinstance(smooth.get("savgol"), dict):
            raise ValueError(f"smooth: expected {{savgol: {{window, order}}}}, got {smooth!r}")
        values = smooth_series(values, smooth["savgol"].get("window"), smooth["savgol"].get("order"))
    if count:
        values = np.concatenate([values, np.stack(counts)[:, None]], axis=1)
    return values


def execute(scenes: Any, time_steps: Any, method: str = "median", q: float = 0.5, mask_asset: str | None = "SCL",
            mask_values: list[int] | None = None, mask: str | None = None, gapfill: str | None = None,
            max_gap: str | None = None, smooth: dict[str, Any] | None = None, count: bool = False
            ) -> np.ma.MaskedArray:
    """The series of one tile of a `stac` input (`scenes`) on the output's time steps."""
    if scenes.is_empty():
        raise Empty
    stack = scenes.read()
    if stack.shape[0] == 0:
        raise Empty
    values = series(stack, stack.bands, stack.datetimes, time_steps, method=method, q=q, mask_asset=mask_asset,
                    mask_values=SCL_INVALID if mask_values is None else mask_values, mask=mask, gapfill=gapfill,
                    max_gap=max_gap, smooth=smooth, count=count)
    nodata = np.isnan(values[:, :1]).all(axis=1, keepdims=True) if count else np.isnan(values)
    result = np.ma.masked_array(np.nan_to_num(values, nan=0.0), mask=np.broadcast_to(nodata, values.shape))
    if result.mask.all():
        raise Empty
    return result
