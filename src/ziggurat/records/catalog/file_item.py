"""A STAC Item for a single-file output (one GeoTIFF or COG): one `data` asset with `proj:` and
`raster:bands`, read from the file itself, plus the provenance links.

The item lives beside the file as `<stem>.stac.json` (never a name a GeoJSON beside it may have);
`ziggurat stac out.tif` rebuilds it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import rasterio

from ziggurat.core.errors import OutputError
from ziggurat.core.formats import COG_LAYOUT, COG_MEDIA_TYPE, GTIFF_MEDIA_TYPE
from ziggurat.io.storage.atomic import write_json_atomic
from ziggurat.recipe.stac_settings import StacSettings
from ziggurat.records.catalog.parts import (
    crs_properties_of,
    footprint_lonlat,
    kept_settings,
    nodata_json,
    read_json,
    single_asset_item,
    stac_class,
)

log = logging.getLogger(__name__)

COG_TYPE = COG_MEDIA_TYPE
GTIFF_TYPE = GTIFF_MEDIA_TYPE
_DIGITS = 9


def file_item_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(f"{p.stem}.stac.json")


def _classes(src: Any, band: int) -> list[dict[str, Any]]:
    """A band's classes from the file: names from its CLASSES metadata, colours from its table."""
    try:
        classes = json.loads(src.tags(band).get("CLASSES", "[]"))
    except ValueError:
        return []
    try:
        table = src.colormap(band)
    except ValueError:   # no colour table
        table = {}
    out = []
    for c in classes if isinstance(classes, list) else []:
        if isinstance(c, dict) and "value" in c and "name" in c:
            out.append(stac_class(c["value"], c["name"], rgba=table.get(c["value"])))
    return out


def _bands(src: Any, specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """raster:bands read from the file itself (type, nodata, names, units, scale/offset,
    classes), so the item can be rebuilt from the file alone; `specs` add class descriptions."""
    out = []
    for i in range(src.count):
        band: dict[str, Any] = {"data_type": src.dtypes[i]}
        nodata = nodata_json(src.nodata)
        if nodata is not None:
            band["nodata"] = nodata
        tags = src.tags(i + 1)
        if src.descriptions[i]:
            band["name"] = src.descriptions[i]
        if tags.get("DESCRIPTION"):
            band["description"] = tags["DESCRIPTION"]
        if src.units[i]:
            band["unit"] = src.units[i]
        if src.scales[i] != 1.0 or src.offsets[i] != 0.0:
            band["scale"], band["offset"] = float(src.scales[i]), float(src.offsets[i])
        classes = _classes(src, i + 1)
        if classes:
            spec = {c["value"]: c for c in (specs[i] if i < len(specs) else {}).get("classes") or ()}
            for c in classes:
                if spec.get(c["value"], {}).get("description"):
                    c["description"] = spec[c["value"]]["description"]
            band["classification:classes"] = classes
        out.append(band)
    return out


def file_item_dict(path: Path, settings: StacSettings | None = None, existing: Mapping[str, Any] | None = None,
                   *, cog: bool = False, band_specs: tuple[Mapping[str, Any], ...] = (),
                   now: dt.datetime | None = None) -> dict[str, Any]:
    settings = settings or StacSettings()
    existing = existing or {}
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        with rasterio.open(path) as src:
            bounds, crs, shape, transform = src.bounds, src.crs, (src.height, src.width), src.transform
            bands = _bands(src, band_specs)
    except rasterio.errors.RasterioIOError as exc:
        raise OutputError(f"cannot read {path}: {exc}") from exc
    geom = footprint_lonlat(crs, bounds, _DIGITS)
    props = {**crs_properties_of(crs), "proj:bbox": [round(v, _DIGITS) for v in bounds], "proj:shape": list(shape),
             "proj:transform": list(transform)[:6]}
    asset: dict[str, Any] = {"href": f"./{path.name}", "type": COG_TYPE if cog else GTIFF_TYPE, "title": "Data",
                             "roles": ["data"], "raster:bands": bands}
    out = single_asset_item(path.stem, geom, settings, existing, props, asset, path, path.parent, now)
    return out


def write_file_item(path: str | os.PathLike[str], settings: StacSettings | None = None, *, cog: bool = False,
                    band_specs: tuple[Mapping[str, Any], ...] = ()) -> Path:
    """Create or update the item of a single-file output (user-added properties and links kept)."""
    path = Path(path)
    item = file_item_path(path)
    payload = file_item_dict(path, settings, read_json(item, f"rebuilding it from {path}"), cog=cog,
                             band_specs=band_specs)
    try:
        write_json_atomic(item, payload)
    except OSError as exc:
        raise OutputError(f"cannot write STAC item {item}: {exc}") from exc
    return item


def build_file_item(path: str | os.PathLike[str]) -> Path:
    """`ziggurat stac out.tif`: rebuild the item from the file, keeping id and datetime."""
    path = Path(path)
    if not path.is_file():
        raise OutputError(f"{path} is not a file")
    existing = read_json(file_item_path(path), f"rebuilding it from {path}") or {}
    settings = kept_settings(existing)
    asset = (existing.get("assets") or {}).get("data") or {}
    with rasterio.open(path) as src:
        cog = asset.get("type") == COG_TYPE or src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == COG_LAYOUT
    return write_file_item(path, settings, cog=cog)


__all__ = ["build_file_item", "file_item_dict", "file_item_path", "write_file_item"]
