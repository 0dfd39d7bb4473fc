"""Overview tiles: zooms outside `baselevels` built from the output instead of the process.

A ``lower`` tile (zoom below ``baselevels.min``) is a resampling of the output tiles of the
zoom above it (its children); a ``higher`` tile (zoom above ``baselevels.max``) is a
resampling of the output tiles of the zoom below it (its parent, with a rim of its neighbours'
pixels so bilinear and cubic kernels leave no seams at parent edges; the schedule starts it once
those neighbours are done). Sources are read back from
the output with `output.read(tile)`, mosaicked on their own pixel grid and resampled to the
target tile with `rasterio.warp.reproject`; the result is written like a process result, so
metatiling, empty tiles and checksums behave the same. Output nodata marks missing pixels
(an output without nodata reads a missing source tile as 0).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import reproject

from ziggurat.core.grid import Bounds, Grid
from ziggurat.core.tasks import LOWER, OverviewTask, task_index
from ziggurat.io.common import empty_masked, paste, resampling_from_name

#: `reproject` on arrays builds in-memory datasets inside a (not thread-safe) catch_warnings
#: block; under the threads executor its NotGeoreferencedWarning leaks. It is spurious.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"rasterio\.warp")


#: source pixels read past a higher tile's parent: enough for every GDAL kernel (lanczos: 3)
HIGHER_MARGIN = 4


def source_zoom(task: OverviewTask) -> int:
    return task.zoom + 1 if task.source == LOWER else task.zoom - 1


def build_overview(output: Any, grid: Grid, task: OverviewTask, resampling: str
                   ) -> np.ma.MaskedArray | None:
    """The overview tile's pixels (bands, h, w) unbuffered, or None when no source tile exists."""
    tile = grid.tile(*task_index(task))
    zoom = source_zoom(task)
    out_grid = output.output_grid
    area = tile.bounds
    if task.source != LOWER:   # upsampling: the parent's neighbours too, so kernels see across its edges
        xres, yres = out_grid.resolution(zoom)
        area = Bounds(area.left - HIGHER_MARGIN * xres, area.bottom - HIGHER_MARGIN * yres,
                      area.right + HIGHER_MARGIN * xres, area.top + HIGHER_MARGIN * yres)
    sources = list(out_grid.tiles_in_bounds(area, zoom))
    if not sources:
        return None
    left = min(t.bounds.left for t in sources)
    top = max(t.bounds.top for t in sources)
    right = max(t.bounds.right for t in sources)
    bottom = min(t.bounds.bottom for t in sources)
    xres, yres = out_grid.resolution(zoom)
    shape = (round((top - bottom) / yres), round((right - left) / xres))
    src_affine = Affine(xres, 0.0, left, 0.0, -yres, top)
    mosaic = empty_masked(output.bands, shape, output.dtype, output.nodata)
    found = False
    for t in sources:
        data = output.read(t)
        if data is None:
            continue
        found = True
        paste(mosaic, data, round((top - t.bounds.top) / yres), round((t.bounds.left - left) / xres))
    if not found:
        return None
    nodata = output.nodata
    fill = mosaic.fill_value
    h, w = tile.shape
    dest = np.full((output.bands, h, w), fill, dtype=output.dtype)
    reproject(mosaic.filled(fill), dest, src_transform=src_affine, src_crs=grid.crs,
              dst_transform=tile.affine, dst_crs=grid.crs, src_nodata=nodata, dst_nodata=nodata,
              resampling=resampling_from_name(resampling))
    if nodata is None:
        return np.ma.masked_array(dest, mask=np.zeros(dest.shape, dtype=bool))
    invalid = np.isnan(dest) if isinstance(nodata, float) and np.isnan(nodata) else dest == nodata
    return np.ma.masked_array(dest, mask=invalid)


__all__ = ["build_overview", "source_zoom"]
