"""A cloud-free composite of a time series (a `stac` input): per pixel, reduce the valid
observations to one value.

An observation is valid where its bands have data and the classification asset (`mask_asset`,
Sentinel-2's SCL by default) is not one of `mask_values` (default: no data, saturated, dark,
cloud shadow, clouds, cirrus, snow), and where the optional `mask` expression is False. `method`:
`median` (of the valid observations), `quantile` (`q` in 0..1), or `best`: the observation with
the highest `score`, an expression of the asset names (e.g. ``(B08 - B04) / (B08 + B04)``). The
reductions are compiled (`ziggurat.kernels.median`, `quantile`, `best`) and equal numpy's
`nanmedian`, `nanquantile` and `argmax` bit for bit.
The result holds the composited assets in input order (the mask asset left out), plus, with
`count: true`, the number of valid observations as a last band; pixels without one are masked.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

import numpy as np

from ziggurat import Empty, kernels

#: Sentinel-2 scene classification: 0 no data, 1 saturated, 2 dark, 3 cloud shadow, 8/9 cloud,
#: 10 cirrus, 11 snow
SCL_INVALID = (0, 1, 2, 3, 8, 9, 10, 11)


def _evaluate(expression: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """A numpy expression of the asset names (recipe-supplied, like the process itself)."""
    names = {"np": np, "abs": np.abs, "where": np.where, "sqrt": np.sqrt, **arrays}
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(eval(compile(expression, "<expression>", "eval"), {"__builtins__": {}}, names))


def clear_observations(stack: np.ma.MaskedArray, names: Sequence[str], mask_asset: str | None = "SCL",
                       mask_values: Sequence[int] = SCL_INVALID, mask: str | None = None
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(time, band, y, x) -> the data bands as float32 (the mask asset left out), where each
    observation is clear (time, y, x), and every asset by name (for `score` expressions)."""
    names = list(names)
    data_bands = [i for i, n in enumerate(names) if n != mask_asset]
    values = np.ma.getdata(stack).astype("float32", copy=False)
    valid = np.asarray(~np.ma.getmaskarray(stack)[:, data_bands].any(axis=1))   # (time, y, x)
    if mask_asset is not None:
        if mask_asset not in names:
            raise ValueError(f"mask_asset {mask_asset!r} is not one of the assets read ({', '.join(names)})")
        m = names.index(mask_asset)
        valid &= ~np.ma.getmaskarray(stack)[:, m] & ~np.isin(values[:, m], list(mask_values))
    arrays = {n: values[:, i] for i, n in enumerate(names)}
    if mask is not None:
        valid &= ~_evaluate(mask, arrays).astype(bool)
    return values[:, data_bands], valid, arrays


def composite(stack: np.ma.MaskedArray, names: Sequence[str], *, method: str = "median", q: float = 0.5,
              mask_asset: str | None = "SCL", mask_values: Sequence[int] = SCL_INVALID, mask: str | None = None,
              score: str | None = None, count: bool = True) -> np.ma.MaskedArray:
    """(time, band, y, x) -> (band, y, x): the reduction described in the module docstring."""
    obs, valid, arrays = clear_observations(stack, names, mask_asset, mask_values, mask)
    n_valid = valid.sum(axis=0)
    if method == "median":
        out = kernels.median(obs, valid)
    elif method == "quantile":
        out = kernels.quantile(obs, valid, q)
    elif method == "best":
        if score is None:
            raise ValueError("method 'best' needs a score expression of the assets, e.g. (B08 - B04) / (B08 + B04)")
        out = kernels.best(obs, valid, np.broadcast_to(_evaluate(score, arrays), valid.shape))
    else:
        raise ValueError(f"method must be median, quantile or best, got {method!r}")
    none = n_valid == 0
    bands = [out] + ([n_valid[None].astype(out.dtype)] if count else [])
    result = np.ma.masked_array(np.concatenate(bands, axis=0))
    result.mask = np.broadcast_to(none, result.shape).copy()
    return result


def _periods(periods: Sequence[str]) -> list[tuple[dt.datetime, dt.datetime]]:
    """`start/end` intervals (dates: whole days) as aware datetimes, end inclusive."""
    from ziggurat.recipe.stac_input import parse_interval

    out = []
    for text in periods:
        start, end = parse_interval(str(text))
        if start is None or end is None:
            raise ValueError(f"period {text!r}: expected start/end")
        out.append((dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)))
    return out


def execute(scenes: Any, method: str = "median", q: float = 0.5, mask_asset: str | None = "SCL",
            mask_values: list[int] | None = None, mask: str | None = None, score: str | None = None,
            count: bool = True, periods: list[str] | None = None) -> np.ma.MaskedArray:
    """The composite of one tile of a `stac` input (`scenes`). With `periods` (a list of
    `start/end` intervals) one composite per period, stacked period after period: a time series
    whose output bands the recipe names by date (`raster:bands` in the STAC item carry them)."""
    if scenes.is_empty():
        raise Empty
    stack = scenes.read()
    if stack.shape[0] == 0:
        raise Empty
    options = dict(method=method, q=q, mask_asset=mask_asset, mask=mask, score=score, count=count,
                   mask_values=SCL_INVALID if mask_values is None else mask_values)
    if periods is None:
        result = composite(stack, stack.bands, **options)  # type: ignore[arg-type]
    else:
        parts = []
        for start, end in _periods(periods):
            steps = [i for i, when in enumerate(stack.datetimes) if start <= when <= end]
            part = composite(stack[steps], stack.bands, **options)  # type: ignore[arg-type]
            if not steps:   # a period without any scene over the tile: all masked
                part.mask = True
            parts.append(part)
        result = np.ma.concatenate(parts, axis=0)
    if np.ma.getmaskarray(result).all():
        raise Empty
    return result
