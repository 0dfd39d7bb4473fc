"""Makes the three overlapping DEMs of recipes/merge_dem.yaml from ../srtm_dallas.tif.

- dem_main.tif: the SRTM DEM (1/1200 degree) with a 60 x 80 pixel hole of nodata (a data gap);
- dem_coarse.tif: the same area at 1/600 degree (2 x 2 averages), a little larger on every side,
  standing in for a coarser second source (GLO-30 under FABDEM);
- dem_patch.tif: a 48 x 48 pixel patch on the main grid, 25 m higher: corrections that win.

Run from this folder: python make.py (the files are committed; this is how they were made).
"""

import numpy as np
import rasterio
from affine import Affine

with rasterio.open("../srtm_dallas.tif") as src:
    dem = src.read(1).astype("float32")
    dem[src.read_masks(1) == 0] = np.nan
    t, crs = src.transform, src.crs
res = t.a
profile = dict(driver="GTiff", count=1, dtype="float32", crs=crs, nodata=-9999.0, tiled=True,
               blockxsize=128, blockysize=128, compress="deflate", predictor=3)

main = dem.copy()
main[150:210, 200:280] = np.nan
with rasterio.open("dem_main.tif", "w", width=main.shape[1], height=main.shape[0], transform=t, **profile) as dst:
    dst.write(np.nan_to_num(main, nan=-9999.0)[np.newaxis])

pad = np.pad(dem, 8, mode="edge")[: (dem.shape[0] + 16) // 2 * 2, : (dem.shape[1] + 16) // 2 * 2]
coarse = pad.reshape(pad.shape[0] // 2, 2, pad.shape[1] // 2, 2).mean(axis=(1, 3)) + 3.0
ct = Affine(2 * res, 0, t.c - 8 * res, 0, -2 * res, t.f + 8 * res)
with rasterio.open("dem_coarse.tif", "w", width=coarse.shape[1], height=coarse.shape[0], transform=ct,
                   **profile) as dst:
    dst.write(np.nan_to_num(coarse, nan=-9999.0).astype("float32")[np.newaxis])

patch = dem[100:148, 100:148] + 25.0
pt = Affine(res, 0, t.c + 100 * res, 0, -res, t.f - 100 * res)
with rasterio.open("dem_patch.tif", "w", width=48, height=48, transform=pt, **profile) as dst:
    dst.write(np.nan_to_num(patch, nan=-9999.0)[np.newaxis])
