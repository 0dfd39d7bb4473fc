"""Copy an input into the pyramid (reprojected, resampled, optionally rescaled).

The engine already reprojects and resamples the input to each tile; this process only
picks bands and applies a linear ``value * scale + offset`` (e.g. decimetres to metres, or
a DN-to-reflectance factor). The output writer casts to the recipe's dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ziggurat import Empty


def execute(inp: Any, resampling: str | None = None, bands: int | list[int] | None = None,
            scale: float = 1.0, offset: float = 0.0) -> np.ma.MaskedArray:
    """The tile's data as a 3D masked array (bands, h, w); `bands` are 1-based indexes.

    `resampling` None leaves it to the input: a mosaic source's own `resampling`, else the
    input's, else nearest; a name given here wins over all of them.
    """
    if inp.is_empty():
        raise Empty
    if isinstance(bands, int):
        bands = [bands]  # keep the result 3D so the band count is the same on every tile
    elif bands is not None:
        bands = [int(b) for b in bands]
        if not bands:
            raise ValueError("bands must name at least one band (1-based) or be left out")
    data: Any = np.ma.asarray(inp.read(bands, resampling=resampling))
    if np.ma.getmaskarray(data).all():
        raise Empty
    if scale != 1.0 or offset != 0.0:
        # float64 first: integer inputs would wrap or truncate in their own dtype
        data = data.astype(np.float64) * scale + offset
    return data
