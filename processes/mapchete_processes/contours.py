"""Contour lines (mapchete.processes.contours): mapchete's parameters (`interval` 100, `field`
"elev", `base` 0), traced by ziggurat's contourpy tracer through pixel centres (mapchete uses
matplotlib; the levels are the same, vertices differ by tracer)."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from ziggurat import Empty
from ziggurat_processes.contours import contour_features


def execute(dem: Any, clip: Any = None, resampling: str = "nearest", interval: float = 100, field: str = "elev",
            base: float = 0, td_matching_method: str = "gdal", td_matching_max_zoom: int | None = None,
            td_matching_precision: int = 8, td_fallback_to_higher_zoom: bool = False,
            clip_pixelbuffer: int = 0) -> list[dict[str, Any]]:
    """Contours of `dem`; with `clip`, the parts outside its features (mapchete's rule)."""
    clip_geom = [] if clip is None else clip.read()
    if clip is not None and not clip_geom:
        raise Empty
    if dem.is_empty():
        raise Empty
    data = np.ma.asarray(dem.read(1, resampling=resampling))
    data = data[0] if data.ndim == 3 else data
    valid = ~np.ma.getmaskarray(data) & np.isfinite(np.ma.getdata(data))
    if not valid.any():
        raise Empty
    lines = contour_features(data, dem.tile.affine, interval, base, field)
    if not clip_geom:
        return lines
    b = dem.tile.bounds
    keep = shapely.box(b.left, b.bottom, b.right, b.top).difference(
        shapely.union_all([f["geometry"] for f in clip_geom]).buffer(clip_pixelbuffer * dem.tile.pixel_x_size))
    out = []
    for feature in lines:
        geom = feature["geometry"].intersection(keep)
        if not geom.is_empty:
            out.append({**feature, "geometry": geom})
    return out
