"""Hillshade with mapchete's numbers (mapchete.processes.hillshade).

mapchete's algorithm, not gdaldem's (ziggurat's own `hillshade` process matches gdaldem):
slope and aspect from a 3x3 window, ``sin(alt)·sin(slope) + cos(alt)·cos(slope)·cos(az-90°-aspect)``
stretched to 1..255, edges padded with their neighbours. `scale` converts pixel size units to
height units (mapchete: 112000 for metres on a geodetic grid).

Original code: https://github.com/migurski/DEM-Tools (Hillup/data/__init__.py), via mapchete.
Copyright (c) 2011, Michal Migurski, Nelson Minar. All rights reserved. Redistribution and use
in source and binary forms, with or without modification, are permitted provided that the
following conditions are met: redistributions of source code must retain the above copyright
notice, this list of conditions and the following disclaimer; redistributions in binary form
must reproduce it in the documentation; neither the name of the project nor the names of its
contributors may be used to endorse or promote products derived from this software without
specific prior written permission. THIS SOFTWARE IS PROVIDED "AS IS" WITHOUT ANY WARRANTY.
"""

from __future__ import annotations

import math
import warnings
from itertools import product
from typing import Any

import numpy as np

from ziggurat import Empty
from ziggurat_processes.mapchete_processes._common import clip_array_with_vector


def slope_aspect(elevation: np.ndarray, xres: float, yres: float, z: float = 1.0, scale: float = 1.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Slope (radians, pi/2 = flat) and aspect of the interior (2 pixels smaller)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        height, width = elevation.shape[0] - 2, elevation.shape[1] - 2
        w = [z * elevation[row:row + height, col:col + width] for row, col in product(range(3), range(3))]
        x = ((w[0] + w[3] + w[3] + w[6]) - (w[2] + w[5] + w[5] + w[8])) / (8.0 * xres * scale)
        y = ((w[6] + w[7] + w[7] + w[8]) - (w[0] + w[1] + w[1] + w[2])) / (8.0 * yres * scale)
        slope = math.pi / 2 - np.arctan(np.sqrt(x * x + y * y))
        aspect = np.arctan2(x, y)
        return slope, aspect


def hillshade(elevation: Any, affine: Any, azimuth: float = 315.0, altitude: float = 45.0, z: float = 1.0,
              scale: float = 1.0) -> np.ma.MaskedArray:
    """mapchete's `hillshade`: uint8 1..255, masked where the elevation is."""
    elevation = np.ma.asarray(elevation)
    elevation = elevation[0] if elevation.ndim == 3 else elevation
    slope, aspect = slope_aspect(elevation, affine[0], affine[4], z=float(z), scale=float(scale))
    rad = math.pi / 180.0
    shaded = (np.sin(float(altitude) * rad) * np.sin(slope)
              + np.cos(float(altitude) * rad) * np.cos(slope) * np.cos((float(azimuth) - 90.0) * rad - aspect))
    # masked arithmetic as in mapchete: where the 3x3 window touches nodata, numpy.ma keeps the
    # first operand's data (shaded, not shaded * 255), so such edge pixels become 1 there too
    stretched = np.clip(shaded * 255.0, 1, 255).astype(np.uint8)
    data = np.pad(np.ma.getdata(stretched), 1, mode="edge")
    return np.ma.masked_array(data=data, mask=np.ma.getmaskarray(elevation))


def execute(dem: Any, clip: Any = None, resampling: str = "nearest", azimuth: float = 315.0,
            altitude: float = 45.0, z: float = 1.0, scale: float = 1.0, td_matching_method: str = "gdal",
            td_matching_max_zoom: int | None = None, td_matching_precision: int = 8,
            td_fallback_to_higher_zoom: bool = False, clip_pixelbuffer: int = 0) -> np.ma.MaskedArray:
    """Hillshade of `dem` in the tile, masked outside `clip`'s features."""
    clip_geom = [] if clip is None else clip.read()
    if clip is not None and not clip_geom:
        raise Empty
    if dem.is_empty():
        raise Empty
    data = dem.read(resampling=resampling)
    if np.ma.getmaskarray(data).all():
        raise Empty
    shaded = hillshade(data, dem.tile.affine, azimuth=azimuth, altitude=altitude, z=z, scale=scale)
    if clip_geom:
        return clip_array_with_vector(shaded, dem.tile.affine, clip_geom, clip_buffer=clip_pixelbuffer)
    return shaded
