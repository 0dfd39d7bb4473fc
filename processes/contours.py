"""Contour lines from an elevation model, as LineString features with an `elevation` property.

Lines are traced with contourpy through pixel centres, at every multiple of `interval`
(offset by `base`) between the tile's lowest and highest elevation. Coordinates come from
each pixel's index in the whole zoom level, not from the tile's corner, so two neighbouring
tiles compute bit-identical vertices for the pixels they share; with a pixel buffer of at
least 1 both see the segment that crosses their common edge, and the writer's clipping to
each output tile makes the pieces meet end to end at the seam. Write them to a GeoJSON or
FlatGeobuf output with ``schema: {geometry: LineString, properties: {elevation: float}}``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely

from ziggurat import Empty


def contour_levels(low: float, high: float, interval: float, base: float = 0.0) -> np.ndarray:
    """Multiples of `interval` (offset by `base`) within [low, high]."""
    if not interval > 0 or not math.isfinite(interval):
        raise ValueError(f"interval must be a positive number, got {interval!r}")
    first = math.ceil((low - base) / interval)
    last = math.floor((high - base) / interval)
    return base + interval * np.arange(first, last + 1, dtype=np.float64)


def contour_lines(elevation: np.ndarray | np.ma.MaskedArray, x: np.ndarray, y: np.ndarray,
                  levels: np.ndarray) -> list[tuple[float, shapely.LineString]]:
    """(level, line) pairs of a 2D grid whose pixel centres are at `x` (columns) and `y` (rows).

    Masked or NaN pixels leave gaps: a line never runs through a cell touching one.
    """
    import contourpy

    data = np.ma.getdata(elevation).astype(np.float64)
    bad = np.ma.getmaskarray(elevation) | ~np.isfinite(data)
    if data.shape[0] < 2 or data.shape[1] < 2 or bad.all():
        return []
    z = np.ma.masked_array(np.where(bad, 0.0, data), mask=bad)
    gen = contourpy.contour_generator(x, y, z, line_type="Separate")
    out = []
    for level in levels:
        for coords in gen.lines(float(level)):
            line = shapely.LineString(coords) if len(coords) >= 2 else None
            if line is not None and line.length > 0:  # a saddle can give a one-point "line"
                out.append((float(level), line))
    return out


def contour_features(elevation: Any, affine: Any, interval: float, base: float, field: str) -> list[dict[str, Any]]:
    """Features {geometry, properties: {field: level}} of a 2D array whose top-left pixel
    corner is `affine`'s origin (mapchete's `mp.contours` and its ready-made process)."""
    arr = np.ma.asarray(elevation)
    arr = arr[0] if arr.ndim == 3 else arr
    valid = ~np.ma.getmaskarray(arr) & np.isfinite(np.ma.getdata(arr))
    if not valid.any():
        return []
    values = np.ma.getdata(arr)[valid]
    levels = contour_levels(float(values.min()), float(values.max()), float(interval), float(base))
    h, w = arr.shape
    x = affine.c + (np.arange(w) + 0.5) * affine.a
    y = affine.f + (np.arange(h) + 0.5) * affine.e
    return [{"geometry": line, "properties": {field: level}} for level, line in contour_lines(arr, x, y, levels)]


def execute(dem: Any, tile: Any, interval: float = 10.0, base: float = 0.0,
            resampling: str | None = "bilinear", field: str = "elevation") -> list[dict[str, Any]]:
    """Contour features of one buffered tile; needs a pixel buffer of at least 1.

    `resampling` defaults to bilinear so that a DEM read at another resolution does not
    turn into terraces (nearest) whose contours zig-zag along pixel edges. `field` names the
    property holding the level (mapchete's name for it; `elev` in mapchete's own process).
    """
    if dem.is_empty():
        raise Empty
    elevation = np.ma.asarray(dem.read(1, resampling=resampling))
    valid = ~np.ma.getmaskarray(elevation) & np.isfinite(np.ma.getdata(elevation))
    if not valid.any():
        raise Empty
    values = np.ma.getdata(elevation)[valid]
    levels = contour_levels(float(values.min()), float(values.max()), float(interval), float(base))
    if not len(levels):
        raise Empty
    aff = tile.buffered_affine
    xres, yres = tile.resolution
    matrix = tile.grid.bounds(tile.zoom)
    h, w = elevation.shape
    col0 = round((aff.c - matrix.left) / xres)  # pixel index of the buffered tile in the zoom level
    row0 = round((matrix.top - aff.f) / yres)
    x = matrix.left + (col0 + np.arange(w) + 0.5) * xres
    y = matrix.top - (row0 + np.arange(h) + 0.5) * yres
    return [{"geometry": line, "properties": {field: level}}
            for level, line in contour_lines(elevation, x, y, levels)]
