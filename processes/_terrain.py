"""What the terrain processes share: the buffered elevation of a tile and, on a geographic grid
without `scale`, the latitude of each row (degrees become metres row by row)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ziggurat import Empty


def elevation(dem: Any, resampling: str | None) -> np.ma.MaskedArray:
    """The tile's first band, buffered; Empty when there is no data at all."""
    if dem.is_empty():
        raise Empty
    data = np.ma.asarray(dem.read(1, resampling=resampling))
    if np.ma.getmaskarray(data).all():
        raise Empty
    return data


def row_latitudes(tile: Any, rows: int, scale: float | None) -> np.ndarray | None:
    """Each row's centre latitude on a geographic grid when no `scale` is given, else None."""
    if scale is not None or not tile.crs.is_geographic:
        return None
    aff = tile.buffered_affine
    return np.asarray(aff.f + aff.e * (np.arange(rows) + 0.5))


def needs_buffer(tile: Any, pixels: int, process: str) -> None:
    """A window of `pixels` around each pixel must fit in the tile's buffer."""
    if tile.pixelbuffer < pixels:
        raise ValueError(f"{process} needs pyramid.pixelbuffer >= {pixels} (the recipe has "
                         f"{tile.pixelbuffer}): without it, pixels at tile edges would be nodata")


def nonempty(result: np.ma.MaskedArray) -> np.ma.MaskedArray:
    if np.ma.getmaskarray(result).all():
        raise Empty
    return result


__all__ = ["elevation", "needs_buffer", "nonempty", "row_latitudes"]
