"""A STAC Collection holding the items of one or several outputs (`stac.collection` in a recipe).

Each run adds (or refreshes) its output's item in the collection and recomputes the collection's
extent from every item it lists, so recipes writing several outputs can share one collection
(`stac.collection.path`); the item gets the `collection` field and links back. Items that no longer
exist are dropped from the collection.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import pystac

from ziggurat.core.errors import OutputError
from ziggurat.core.formats import records_beside
from ziggurat.io.storage.atomic import write_json_atomic
from ziggurat.recipe.stac_settings import parse_datetime
from ziggurat.records.catalog.parts import locked, read_json

log = logging.getLogger(__name__)

COLLECTION_FILE = "collection.json"


def collection_path(output_path: str | os.PathLike[str], settings: Mapping[str, Any]) -> Path:
    """Where the collection goes: `path`, else `collection.json` in a tile directory, or
    `<stem>.collection.json` beside a single file."""
    if settings.get("path"):
        return Path(settings["path"])
    out = Path(output_path)
    if records_beside(out):
        return out.with_name(f"{out.stem}.collection.json")
    return out / COLLECTION_FILE


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


def _extent(items: list[dict[str, Any]]) -> dict[str, Any]:
    boxes = [i["bbox"] for i in items if isinstance(i.get("bbox"), list) and len(i["bbox"]) == 4]
    spatial = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
               max(b[3] for b in boxes)] if boxes else [-180.0, -90.0, 180.0, 90.0]
    times: list[dt.datetime] = []
    for item in items:
        props = item.get("properties") or {}
        for key in ("datetime", "start_datetime", "end_datetime"):
            try:
                when = parse_datetime(props.get(key))
            except ValueError:
                when = None
            if when is not None:
                times.append(when)
    interval = [pystac.utils.datetime_to_str(min(times)), pystac.utils.datetime_to_str(max(times))] \
        if times else [None, None]
    return {"spatial": {"bbox": [spatial]}, "temporal": {"interval": [interval]}}


def update_collection(item_file: Path, settings: Mapping[str, Any], output_path: str | os.PathLike[str]) -> Path:
    """Add the item to its collection (created if needed), link both ways; returns the collection."""
    path = collection_path(output_path, settings)
    item = read_json(item_file, "it cannot be added to a collection")
    if item is None:
        raise OutputError(f"cannot add {item_file} to a collection: it cannot be read")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path.parent):
            existing = read_json(path, "writing it anew") or {}
            cid = settings.get("id") or existing.get("id") or item["id"]
            others = [link for link in existing.get("links") or [] if link.get("rel") not in ("item", "self", "root")]
            hrefs = {str((path.parent / link["href"]).resolve()) for link in existing.get("links") or []
                     if link.get("rel") == "item" and isinstance(link.get("href"), str)}
            hrefs.add(str(item_file.resolve()))
            members = []
            for href in sorted(hrefs):
                data = item if href == str(item_file.resolve()) else \
                    read_json(Path(href), "leaving it out of the collection")
                if data is not None:
                    members.append((Path(href), data))
            props = item.get("properties") or {}
            out: dict[str, Any] = {
                "type": "Collection", "stac_version": pystac.get_stac_version(),
                "stac_extensions": list(existing.get("stac_extensions") or []), "id": cid,
                "title": settings.get("title") or existing.get("title") or props.get("title") or cid,
                "description": settings.get("description") or existing.get("description") or props.get("description")
                or f"Outputs written by ziggurat ({len(members)} item{'s' if len(members) != 1 else ''})",
                "license": settings.get("license") or existing.get("license") or props.get("license") or "other",
                "extent": _extent([data for _, data in members]),
                "links": [{"rel": "root", "href": f"./{path.name}", "type": "application/json"},
                          *others,
                          *({"rel": "item", "href": _rel(p, path.parent), "type": "application/geo+json",
                             "title": data.get("id")} for p, data in members)],
            }
            for key in ("keywords", "providers"):
                if settings.get(key) or existing.get(key):
                    out[key] = settings.get(key) or existing.get(key)
            write_json_atomic(path, out)
            item["collection"] = cid
            back = _rel(path, item_file.parent)
            item["links"] = [link for link in item.get("links") or []
                             if link.get("rel") not in ("collection", "parent")]
            item["links"] += [{"rel": "collection", "href": back, "type": "application/json"},
                              {"rel": "parent", "href": back, "type": "application/json"}]
            write_json_atomic(item_file, item)
    except OSError as exc:
        raise OutputError(f"cannot write STAC collection {path}: {exc}") from exc
    return path


__all__ = ["COLLECTION_FILE", "collection_path", "update_collection"]
