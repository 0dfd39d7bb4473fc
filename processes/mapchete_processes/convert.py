"""Convert and optionally clip a raster or vector input (mapchete.processes.convert)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ziggurat import Empty
from ziggurat.process.compat.types import RasterInput, VectorInput
from ziggurat_processes.mapchete_processes._common import clip_array_with_vector


#: integer dtype ranges for `clip_to_output_dtype` (rasterio's dtype_ranges)
def _dtype_range(name: str) -> tuple[float, float] | None:
    try:
        dt = np.dtype(name)
    except TypeError:
        return None
    if dt.kind in "ui":
        info = np.iinfo(dt)
        return float(info.min), float(info.max)
    if dt.kind == "f":
        finfo = np.finfo(dt)
        return float(finfo.min), float(finfo.max)
    return None


def execute(inp: Any, clip: Any = None, resampling: str = "nearest", band_indexes: Any = None,
            td_matching_method: str = "gdal", td_matching_max_zoom: int | None = None,
            td_matching_precision: int = 8, td_fallback_to_higher_zoom: bool = False,
            clip_pixelbuffer: int = 0, scale_ratio: float = 1.0, scale_offset: float = 0.0,
            clip_to_output_dtype: str | None = None, **kwargs: Any) -> Any:
    """The input in the tile: bands `band_indexes`, ``(value + scale_offset) * scale_ratio``,
    masked outside `clip`'s features (buffered by `clip_pixelbuffer`, in CRS units as mapchete does)."""
    clip_geom = [] if clip is None else clip.read()
    if clip is not None and not clip_geom:
        raise Empty
    if inp.is_empty():
        raise Empty
    if isinstance(inp, RasterInput):
        data: Any = inp.read(indexes=band_indexes, resampling=resampling)
        if scale_offset != 0.0:
            data = data.astype("float64", copy=False) + scale_offset
        if scale_ratio != 1.0:
            data = data.astype("float64", copy=False) * scale_ratio
        limits = _dtype_range(clip_to_output_dtype) if clip_to_output_dtype else None
        if limits and (scale_offset != 0.0 or scale_ratio != 1.0):
            data.clip(*limits, out=data)
        if clip_geom:
            return clip_array_with_vector(data, inp.tile.affine, clip_geom, clip_buffer=clip_pixelbuffer)
        return data
    if isinstance(inp, VectorInput):
        if clip_geom:
            raise NotImplementedError("clipping vector data is not implemented (as in mapchete)")
        return inp.read()
    raise TypeError(f"inp must be a raster or vector input, not {type(inp).__name__}")
