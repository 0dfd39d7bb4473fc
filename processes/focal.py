"""Focal (moving-window) statistics of a raster: mean, min, max, std, sum or median.

Each pixel gets the statistic of the valid values in a square or circular window of `radius`
pixels around it.

Nodata is left out of every window; a pixel whose window holds no valid value is nodata. The
window must fit in the tile's buffer: the recipe needs ``pixelbuffer`` of at least `radius`.
Each band is filtered on its own; the result is float32. The kernel is `ziggurat.kernels.focal`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ziggurat import Empty
from ziggurat.kernels import focal
from ziggurat_processes._terrain import needs_buffer, nonempty


def pixelbuffer(radius: int = 1, **_: Any) -> int:
    """The window reaches `radius` pixels past a tile's edge (checked against the recipe at load)."""
    return int(radius)


def execute(raster: Any, tile: Any, statistic: str = "mean", radius: int = 1, shape: str = "square",
            bands: int | list[int] | None = None, resampling: str = "nearest") -> np.ma.MaskedArray:
    """The statistic per band of one buffered tile, as (bands, h, w) float32."""
    needs_buffer(tile, int(radius), f"focal with radius {radius}")
    if raster.is_empty():
        raise Empty
    data = np.ma.asarray(raster.read(bands, resampling=resampling))
    if data.ndim == 2:
        data = data[None]
    if np.ma.getmaskarray(data).all():
        raise Empty
    return nonempty(np.ma.stack([focal(band, statistic, int(radius), shape) for band in data]))
