"""A STAC Item for a Zarr store: one `data` asset (`application/vnd+zarr`) pointing at the store,
with `proj:` of the finest zoom and `raster:bands`, plus the provenance links.

The store's arrays cover the recipe's whole area at every zoom (metadata.json `extent`), so the
item describes that area; what each zoom holds is in the store's own multiscales metadata. The
item lives in the store as `<store name>.json`, as a tile directory's does (Zarr readers ignore
files that are not Zarr documents).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Mapping

import pystac
import shapely
from rasterio.warp import transform_geom

from ziggurat.errors import OutputError
from ziggurat.grid import Bounds, Grid
from ziggurat.io.atomic import write_json_atomic
from ziggurat.io.common import nodata_from_json
from ziggurat.io.folder import describe_folder, read_metadata
from ziggurat.recipe.stac_settings import COMPUTED_PROPERTIES, StacSettings
from ziggurat.records.provenance import provenance_links
from ziggurat.records.stac_parts import (
    PROJECTION_SCHEMA,
    RASTER_SCHEMA,
    band_extensions,
    crs_properties,
    raster_bands,
    read_json,
)

ZARR_TYPES = {3: "application/vnd+zarr; version=3", 2: "application/vnd+zarr; version=2"}
_DIGITS = 9


def store_item_path(store: str | Path) -> Path:
    root = Path(store)
    return root / f"{root.name}.json"


def _geometry(grid: Grid, extent: Bounds) -> Any:
    box = shapely.box(*extent)
    if grid.crs.to_authority() not in (("OGC", "CRS84"),):
        dense = shapely.segmentize(box, max(extent.right - extent.left, extent.top - extent.bottom) / 128)
        box = shapely.geometry.shape(transform_geom(grid.crs, "EPSG:4326", dense.__geo_interface__))
    return shapely.orient_polygons(shapely.set_precision(box, 10 ** -_DIGITS), exterior_cw=False)


def store_item_dict(store: Path, settings: StacSettings | None = None, existing: Mapping[str, Any] | None = None,
                    now: dt.datetime | None = None) -> dict[str, Any]:
    settings = settings or StacSettings()
    existing = existing or {}
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        grid, out = describe_folder(read_metadata(store))
        extent = Bounds(*out["extent"])
        zooms = [int(z) for z in out.get("zooms") or ()]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"{store} is not a Zarr store written by ziggurat: {exc}") from exc
    geom = _geometry(grid, extent)
    old = dict(existing.get("properties") or {})
    props = {k: v for k, v in old.items() if k not in COMPUTED_PROPERTIES}
    props.update(settings.properties)
    for name in ("title", "description", "license"):
        value = getattr(settings, name)
        if value is not None:
            props[name] = value
    props.setdefault("license", "other")
    props.update(crs_properties(grid))
    props["proj:bbox"] = [round(v, _DIGITS) for v in extent]
    if zooms:
        group = read_json(store / str(max(zooms)) / "zarr.json", "") or {}
        attrs = group.get("attributes") or read_json(store / str(max(zooms)) / ".zattrs", "") or {}
        if attrs.get("spatial:shape"):
            props["proj:shape"] = list(attrs["spatial:shape"])
            props["proj:transform"] = list(attrs["spatial:transform"])
            props["proj:bbox"] = [round(v, _DIGITS) for v in attrs["spatial:bbox"]]   # the array's own
    props["created"] = old.get("created") or pystac.utils.datetime_to_str(now)
    props["updated"] = pystac.utils.datetime_to_str(now)
    when = None if settings.datetime_null else (settings.datetime or now)
    item = pystac.Item(settings.id or existing.get("id") or store.stem, geom.__geo_interface__, list(geom.bounds),
                       when, props)
    payload = item.to_dict(include_self_link=False, transform_hrefs=False)
    specs = tuple(out.get("band_specs") or ())
    asset: dict[str, Any] = {
        "href": "./", "type": ZARR_TYPES.get(int(out.get("zarr_format", 3)), ZARR_TYPES[3]), "title": "Data",
        "roles": ["data"], "raster:bands": raster_bands(out["dtype"], nodata_from_json(out.get("nodata")),
                                                        int(out["bands"]), specs),
        "description": f"multiscales group; zoom levels {', '.join(map(str, zooms))} as groups `<zoom>` "
                       "holding `data` (band, y, x) with x/y coordinates"}
    if settings.eo_bands:
        asset["eo:bands"] = [dict(b) for b in settings.eo_bands]
    ours = (PROJECTION_SCHEMA, RASTER_SCHEMA) + band_extensions(specs)
    payload["stac_extensions"] = list(ours) + [e for e in existing.get("stac_extensions") or [] if e not in ours]
    assets = {k: v for k, v in (existing.get("assets") or {}).items() if k != "data"}
    payload["assets"] = {"data": asset, **assets}
    links = [link for link in existing.get("links") or [] if not str(link.get("rel", "")).startswith("ziggurat:")]
    payload["links"] = links + provenance_links(store, relative_to=store)
    return payload


def write_store_item(store: str | Path, settings: StacSettings | None = None) -> Path:
    """Create or update the item of a Zarr store (user-added properties, assets and links kept)."""
    store = Path(store)
    item = store_item_path(store)
    payload = store_item_dict(store, settings, read_json(item, f"rebuilding it from {store}"))
    try:
        write_json_atomic(item, payload)
    except OSError as exc:
        raise OutputError(f"cannot write STAC item {item}: {exc}") from exc
    return item


__all__ = ["ZARR_TYPES", "store_item_dict", "store_item_path", "write_store_item"]
