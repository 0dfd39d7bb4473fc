"""The `stac` input section: the items of a STAC catalog as a time series, checked at load.

```yaml
input:
  scenes:
    stac: data/scenes/catalog.json     # a static catalog or collection, an ItemCollection (JSON,
                                       # local or http(s)://), or with `collections` a STAC API
    # collections: [sentinel-2-l2a]    # a STAC API item search (pystac-client), once per run
    # filter: {op: "<", args: [{property: "eo:cloud_cover"}, 60]}   # CQL2-JSON, API searches only
    assets: [B02, B03, B04, B08, SCL]  # the asset keys read, in this band order
    datetime: 2024-06-01/2024-08-31    # an interval (either end open with ..), or one date
    query: {eo:cloud_cover: {lt: 60}}  # STAC API `query`: property -> {eq|neq|lt|lte|gt|gte|in: value}
    group_by: solar_day                # merge the items of one solar day (first valid pixel wins)
    resampling: nearest                # for every asset, unless asset_resampling says otherwise
    asset_resampling: {B08: bilinear}
```

The catalog is searched once per run (the parent, when it fingerprints the inputs); the items
found are cached under the output's `.ziggurat/cache` and their list is what the fingerprint
records, so a changed catalog makes the tiles stale.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, Mapping

from ziggurat.core.location import is_url
from ziggurat.recipe.checker import Checker
from ziggurat.recipe.yamlload import FrozenDict, KeyPath, freeze, is_number

STAC_KEYS = ("stac", "assets", "datetime", "query", "group_by", "resampling", "asset_resampling", "collections",
             "filter")
QUERY_OPS = ("eq", "neq", "lt", "lte", "gt", "gte", "in")
GROUPS = ("solar_day", "none")


def is_stac(value: Any) -> bool:
    return isinstance(value, Mapping) and "stac" in value


def parse_instant(text: str) -> dt.datetime:
    """An RFC 3339 date or date-time as an aware UTC datetime (a date: its midnight)."""
    value = text.strip().replace("Z", "+00:00")
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        when = dt.datetime.combine(dt.date.fromisoformat(value), dt.time())
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def parse_interval(text: str) -> tuple[str | None, str | None]:
    """`a/b`, `a/..`, `../b` or one date (its whole day) -> ISO (start, end), end exclusive for a date."""
    if "/" in text:
        start, end = (part.strip() for part in text.split("/", 1))
        out = (None if start in ("", "..") else parse_instant(start).isoformat(),
               None if end in ("", "..") else _end(end))
    else:
        day = parse_instant(text)
        out = (day.isoformat(), _end(text))
    return out


def _end(text: str) -> str:
    """A bare date as an end includes its whole day."""
    when = parse_instant(text)
    if "T" not in text and " " not in text.strip():
        when += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    return when.isoformat()


class StacSection(Checker):
    """Validates one `stac` input; mixed into the recipe builder."""

    base_dir: Any

    def stac_options(self, spec: Mapping[str, Any], key: KeyPath) -> FrozenDict:
        self.check_keys(spec, key, STAC_KEYS)
        where = self.string(spec, key + ("stac",), "a path or URL of a STAC catalog, collection or ItemCollection")
        source = where if is_url(where) else os.path.abspath(os.path.join(self.base_dir, os.path.expanduser(where)))
        api = spec.get("collections") is not None
        if api:
            cols = spec["collections"]
            if not is_url(where) or not where.startswith(("http://", "https://")):
                raise self.loc.error(key + ("stac",), f"expected the http(s) URL of a STAC API with 'collections', "
                                                      f"found {where!r}")
            if not isinstance(cols, (list, tuple)) or not cols or not all(isinstance(c, str) for c in cols):
                raise self.fail(key + ("collections",), "a non-empty list of collection ids", cols)
        if spec.get("filter") is not None:
            if not api:
                raise self.loc.error(key + ("filter",), "expected 'collections' with 'filter': CQL2 filters are "
                                                        "sent to a STAC API search (use 'query' for a static catalog)")
            if not isinstance(spec["filter"], Mapping):
                raise self.fail(key + ("filter",), "a CQL2-JSON mapping", spec["filter"])
        if not api and not is_url(where) and not os.path.isfile(source):
            raise self.loc.error(key + ("stac",), f"STAC catalog not found: {source} (from {where!r})")
        assets = spec.get("assets")
        if not isinstance(assets, (list, tuple)) or not assets or not all(isinstance(a, str) and a for a in assets):
            raise self.fail(key + ("assets",), "a non-empty list of asset keys (e.g. [B04, B08, SCL])", assets)
        if len(set(assets)) != len(assets):
            raise self.fail(key + ("assets",), "asset keys without repeats", assets)
        out: dict[str, Any] = {"stac": source, "assets": tuple(assets)}
        if api:
            out["collections"] = tuple(spec["collections"])
            if spec.get("filter") is not None:
                out["filter"] = freeze(dict(spec["filter"]))
        if spec.get("datetime") is not None:
            text = spec["datetime"]
            if isinstance(text, (dt.date, dt.datetime)):
                text = text.isoformat()
            try:
                out["datetime"] = parse_interval(str(text))
            except ValueError as exc:
                raise self.fail(key + ("datetime",), "an RFC 3339 date or interval (2024-06-01/2024-08-31, "
                                                     "2024-06-01/..)", spec["datetime"]) from exc
        query = spec.get("query")
        if query is not None:
            out["query"] = self.stac_query(query, key + ("query",))
        group = spec.get("group_by", "none")
        if group not in GROUPS:
            raise self.fail(key + ("group_by",), f"one of {', '.join(GROUPS)}", group)
        out["group_by"] = group
        out["resampling"] = self.resampling(spec.get("resampling", "nearest"), key + ("resampling",))
        out["asset_resampling"] = self.asset_resampling(spec.get("asset_resampling") or {}, assets, key)
        return FrozenDict(out)

    def stac_query(self, query: Any, key: KeyPath) -> Any:
        """`query:` (STAC API query extension): property -> {op: value}."""
        if not isinstance(query, Mapping):
            raise self.fail(key, "a mapping property -> {op: value} (STAC API query)", query)
        for prop, cond in query.items():
            if not isinstance(cond, Mapping) or not cond:
                raise self.fail(key + (prop,), f"a mapping of {', '.join(QUERY_OPS)} to values", cond)
            for op, value in cond.items():
                if op not in QUERY_OPS:
                    raise self.fail(key + (prop, op), f"one of {', '.join(QUERY_OPS)}", op)
                if op in ("lt", "lte", "gt", "gte") and not is_number(value) and not isinstance(value, str):
                    raise self.fail(key + (prop, op), "a number or a string", value)
                if op == "in" and not isinstance(value, (list, tuple)):
                    raise self.fail(key + (prop, op), "a list of values", value)
        return freeze(dict(query))

    def asset_resampling(self, per: Any, assets: Any, key: KeyPath) -> Any:
        """`asset_resampling:` asset key -> resampling name, for assets the input reads."""
        if not isinstance(per, Mapping):
            raise self.fail(key + ("asset_resampling",), "a mapping of asset key -> resampling", per)
        for asset, name in per.items():
            if asset not in assets:
                raise self.fail(key + ("asset_resampling", asset), f"one of the assets ({', '.join(assets)})", asset)
            self.resampling(name, key + ("asset_resampling", asset))
        return freeze({str(k): str(v).lower() for k, v in per.items()})


__all__ = ["GROUPS", "QUERY_OPS", "STAC_KEYS", "StacSection", "is_stac", "parse_instant", "parse_interval"]
