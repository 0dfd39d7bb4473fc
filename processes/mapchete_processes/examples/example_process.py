"""mapchete's example process: the input `file1`, read with bilinear resampling."""

from __future__ import annotations

from typing import Any


def execute(mp: Any) -> Any:
    """`file1` in the tile, or "empty"."""
    with mp.open("file1") as raster_file:
        if raster_file.is_empty():
            return "empty"
        return raster_file.read(resampling="bilinear")
