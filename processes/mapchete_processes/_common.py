"""What mapchete's ready-made processes share: its clip of an array by features."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import shapely


def clip_array_with_vector(array: Any, affine: Any, features: Iterable[dict[str, Any]], inverted: bool = False,
                           clip_buffer: float = 0) -> np.ma.MaskedArray:
    """mapchete's `clip_array_with_vector`: masked outside the (buffered) geometries, inside
    with `inverted`; `clip_buffer` is in CRS units, as there; no geometry masks everything."""
    from rasterio.features import geometry_mask

    arr = np.ma.asarray(array)
    geoms = []
    for feature in features:
        geom = feature["geometry"]
        geom = shapely.geometry.shape(geom) if isinstance(geom, dict) else geom
        if geom.is_empty:
            continue
        if isinstance(geom, shapely.GeometryCollection):
            geom = shapely.union_all([g.buffer(clip_buffer) for g in geom.geoms])
        else:
            geom = geom.buffer(clip_buffer)
        if not geom.is_empty:
            geoms.append(geom)
    if not geoms:
        return np.ma.masked_array(np.ma.getdata(arr), mask=np.full(arr.shape, not inverted))
    mask = geometry_mask(geoms, arr.shape[-2:], affine, invert=inverted)
    full = np.ma.getmaskarray(arr) | np.broadcast_to(mask, arr.shape)
    return np.ma.masked_array(np.ma.getdata(arr), mask=full)
