"""Shaded relief from an elevation model (Horn's method, as gdaldem hillshade).

The numbers match ``gdaldem hillshade`` (GDAL 3.x, default algorithm, no ``-combined`` or
``-multidirectional``): Horn's 3x3 gradient, azimuth clockwise from north, output
``1 + 254 * cos(incidence)`` rounded into 1..255 (shadow clamps to 1) so that 0 stays free
for nodata. Like gdaldem without ``-compute_edges``, a pixel whose 3x3 window leaves the
array or touches nodata is nodata; the recipe's pixel buffer of 1 makes the window fit at
tile edges.

Geographic grids are handled per row: degrees become metres with the mean Earth radius and
the cosine of each row's latitude, so tiles far from the equator are not flattened (gdaldem
needs ``-s 111120`` for that, and then uses one factor for the whole raster). The compiled kernel
is `ziggurat.kernels.hillshade`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ziggurat.kernels import EARTH_RADIUS, hillshade
from ziggurat_processes._terrain import elevation, nonempty, row_latitudes

pixelbuffer = 1   # the 3x3 window: checked against the recipe at load


def execute(dem: Any, tile: Any, azimuth: float = 315.0, altitude: float = 45.0, z: float = 1.0,
            scale: float | None = None, resampling: str | None = "bilinear") -> np.ma.MaskedArray:
    """Hillshade of one buffered tile; needs a pixel buffer of at least 1 in the recipe.

    `resampling` defaults to bilinear because nearest-neighbour resampling of a DEM leaves
    flat steps that show up as stripes in the shading; None defers to the input's own
    ``resampling`` option.
    """
    data = elevation(dem, resampling)
    aff = tile.buffered_affine
    return nonempty(hillshade(data, aff.a, aff.e, azimuth=azimuth, altitude=altitude, z=z, scale=scale,
                              latitudes=row_latitudes(tile, data.shape[0], scale)))


__all__ = ["EARTH_RADIUS", "execute", "hillshade"]
