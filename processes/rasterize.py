"""Burn vector features into a raster: a constant or a numeric property per pixel.

Pixels whose centre lies in a feature (every pixel it touches with ``all_touched: true``)
get `value`, or the feature's `value` property when `value` is a property name; where
features overlap the later one wins. Pixels no feature covers (or whose feature has a null
property) are nodata. The output's dtype decides how values are stored (rounded and clipped
to integers when it is an integer type).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ziggurat import Empty


def execute(features: Any, value: float | str = 1, all_touched: bool = False) -> np.ma.MaskedArray:
    """A float64 2D masked array of the buffered tile."""
    if features.is_empty():
        raise Empty
    burnt = features.rasterize(value=value, all_touched=all_touched, dtype="float64", fill=np.nan)
    mask = np.isnan(burnt)
    if mask.all():
        raise Empty
    return np.ma.masked_array(burnt, mask=mask)
