"""Aspect of an elevation model: the direction a slope faces (Horn's method, as ``gdaldem aspect``).

Degrees clockwise from north (0..360), or counter-clockwise from east with `trigonometric`
(gdaldem ``-trigonometric``); flat pixels are nodata, or 0 with `zero_for_flat` (gdaldem
``-zero_for_flat``). A pixel whose 3x3 window leaves the tile or touches nodata is nodata, so the
recipe needs ``pixelbuffer: 1``. Like gdaldem, the pixel size does not enter (square pixels are
assumed). The kernel is `ziggurat.kernels.aspect`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ziggurat.kernels import aspect
from ziggurat_processes._terrain import elevation, needs_buffer, nonempty

pixelbuffer = 1   # the 3x3 window: checked against the recipe at load


def execute(dem: Any, tile: Any, trigonometric: bool = False, zero_for_flat: bool = False,
            resampling: str | None = "bilinear") -> np.ma.MaskedArray:
    """Aspect of one buffered tile as float32 degrees."""
    needs_buffer(tile, 1, "aspect")
    return nonempty(aspect(elevation(dem, resampling), trigonometric=trigonometric,
                           zero_for_flat=zero_for_flat))
