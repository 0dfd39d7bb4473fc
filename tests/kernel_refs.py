"""The numpy hillshade the compiled kernel replaced, kept as the reference its values must equal bit
for bit (gdaldem's Horn algorithm, the per-row latitude scaling)."""

from __future__ import annotations

import math

import numpy as np

EARTH_RADIUS = 6371008.8
_DEG = math.pi / 180.0


def hillshade_numpy(
    elevation: np.ndarray | np.ma.MaskedArray,
    xres: float,
    yres: float,
    *,
    azimuth: float = 315.0,
    altitude: float = 45.0,
    z: float = 1.0,
    scale: float | None = None,
    latitudes: np.ndarray | None = None,
) -> np.ma.MaskedArray:
    """Hillshade of a north-up 2D elevation array as uint8 (1..255, masked = nodata 0).

    `xres`/`yres` are pixel sizes in horizontal units (signs are ignored; row 0 is north).
    `scale` converts those units to the vertical unit (gdaldem ``-s``) and wins over
    `latitudes`, which marks the grid as geographic (one latitude per row, in degrees).
    NaN elevations count as masked.
    """
    arr = np.ma.asarray(elevation)
    if arr.ndim != 2:
        raise ValueError(f"elevation must be 2D, got shape {arr.shape}")
    h, w = arr.shape
    data = np.ma.getdata(arr).astype(np.float64)
    bad = np.ma.getmaskarray(arr) | ~np.isfinite(data)
    values = np.zeros((h, w), dtype=np.uint8)
    mask = np.ones((h, w), dtype=bool)
    if h < 3 or w < 3:
        return np.ma.masked_array(values, mask=mask, fill_value=0)
    data[bad] = 0.0  # keeps garbage nodata values out of the arithmetic; those pixels get masked

    ym = abs(yres)
    if scale is not None:
        xm: float | np.ndarray = abs(xres) * scale
        ym *= scale
    elif latitudes is not None:
        lat = np.asarray(latitudes, dtype=np.float64)
        if lat.shape != (h,):
            raise ValueError(f"latitudes must have one value per row ({h}), got shape {lat.shape}")
        # rows of a pixel buffer may reach past a pole; their cosine would flip the slope
        coslat = np.cos(np.clip(lat[1:-1], -90.0, 90.0) * _DEG)
        xm = (abs(xres) * _DEG * EARTH_RADIUS * coslat)[:, None]
        ym *= _DEG * EARTH_RADIUS
    else:
        xm = abs(xres)

    # 3x3 window  a b c / d e f / g h i  for every interior pixel
    a, b, c = data[:-2, :-2], data[:-2, 1:-1], data[:-2, 2:]
    d, f = data[1:-1, :-2], data[1:-1, 2:]
    g, hh, i = data[2:, :-2], data[2:, 1:-1], data[2:, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        # dz/dx towards east and dz/dy towards north, exaggerated by z
        p = z * ((c + 2 * f + i) - (a + 2 * d + g)) / (8.0 * xm)
        q = z * ((a + 2 * b + c) - (g + 2 * hh + i)) / (8.0 * ym)
        az, alt = azimuth * _DEG, altitude * _DEG
        # cosine of the angle between the surface normal (-p, -q, 1) and the sun direction
        cang = (math.sin(alt) - (p * math.sin(az) + q * math.cos(az)) * math.cos(alt)) / np.sqrt(
            1.0 + p * p + q * q)
    shade = np.where(cang <= 0.0, 1.0, 1.0 + 254.0 * cang)
    # GDAL rounds to nearest when it writes the float result to a Byte band
    rounded = np.clip(np.floor(shade + 0.5), 1.0, 255.0)

    win_bad = np.zeros((h - 2, w - 2), dtype=bool)
    for dy in range(3):
        for dx in range(3):
            win_bad |= bad[dy:dy + h - 2, dx:dx + w - 2]
    win_bad |= ~np.isfinite(cang)
    values[1:-1, 1:-1] = np.where(win_bad, 0.0, rounded)
    mask[1:-1, 1:-1] = win_bad
    return np.ma.masked_array(values, mask=mask, fill_value=0)
