"""Clip a raster input with vector features (mapchete.processes.clip)."""

from __future__ import annotations

from typing import Any

from ziggurat import Empty
from ziggurat_processes.mapchete_processes._common import clip_array_with_vector


def execute(inp: Any, clip: Any, resampling: str = "nearest", band_indexes: Any = None,
            td_matching_method: str = "gdal", td_matching_max_zoom: int | None = None,
            td_matching_precision: int = 8, td_fallback_to_higher_zoom: bool = False,
            clip_pixelbuffer: int = 0, **kwargs: Any) -> Any:
    """`inp` masked outside `clip`'s features."""
    if clip.is_empty() or inp.is_empty():
        raise Empty
    data = inp.read(indexes=band_indexes, resampling=resampling)
    features = clip.read()
    if not features:
        raise Empty
    return clip_array_with_vector(data, inp.tile.affine, features, clip_buffer=clip_pixelbuffer)
