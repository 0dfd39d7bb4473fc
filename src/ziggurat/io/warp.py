"""Reading a dataset onto a buffered tile of another grid: GDAL's warper through a WarpedVRT,
with the masks made explicit, and what a grid that wraps around the globe needs."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject

from ziggurat.core.grid import Tile
from ziggurat.core.mapchete_grid import mapchete_tile_geometry
from ziggurat.io.common import empty_masked, paste

logger = logging.getLogger(__name__)


def alpha_band(src: DatasetReader) -> int:
    """1-based index of the dataset's alpha band, 0 if it has none."""
    return next((i for i, ci in enumerate(src.colorinterp, 1) if ci.name == "alpha"), 0)


def warp_to_tile(src: DatasetReader, idx: list[int], tile: Tile, resampling: Resampling,
                 mask: str = "alpha") -> np.ma.MaskedArray:
    """Reproject bands of an open dataset onto the buffered tile; invalid or outside is masked.

    A WarpedVRT with an added alpha band: GDAL fills the alpha from nodata, masks and the
    source footprint. Masks are read from that alpha explicitly because GDAL only derives them
    from Byte/UInt16 alpha bands. It avoids `reproject` with arrays, whose MemoryDataset toggles
    the (not thread-safe) warnings filters and leaks NotGeoreferencedWarning under threads.
    """
    h, w = tile.buffered_shape
    dtype, nodata, alpha = src.dtypes[idx[0] - 1], src.nodata, alpha_band(src)
    out = empty_masked(len(idx), (h, w), dtype, nodata)
    if mask == "nodata" and nodata is not None and not alpha:
        return _warp_parts(src, idx, tile, resampling, out)
    try:
        # SAMPLE_GRID: with edge sampling only, GDAL clipped the source window of buffered
        # mercator tiles reaching past the antimeridian and dropped valid columns
        with WarpedVRT(src, crs=tile.crs, transform=tile.buffered_affine, width=w, height=h,
                       resampling=resampling, add_alpha=not alpha, SAMPLE_GRID="YES") as vrt:
            if alpha:  # a source alpha band (RGBA): GDAL's own mask works
                out[:] = vrt.read(idx, masked=True)
                return out
            stack = vrt.read([*idx, vrt.count])
    except (RasterioError, CPLE_BaseError) as exc:
        # PROJ may reject every point of a tile (the far side of an orthographic source); the
        # VRT then fails where the warp API just leaves the tile empty
        logger.debug("WarpedVRT failed for tile %s (%s); retrying with reproject", tile, exc)
        stack = np.full((len(idx) + 1, h, w), out.fill_value, dtype=dtype)
        stack[-1] = 0  # alpha; GDAL would initialise it with the nodata value
        reproject(rasterio.band(src, idx), stack, src_nodata=nodata, dst_nodata=out.fill_value,
                  dst_transform=tile.buffered_affine, dst_crs=tile.crs, src_alpha=alpha,
                  dst_alpha=len(idx) + 1, resampling=resampling, init_dest_nodata=False)
    invalid = np.broadcast_to(stack[-1] == 0, out.shape)
    out[:] = np.ma.masked_array(stack[:-1], mask=invalid)
    return out


def global_width(grid: Any) -> float | None:
    """The x extent of a grid that spans its CRS all the way round (geodetic, mercator)."""
    b = grid.bounds()
    width = b.right - b.left
    if grid.crs.is_geographic and math.isclose(width, 360.0, rel_tol=1e-9):
        return width
    if grid.crs.to_epsg() == 3857 and math.isclose(width, 2 * math.pi * 6378137.0, rel_tol=1e-9):
        return width
    return None


def past_global_edge(tile: Tile) -> bool:
    """The buffered tile reaches past the edge of a grid that goes all the way round."""
    b, gb = tile.buffered_bounds, tile.grid.bounds(tile.zoom)
    outside = b.left < gb.left or b.right > gb.right or b.top > gb.top or b.bottom < gb.bottom
    return outside and global_width(tile.grid) is not None


def _mapchete_parts(tile: Tile) -> list[tuple[tuple[float, float, float, float], Affine, tuple[int, int], int]]:
    """The windows mapchete warps for a buffered tile, in tilematrix's float arithmetic: (bounds
    where the source is read, the part's transform, its shape, -1/0/1: the part lies a world
    to the left of where it is read, in place, or a world to the right). On a global grid a buffer past
    the antimeridian is read from the other side (shifted by the pyramid's width) and nothing is
    read past the poles, each part on its own (mapchete's `_get_warped_edge_array`)."""
    geo = mapchete_tile_geometry(tile.grid, tile.zoom, tile.row, tile.col)
    if geo is None:   # a grid mapchete cannot describe: the grid's own numbers
        b = tile.buffered_bounds
        return [((b.left, b.bottom, b.right, b.top), tile.buffered_affine, tile.buffered_shape, 0)]
    bl, bb, br, bt = geo.buffered
    L, B, R, T = geo.pyramid
    on_edge = bl <= L or bb <= B or br >= R or bt >= T   # mapchete's `is_on_edge`, of the buffered tile
    if not (geo.is_global and tile.pixelbuffer and on_edge):
        shape = (round((bt - bb) / geo.yres), round((br - bl) / geo.xres))
        return [((bl, bb, br, bt), Affine(geo.xres, 0.0, bl, 0.0, -geo.yres, bt), shape, 0)]
    pieces = [((max(bl, L), bb, min(br, R), bt), 0)]
    if bl < L:
        pieces.append(((bl + 2 * R, bb, L + 2 * R, bt), -1))
    if br > R:
        pieces.append(((R - 2 * R, bb, br - 2 * R, bt), 1))
    out = []
    for (left, bottom, right, top), side in pieces:
        shape = (int(round((top - bottom) / geo.yres)), int(round((right - left) / geo.xres)))
        out.append(((left, bottom, right, top), from_bounds(left, bottom, right, top, shape[1], shape[0]), shape,
                    side))
    return out


def _warp_parts(src: DatasetReader, idx: list[int], tile: Tile, resampling: Resampling,
                out: np.ma.MaskedArray) -> np.ma.MaskedArray:
    """mapchete's read of a buffered tile: nodata in and out (no alpha: GDAL's kernels then
    weigh as mapchete's do), through the windows it warps (`_mapchete_parts`), so the pixels
    equal mapchete's to the last bit."""
    b = tile.buffered_bounds
    xres, yres = tile.resolution
    width = global_width(tile.grid) or 0.0
    nodata = src.nodata
    for (left, bottom, right, top), affine, (ph, pw), side in _mapchete_parts(tile):
        if ph <= 0 or pw <= 0:
            continue
        with WarpedVRT(src, crs=tile.crs, transform=affine, width=pw, height=ph, resampling=resampling,
                       src_nodata=nodata, nodata=nodata) as vrt:
            part = vrt.read(idx, window=vrt.window(left, bottom, right, top), out_shape=(len(idx), ph, pw),
                            masked=True)
        paste(out, part, round((b.top - top) / yres), round((left + side * width - b.left) / xres))
    return out


__all__ = ["alpha_band", "global_width", "past_global_edge", "warp_to_tile"]
