"""The benchmark's hillshade as a mapchete process, so both engines do the same per-tile work."""

import numpy as np

from ziggurat_processes.hillshade import hillshade


def execute(mp):
    dem = mp.open("dem").read(1)
    if dem.mask.all():
        return "empty"
    xres = mp.tile.pixel_x_size
    top = mp.tile.bounds.top + mp.tile.pixelbuffer * xres
    lats = top - (np.arange(dem.shape[0]) + 0.5) * xres
    return hillshade(dem, xres, xres, latitudes=lats)
