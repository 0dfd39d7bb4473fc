"""STAC settings of a recipe: `stac:` at the top level and `output.stac:`, checked before a run.

```yaml
stac:
  id: dallas-hillshade           # default: the output folder name
  datetime: 2024-05-01T00:00:00Z # default: the time of the run
  title: Hillshade
  description: ...
  properties: {license: CC-BY-4.0, "sci:doi": ...}
```
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

import pystac

from ziggurat.recipe.output import OutputConfig
from ziggurat.recipe.yamlload import Locator, found, thaw

SETTING_KEYS = ("id", "datetime", "title", "description", "license", "properties", "eo:bands", "collection")
#: `stac.collection:` keys (true alone: a collection named after the output, beside its item)
COLLECTION_KEYS = ("id", "title", "description", "license", "keywords", "providers", "path")
#: STAC's pattern for `license`: an SPDX identifier or expression, or "other"
LICENSE = re.compile(r"^[\w\-\.\+]+$")
#: Properties ziggurat computes; recipe `properties` cannot override them.
COMPUTED_PROPERTIES = ("tiles:tile_matrix_sets", "tiles:tile_matrix_links", "proj:code", "proj:wkt2",
                       "proj:bbox", "datetime", "created", "updated", "ziggurat:extent")


class RecipeParts(Protocol):
    """What the settings are read from: a `Recipe` (typed structurally, the recipe model builds on this module)."""

    @property
    def source_name(self) -> str: ...
    @property
    def key_lines(self) -> Mapping[Any, int]: ...
    @property
    def raw(self) -> Mapping[str, Any]: ...
    @property
    def output(self) -> OutputConfig: ...
    @property
    def base_dir(self) -> Path | None: ...


@dataclass(frozen=True)
class StacSettings:
    """`stac:` (top level) and `output.stac:` of a recipe, the latter winning key by key."""

    id: str | None = None
    datetime: dt.datetime | None = None
    datetime_null: bool = False       # `datetime: null` with start/end_datetime in properties
    title: str | None = None
    description: str | None = None
    license: str | None = None        # SPDX id (CC-BY-4.0, ODbL-1.0, ...) or "other"
    properties: Mapping[str, Any] = field(default_factory=dict)
    #: the EO extension's band descriptions (mapchete's `output.stac.eo:bands`)
    eo_bands: tuple[Mapping[str, Any], ...] = ()
    #: `stac.collection`: write a Collection holding the item; `path` (absolute) may be shared by
    #: the recipes of several outputs, each run adding its item
    collection: Mapping[str, Any] | None = None


def settings_from_recipe(recipe: RecipeParts) -> StacSettings:
    """Validated STAC settings; raises `RecipeError` naming the key, before any tile runs."""
    loc = Locator(recipe.source_name, recipe.key_lines)
    merged, props, where = _merged_sections(loc, recipe)
    bands = merged.get("eo:bands")
    if bands is not None and not (isinstance(bands, (list, tuple)) and all(isinstance(b, Mapping) for b in bands)):
        raise loc.error(where["eo:bands"], f"expected a list of band mappings ({{name: B04, common_name: red, "
                                           f"...}}), found {found(bands)}")
    if "license" in props and "license" not in merged:
        merged["license"] = props.pop("license")
        where["license"] = ("stac", "properties", "license")
    for key in ("id", "title", "description", "license"):
        if merged.get(key) is not None and not isinstance(merged[key], str):
            raise loc.error(where[key], f"expected a string, found {found(merged[key])}")
    if merged.get("license") is not None and not LICENSE.match(merged["license"]):
        raise loc.error(where["license"], "expected an SPDX license identifier (CC-BY-4.0, ODbL-1.0, MIT) or "
                                          f"'other', found {found(merged['license'])}")
    if "datetime" in props and "datetime" not in merged:   # mapchete's stac.properties.datetime
        merged["datetime"] = props.pop("datetime")
        where["datetime"] = ("stac", "properties", "datetime")
    reserved = sorted(set(props) & set(COMPUTED_PROPERTIES))
    if reserved:
        raise loc.error(("stac", "properties"), f"{', '.join(reserved)} cannot be set; ziggurat "
                                                "computes them (set datetime with stac.datetime)")
    when, null = _datetime(loc, merged, props, where)
    collection = _collection(loc, merged.get("collection"), where.get("collection", ("stac", "collection")),
                             recipe)
    return StacSettings(merged.get("id"), when, null, merged.get("title"), merged.get("description"),
                        merged.get("license"), props,
                        tuple(_jsonable(thaw(b)) for b in bands or ()), collection)


def _merged_sections(loc: Locator, recipe: RecipeParts
                     ) -> tuple[dict[str, Any], dict[str, Any], dict[str, tuple[str, ...]]]:
    """(settings, properties, where each setting was given): `stac:` and then `output.stac:`,
    the latter winning key by key."""
    merged: dict[str, Any] = {}
    props: dict[str, Any] = {}
    where: dict[str, tuple[str, ...]] = {}
    for path, section in ((("stac",), recipe.raw.get("stac")),
                          (("output", "stac"), recipe.output.options.get("stac"))):
        if section is None:
            continue
        if isinstance(section, str):
            section = {"id": section}
        if not isinstance(section, Mapping):
            raise loc.error(path, f"expected a mapping with keys {', '.join(SETTING_KEYS)} (or an item "
                                  f"id string), found {found(section)}")
        for key, value in section.items():
            if key not in SETTING_KEYS:
                raise loc.error(path + (key,), f"unknown key {'.'.join(path + (str(key),))!r} "
                                               f"(valid keys: {', '.join(SETTING_KEYS)})", name_key=False)
            if key == "properties":
                if not isinstance(value, Mapping):
                    raise loc.error(path + (key,), f"expected a mapping, found {found(value)}")
                props.update(_jsonable(thaw(value)))
            else:
                merged[key] = value
                where[key] = path + (key,)
    return merged, props, where


def _datetime(loc: Locator, merged: Mapping[str, Any], props: Mapping[str, Any],
              where: Mapping[str, tuple[str, ...]]) -> tuple[dt.datetime | None, bool]:
    """(the item's datetime, whether it is null with start/end_datetime in the properties)."""
    when, null = None, False
    if "datetime" in merged:
        try:
            when = parse_datetime(merged["datetime"])
        except ValueError as exc:
            raise loc.error(where["datetime"], "expected an ISO 8601 date or date-time "
                                               f"(2024-05-01T10:00:00Z), found {found(merged['datetime'])}") from exc
        if when is None:
            if not ("start_datetime" in props and "end_datetime" in props):
                raise loc.error(where["datetime"], "datetime can be null only with start_datetime and "
                                                   "end_datetime in properties")
            null = True
    return when, null


def _collection(loc: Locator, value: Any, where: tuple[str, ...], recipe: RecipeParts) -> dict[str, Any] | None:
    """`stac.collection`: false/absent, true, an id string, or a mapping of COLLECTION_KEYS."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, str):
        value = {"id": value}
    if not isinstance(value, Mapping):
        raise loc.error(where, f"expected true, a collection id or a mapping with keys {', '.join(COLLECTION_KEYS)}, "
                               f"found {found(value)}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key not in COLLECTION_KEYS:
            raise loc.error(where + (str(key),), f"unknown key {key!r} (valid keys: {', '.join(COLLECTION_KEYS)})")
        if key in ("id", "title", "description", "license", "path") and not isinstance(item, str):
            raise loc.error(where + (key,), f"expected a string, found {found(item)}")
        if key == "keywords" and not (isinstance(item, (list, tuple)) and all(isinstance(k, str) for k in item)):
            raise loc.error(where + (key,), f"expected a list of strings, found {found(item)}")
        if key == "providers" and not (isinstance(item, (list, tuple)) and all(isinstance(p, Mapping) and "name" in p
                                                                               for p in item)):
            raise loc.error(where + (key,), f"expected a list of providers ({{name: ..., roles: [producer]}}), "
                                            f"found {found(item)}")
        out[key] = _jsonable(thaw(item))
    if out.get("license") is not None and not LICENSE.match(out["license"]):
        raise loc.error(where + ("license",), f"expected an SPDX license identifier or 'other', found "
                                              f"{found(out['license'])}")
    if "path" in out:
        path = Path(os.path.expanduser(out["path"]))
        if not path.is_absolute():
            path = (recipe.base_dir or Path.cwd()) / path
        if path.suffix.lower() != ".json":
            raise loc.error(where + ("path",), f"expected a .json file path for the collection, found {out['path']!r}")
        out["path"] = str(Path(os.path.abspath(path)))
    return out


def parse_datetime(value: Any) -> dt.datetime | None:
    """ISO strings, YAML dates and date-times -> aware UTC datetime (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        when = dt.datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"not a date-time: {value!r}")
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return pystac.utils.datetime_to_str(parse_datetime(value))  # type: ignore[arg-type]
    return value


__all__ = ["COMPUTED_PROPERTIES", "SETTING_KEYS", "StacSettings", "parse_datetime", "settings_from_recipe"]
