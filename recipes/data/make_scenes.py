"""A small static STAC catalog of synthetic "Sentinel-2" scenes for recipes/composite.yaml.

    python recipes/data/make_scenes.py [FOLDER]      (default: ../output/scenes, beside the demo's output)
    python recipes/data/make_scenes.py --series [FOLDER]   (a year of scenes: ../output/series-scenes)

14 scenes over the same 2 x 2 geodetic zoom-12 tiles (512 x 512 px near 10 E, 45 N), each with
four uint16 bands (B02, B03, B04, B08) and an SCL-like classification band (4: vegetation, clear;
9: cloud; 3: cloud shadow; 0: no data). The ground never changes: band b holds
1000 * (b + 1) + 7 * (row % 97) + 3 * (col % 89) wherever the scene sees it, so a composite can be
checked for exact recovery. A cloud (a disc, SCL 9, bright) and its shadow (SCL 3, dark) move
across the area from scene to scene. Scenes 8-11 cover only the western half of the area (their
geometry says so). Two decoys must be filtered out: one from 2023 (outside the season) and one
with eo:cloud_cover 95 (fails `eo:cloud_cover < 60`); both carry a different ground.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pystac
import rasterio
from affine import Affine

BANDS = ("B02", "B03", "B04", "B08")
CLEAR, CLOUD, SHADOW = 4, 9, 3
ZOOM, LON, LAT = 12, 10.0, 45.0


def ground(height: int, width: int, offset: int = 0) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([1000 * (b + 1) + 7 * (rows % 97) + 3 * (cols % 89) + offset
                     for b in range(len(BANDS))]).astype("uint16")


def _area() -> tuple[float, float, float, Affine]:
    """(left, top, pixel size, transform) of the scenes: the zoom-12 tile at (LON, LAT)."""
    from ziggurat import Grid

    grid = Grid.from_name("geodetic")
    tile = grid.tile_at(LON, LAT, ZOOM)
    res = grid.resolution(ZOOM)[0]
    left, top = tile.bounds.left, tile.bounds.top
    return left, top, res, Affine(res, 0, left, 0, -res, top)


def _polygon(bbox: list[float]) -> dict:
    return {"type": "Polygon", "coordinates": [[[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]],
                                                [bbox[0], bbox[3]], [bbox[0], bbox[1]]]]}


def _add_scene(catalog: pystac.Catalog, folder: Path, item: pystac.Item, data: np.ndarray, scl: np.ndarray,
               profile: dict) -> None:
    """The scene's band GeoTIFFs and SCL in `folder/<item id>/`, as the item's assets."""
    out = folder / item.id
    out.mkdir(parents=True, exist_ok=True)
    for b, name in enumerate(BANDS):
        with rasterio.open(out / f"{name}.tif", "w", dtype="uint16", **profile) as dst:
            dst.write(data[b], 1)
        item.add_asset(name, pystac.Asset(f"./{name}.tif", media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
    with rasterio.open(out / "SCL.tif", "w", dtype="uint8", **profile) as dst:
        dst.write(scl, 1)
    item.add_asset("SCL", pystac.Asset("./SCL.tif", media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
    catalog.add_item(item)


def make_catalog(folder: str | Path, size: int = 512, scenes: int = 12, decoys: bool = True) -> Path:
    """Write the catalog (and its GeoTIFFs) into `folder`; returns catalog.json. `scenes` season
    scenes a week apart (the last third cover the western half only), plus the two decoys."""
    folder = Path(folder)
    left, top, res, transform = _area()
    catalog = pystac.Catalog("scenes", "Synthetic Sentinel-2-like scenes for ziggurat's composite recipe")
    rows, cols = np.mgrid[0:size, 0:size]
    dates = [dt.datetime(2024, 6, 1, 10, 30, tzinfo=dt.timezone.utc) + dt.timedelta(days=7 * k)
             for k in range(scenes)]
    plans = [(f"S2X_{d:%Y%m%d}", d, 20.0 + 3 * (k % 12), 0, k >= scenes * 2 // 3) for k, d in enumerate(dates)]
    if decoys:   # left out by the season and by eo:cloud_cover < 60; another ground shows if they are not
        plans += [("S2X_20230701", dt.datetime(2023, 7, 1, 10, 30, tzinfo=dt.timezone.utc), 10.0, 500, False),
                  ("S2X_20240704_cloudy", dt.datetime(2024, 7, 4, 10, 30, tzinfo=dt.timezone.utc), 95.0, 700, False)]
    for k, (item_id, when, cloud_cover, offset, west_only) in enumerate(plans):
        width = size // 2 if west_only else size
        data = ground(size, width, offset)
        scl = np.full((size, width), CLEAR, dtype="uint8")
        cy, cx = size * (0.2 + 0.05 * (k % 12)), size * (0.1 + 0.07 * (k % 12))   # the cloud drifts south-east
        radius = size * 0.18
        cloud = (rows[:, :width] - cy) ** 2 + (cols[:, :width] - cx) ** 2 < radius ** 2
        shadow = ((rows[:, :width] - cy - radius * 0.6) ** 2 + (cols[:, :width] - cx - radius * 0.6) ** 2
                  < (radius * 0.7) ** 2) & ~cloud
        data[:, cloud] = 9000 + (k * 13) % 500
        data[:, shadow] = (data[:, shadow] * 0.3).astype("uint16")
        scl[cloud], scl[shadow] = CLOUD, SHADOW
        scl[:4, :] = 0           # a no-data strip along the top edge of every scene
        data[:, :4, :] = 0
        right = left + width * res
        bbox = [left, top - size * res, right, top]
        geometry = _polygon(bbox)
        item = pystac.Item(item_id, geometry, bbox, when, {"eo:cloud_cover": cloud_cover, "platform": "synthetic-2"})
        profile = dict(driver="GTiff", width=width, height=size, count=1, crs="EPSG:4326", transform=transform,
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate", nodata=0)
        _add_scene(catalog, folder, item, data, scl, profile)
    catalog.normalize_hrefs(str(folder.resolve()) + "/")   # a folder, even with a dot in its name
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return folder / "catalog.json"


def make_series_catalog(folder: str | Path, size: int = 256, year: int = 2024,
                        cloudy_months: tuple[int, ...] = (3, 7, 8)) -> Path:
    """A year of scenes for recipes/timeseries.yaml: four a month (days 3, 10, 17 and 24), the
    ground rising by 1 a day (band b holds ground(...)[b] + the day of the year), a cloud disc
    drifting across each scene, and `cloudy_months` overcast in every scene (SCL 9 everywhere).
    A monthly median is then known exactly, and so is every gap a fill has to close."""
    folder = Path(folder)
    left, top, res, transform = _area()
    catalog = pystac.Catalog("series", "A synthetic year of Sentinel-2-like scenes for ziggurat's timeseries recipe")
    rows, cols = np.mgrid[0:size, 0:size]
    base = ground(size, size)
    bbox = [left, top - size * res, left + size * res, top]
    geometry = _polygon(bbox)
    profile = dict(driver="GTiff", width=size, height=size, count=1, crs="EPSG:4326", transform=transform,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate", nodata=0)
    for k in range(48):
        when = dt.datetime(year, k // 4 + 1, 3 + 7 * (k % 4), 10, 30, tzinfo=dt.timezone.utc)
        day = when.timetuple().tm_yday
        data = (base + day).astype("uint16")
        scl = np.full((size, size), CLEAR, dtype="uint8")
        cloud = (rows - size * (0.1 + 0.02 * k)) ** 2 + (cols - size * (0.8 - 0.015 * k)) ** 2 < (size * 0.2) ** 2
        if when.month in cloudy_months:
            cloud[:] = True
        data[:, cloud] = 9000 + k
        scl[cloud] = CLOUD
        item = pystac.Item(f"S2X_{when:%Y%m%d}", geometry, bbox, when, {"eo:cloud_cover": float(cloud.mean() * 100)})
        _add_scene(catalog, folder, item, data, scl, profile)
    catalog.normalize_hrefs(str(folder.resolve()) + "/")
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return folder / "catalog.json"


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--series"]
    if "--series" in sys.argv:   # the year of scenes recipes/timeseries.yaml reads
        default = Path(__file__).resolve().parents[2] / "output" / "series-scenes"
        print(make_series_catalog(Path(args[0]) if args else default))
    else:
        where = Path(args[0]) if args else Path(__file__).resolve().parents[2] / "output" / "scenes"
        print(make_catalog(where))
