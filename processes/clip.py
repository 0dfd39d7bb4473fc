"""Mask a raster input to the polygons of a vector input (outside becomes nodata).

The raster is read as usual (reprojected and resampled to the tile); the vector input's
features are burnt into the same buffered pixel grid and every pixel whose centre lies
outside them (inside them with ``invert: true``) is masked. ``all_touched: true`` keeps
every pixel a polygon touches instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ziggurat import Empty


def execute(inp: Any, clip: Any, invert: bool = False, all_touched: bool = False,
            resampling: str | None = None) -> np.ma.MaskedArray:
    """`inp` (raster, all bands) masked by the polygons of `clip` (vector)."""
    if inp.is_empty() or (not invert and clip.is_empty()):
        raise Empty
    data = np.ma.asarray(inp.read(resampling=resampling))
    drop = clip.mask(all_touched=all_touched, invert=invert)  # True where pixels go
    mask = np.ma.getmaskarray(data) | np.broadcast_to(drop, data.shape)
    if mask.all():
        raise Empty
    return np.ma.masked_array(np.ma.getdata(data), mask=mask)
