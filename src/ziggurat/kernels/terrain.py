"""Terrain kernels: hillshade, slope and aspect by Horn's 3x3 method, as `gdaldem` computes them.

Each is a numba loop over the array (no full-size temporaries), releasing the GIL. A pixel whose
3x3 window leaves the array or touches a masked (or NaN) value is masked, as gdaldem without
``-compute_edges`` leaves it nodata; a tile's pixel buffer of 1 makes the window fit at its edges.

Horizontal units become the vertical unit with `scale` (gdaldem ``-s``: 111120 for degrees and
metres); without it, `latitudes` (one per row, degrees) mark a geographic grid: degrees become
metres with the mean Earth radius and the cosine of each row's latitude, so tiles far from the
equator are not flattened (gdaldem uses one factor for the whole raster).
"""

from __future__ import annotations

import math

import numpy as np

#: Mean Earth radius (IUGG), metres.
EARTH_RADIUS = 6371008.8
_DEG = math.pi / 180.0


def _prepare(elevation: np.ndarray | np.ma.MaskedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values as float32 or float64, masked) without copying what needs no copy."""
    arr = np.ma.asarray(elevation)
    if arr.ndim != 2:
        raise ValueError(f"elevation must be 2D, got shape {arr.shape}")
    data = np.ma.getdata(arr)
    if data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float64)
    return np.ascontiguousarray(data), np.ascontiguousarray(np.ma.getmaskarray(arr))


def _row_scales(h: int, xres: float, yres: float, scale: float | None,
                latitudes: np.ndarray | None) -> tuple[np.ndarray, float]:
    """(east-west pixel size per row, north-south pixel size), both in the vertical unit."""
    ym = abs(yres)
    xm = np.full(h, abs(xres), dtype=np.float64)
    if scale is not None:
        xm[:] = abs(xres) * scale
        ym *= scale
    elif latitudes is not None:
        lat = np.asarray(latitudes, dtype=np.float64)
        if lat.shape != (h,):
            raise ValueError(f"latitudes must have one value per row ({h}), got shape {lat.shape}")
        # rows of a pixel buffer may reach past a pole; their cosine would flip the slope
        xm[:] = abs(xres) * _DEG * EARTH_RADIUS * np.cos(np.clip(lat, -90.0, 90.0) * _DEG)
        ym *= _DEG * EARTH_RADIUS
    return xm, ym


def hillshade(elevation: np.ndarray | np.ma.MaskedArray, xres: float, yres: float, *, azimuth: float = 315.0,
              altitude: float = 45.0, z: float = 1.0, scale: float | None = None,
              latitudes: np.ndarray | None = None) -> np.ma.MaskedArray:
    """Hillshade as uint8, ``1 + 254 * cos(incidence)`` rounded into 1..255 (0: masked), like
    ``gdaldem hillshade`` (azimuth clockwise from north, `z` exaggerates)."""
    from ziggurat.kernels import _terrain as loops  # numba loads on the first call
    data, mask = _prepare(elevation)
    h, w = data.shape
    values = np.zeros((h, w), dtype=np.uint8)
    out_mask = np.ones((h, w), dtype=bool)
    if h >= 3 and w >= 3:
        xm, ym = _row_scales(h, xres, yres, scale, latitudes)
        az, alt = azimuth * _DEG, altitude * _DEG
        loops._hillshade(data, mask, xm, ym, float(z), math.sin(alt), math.sin(az), math.cos(az),
                         math.cos(alt), values, out_mask)
    return np.ma.masked_array(values, mask=out_mask, fill_value=0)


def slope(elevation: np.ndarray | np.ma.MaskedArray, xres: float, yres: float, *, percent: bool = False,
          scale: float | None = None, latitudes: np.ndarray | None = None) -> np.ma.MaskedArray:
    """Slope as float32, in degrees or (`percent`) percent, like ``gdaldem slope [-p] [-s]``."""
    from ziggurat.kernels import _terrain as loops  # numba loads on the first call
    data, mask = _prepare(elevation)
    h, w = data.shape
    values = np.zeros((h, w), dtype=np.float32)
    out_mask = np.ones((h, w), dtype=bool)
    if h >= 3 and w >= 3:
        xm, ym = _row_scales(h, xres, yres, scale, latitudes)
        loops._slope(data, mask, xm, ym, bool(percent), values, out_mask)
    return np.ma.masked_array(values, mask=out_mask)


def aspect(elevation: np.ndarray | np.ma.MaskedArray, *, trigonometric: bool = False,
           zero_for_flat: bool = False) -> np.ma.MaskedArray:
    """Aspect as float32 degrees, like ``gdaldem aspect [-trigonometric] [-zero_for_flat]``:
    the azimuth a slope faces (0 north, 90 east); flat pixels masked, or 0 with `zero_for_flat`."""
    from ziggurat.kernels import _terrain as loops  # numba loads on the first call
    data, mask = _prepare(elevation)
    h, w = data.shape
    values = np.zeros((h, w), dtype=np.float32)
    out_mask = np.ones((h, w), dtype=bool)
    if h >= 3 and w >= 3:
        loops._aspect(data, mask, bool(trigonometric), bool(zero_for_flat), values, out_mask)
    return np.ma.masked_array(values, mask=out_mask)


__all__ = ["EARTH_RADIUS", "aspect", "hillshade", "slope"]
