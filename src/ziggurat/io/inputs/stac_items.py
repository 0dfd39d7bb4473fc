"""Finding the items of a `stac` input: one search of a static catalog, collection or
ItemCollection (local or over HTTP, read with pystac), filtered by datetime, `query` and the
assets asked for, kept as plain records and cached under the output's `.ziggurat/cache`.

The parent searches once (when it fingerprints the inputs) and writes the cache; workers read
the cache, never the catalog, so a run of any size makes one pass over the catalog.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import operator
import os
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from ziggurat.core.errors import InputError
from ziggurat.core.location import is_url
from ziggurat.recipe.yamlload import thaw

log = logging.getLogger(__name__)

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "neq": operator.ne, "lt": operator.lt, "lte": operator.le, "gt": operator.gt,
    "gte": operator.ge, "in": lambda a, b: a in b}


class StacRecord(NamedTuple):
    """What a tile needs of one item: when, where, and the files of its assets."""

    id: str
    datetime: str                       # ISO 8601, UTC
    geometry: dict[str, Any]            # GeoJSON, lon/lat
    bbox: tuple[float, float, float, float]
    assets: dict[str, str]              # asset key -> absolute href
    properties: dict[str, Any]

    @property
    def version(self) -> str:
        """What identifies the item's content for tile keys: its `updated`, else its id and time."""
        return str(self.properties.get("updated") or f"{self.id}@{self.datetime}")


def _when(item: Any) -> dt.datetime | None:
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _matches(props: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    for prop, cond in query.items():
        if prop not in props:
            return False
        for op, value in cond.items():
            try:
                if not _OPS[op](props[prop], tuple(value) if op == "in" else value):
                    return False
            except TypeError:   # e.g. a string property compared with a number
                return False
    return True


def _read_items(source: str) -> list[Any]:
    import pystac

    try:
        obj = pystac.read_file(source)
    except Exception as exc:
        raise InputError(f"cannot read the STAC catalog {source}: {exc}") from exc
    if isinstance(obj, pystac.Item):
        return [obj]
    if isinstance(obj, pystac.ItemCollection):
        return list(obj.items)
    if isinstance(obj, pystac.Catalog):   # collections too
        try:
            return list(obj.get_items(recursive=True))
        except Exception as exc:
            raise InputError(f"cannot read the items of the STAC catalog {source}: {exc}") from exc
    raise InputError(f"{source} is a {type(obj).__name__}, not a STAC catalog, collection or ItemCollection")


def _from_file(source: str) -> list[Any]:
    """An ItemCollection file is a FeatureCollection (pystac.read_file does not take those)."""
    import pystac

    if not is_url(source):
        try:
            data = json.loads(Path(source).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the STAC catalog {source}: {exc}") from exc
        if isinstance(data, dict) and data.get("type") == "FeatureCollection":
            return list(pystac.ItemCollection.from_dict(data, preserve_dict=False).items)
    return _read_items(source)


def _api_items(source: str, options: Mapping[str, Any]) -> list[Any]:
    """One STAC API item search (pystac-client), every page of it."""
    try:
        from pystac_client import Client
    except ImportError as exc:   # an optional extra
        raise InputError("STAC API searches need pystac-client: pip install 'ziggurat[stac]'") from exc
    start, end = options.get("datetime") or (None, None)
    when = None if start is None and end is None else f"{start or '..'}/{end or '..'}"
    try:
        client = Client.open(source)
        found = client.search(collections=list(options["collections"]), datetime=when,
                              query=thaw(options.get("query")) or None, filter=thaw(options.get("filter")),
                              filter_lang="cql2-json" if options.get("filter") else None)
        return list(found.items())
    except Exception as exc:
        raise InputError(f"STAC API search at {source} failed: {exc}") from exc


def search(options: Mapping[str, Any]) -> list[StacRecord]:
    """The items of the catalog that fall in the datetime range, pass the query and have every
    asset asked for, oldest first (ties by id)."""
    source = str(options["stac"])
    assets: Sequence[str] = options["assets"]
    start, end = options.get("datetime") or (None, None)
    lo = dt.datetime.fromisoformat(start) if start else None
    hi = dt.datetime.fromisoformat(end) if end else None
    query = options.get("query") or {}
    out: list[StacRecord] = []
    lacking = 0
    items = _api_items(source, options) if options.get("collections") else _from_file(source)
    for item in items:
        when = _when(item)
        if when is None or (lo is not None and when < lo) or (hi is not None and when > hi):
            continue
        if query and not _matches(item.properties, query):
            continue
        if item.geometry is None or any(a not in item.assets for a in assets):
            lacking += 1
            continue
        hrefs = {a: item.assets[a].get_absolute_href() or item.assets[a].href for a in assets}
        hrefs = {a: h if is_url(h) else os.path.abspath(h) for a, h in hrefs.items()}
        bbox = tuple(float(v) for v in (item.bbox or _bbox(item.geometry)))[:4]
        out.append(StacRecord(item.id, when.astimezone(dt.timezone.utc).isoformat(), dict(item.geometry),
                              bbox, hrefs, _json_props(item.properties)))  # type: ignore[arg-type]
    if lacking:
        log.warning("STAC %s: %d item(s) lack a geometry or one of the assets %s and are left out", source,
                    lacking, ", ".join(assets))
    out.sort(key=lambda r: (r.datetime, r.id))
    return out


def _bbox(geometry: Mapping[str, Any]) -> tuple[float, float, float, float]:
    import shapely.geometry

    return tuple(shapely.geometry.shape(geometry).bounds)


def _json_props(props: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(props), default=str))


def _cache_path(cache_dir: str | None, name: str, options: Mapping[str, Any]) -> Path | None:
    if not cache_dir:
        return None
    key = hashlib.sha256(_key(options).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"stac-{name.replace('/', '_')}-{key}.json"


#: searches made by this process, by options: the parent opens inputs several times before its
#: workers start (planning, sizing, fingerprinting), yet searches once
_SEARCHED: dict[str, list[StacRecord]] = {}


def _key(options: Mapping[str, Any]) -> str:
    return json.dumps({k: options[k] for k in sorted(options)}, default=str, sort_keys=True)


def records(name: str, options: Mapping[str, Any], cache_dir: str | None, *, refresh: bool = False
            ) -> list[StacRecord]:
    """The search's result: this process's earlier search, else the run's cache (workers), else a
    search. `refresh` (the parent's fingerprint) skips the cache file, not this process's search."""
    key = _key(options)
    path = _cache_path(cache_dir, name, options)
    found = _SEARCHED.get(key)
    if found is None and path is not None and not refresh and path.is_file():
        try:
            return [StacRecord(r["id"], r["datetime"], r["geometry"], tuple(r["bbox"]), r["assets"],
                               r["properties"]) for r in json.loads(path.read_text())]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.debug("STAC cache %s unreadable (%s): searching again", path, exc)
    fresh = found is None
    if found is None:
        found = _SEARCHED[key] = search(options)
    # the parent's fingerprint (refresh) writes what this run's workers read, over an earlier run's
    if path is not None and (fresh or refresh or not path.is_file()):
        from ziggurat.io.storage.atomic import write_json_atomic

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, [r._asdict() for r in found])  # type: ignore[arg-type]
        except OSError as exc:
            log.debug("cannot write the STAC cache %s: %s", path, exc)
    return found


def listing_sha256(found: Sequence[StacRecord]) -> str:
    listing = [(r.id, r.datetime, r.version, sorted(r.assets.items())) for r in found]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


__all__ = ["StacRecord", "listing_sha256", "records", "search"]
