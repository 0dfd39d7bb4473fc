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

from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Bounds
from ziggurat.core.timesteps import TimeSteps
from ziggurat.io.common import nodata_from_json
from ziggurat.io.outputs.folder import describe_folder, read_metadata
from ziggurat.io.storage.atomic import write_json_atomic
from ziggurat.recipe.stac_settings import StacSettings
from ziggurat.records.catalog.parts import (
    crs_properties,
    footprint_lonlat,
    raster_bands,
    read_json,
    single_asset_item,
)

ZARR_TYPES = {3: "application/vnd+zarr; version=3", 2: "application/vnd+zarr; version=2"}
_DIGITS = 9


def store_item_path(store: str | Path) -> Path:
    root = Path(store)
    return root / f"{root.name}.json"


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
    geom = footprint_lonlat(grid.crs, extent, _DIGITS)
    props: dict[str, Any] = {**crs_properties(grid), "proj:bbox": [round(v, _DIGITS) for v in extent]}
    if zooms:
        group = read_json(store / str(max(zooms)) / "zarr.json", "") or {}
        attrs = group.get("attributes") or read_json(store / str(max(zooms)) / ".zattrs", "") or {}
        if attrs.get("spatial:shape"):
            props["proj:shape"] = list(attrs["spatial:shape"])
            props["proj:transform"] = list(attrs["spatial:transform"])
            props["proj:bbox"] = [round(v, _DIGITS) for v in attrs["spatial:bbox"]]   # the array's own
    series = TimeSteps.from_json(out["time"]) if out.get("time") else None
    if series is not None:   # a time series: the span of its steps (each step is a `time` value)
        props.update(start_datetime=series.start.isoformat().replace("+00:00", "Z"),
                     end_datetime=series.end.isoformat().replace("+00:00", "Z"))
    specs = tuple(out.get("band_specs") or ())
    asset: dict[str, Any] = {
        "href": "./", "type": ZARR_TYPES.get(int(out.get("zarr_format", 3)), ZARR_TYPES[3]), "title": "Data",
        "roles": ["data"], "raster:bands": raster_bands(out["dtype"], nodata_from_json(out.get("nodata")),
                                                        int(out["bands"]), specs),
        "description": f"multiscales group; zoom levels {', '.join(map(str, zooms))} as groups `<zoom>` "
                       f"holding `data` ({'time, ' if series is not None else ''}band, y, x) with "
                       f"{'time (CF-encoded step starts), time_end, ' if series is not None else ''}x/y coordinates"}
    payload = single_asset_item(store.stem, geom, settings, existing, props, asset, store, store, now)
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
