"""Slope of an elevation model in degrees or percent (Horn's method, as ``gdaldem slope``).

The values equal gdaldem's: Horn's 3x3 gradient, ``atan(rise)`` in degrees or ``100 * rise``
with `percent`; a pixel whose 3x3 window leaves the tile or touches nodata is nodata (gdaldem
without ``-compute_edges``), so the recipe needs ``pixelbuffer: 1``. `scale` is gdaldem's ``-s``
(111120 for a DEM in degrees with heights in metres); without it, a geographic grid converts
degrees to metres row by row (each row's latitude), a projected one uses its units as they are.
The kernel is `ziggurat.kernels.slope`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ziggurat.kernels import slope
from ziggurat_processes._terrain import elevation, needs_buffer, nonempty, row_latitudes

pixelbuffer = 1   # the 3x3 window: checked against the recipe at load


def execute(dem: Any, tile: Any, percent: bool = False, scale: float | None = None,
            resampling: str | None = "bilinear") -> np.ma.MaskedArray:
    """Slope of one buffered tile as float32 (degrees, or percent with `percent: true`)."""
    needs_buffer(tile, 1, "slope")
    data = elevation(dem, resampling)
    aff = tile.buffered_affine
    return nonempty(slope(data, aff.a, aff.e, percent=percent, scale=scale,
                          latitudes=row_latitudes(tile, data.shape[0], scale)))
