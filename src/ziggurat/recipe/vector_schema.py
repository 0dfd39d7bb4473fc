"""The `output.schema` of vector outputs: checked when the recipe loads, used when writing.

A schema is ``{geometry: <type>, properties: {name: type}}`` as fiona writes it. Pure data
checks, no I/O, so recipe validation can use it without importing the io drivers.
"""

from __future__ import annotations

from typing import Any, Mapping

#: Geometry types a schema may name; "Unknown" accepts any geometry as it is.
GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                  "Unknown")
#: Property type names (and friendly aliases) -> fiona type names.
PROPERTY_TYPES = {"str": "str", "string": "str", "int": "int", "integer": "int", "int32": "int32",
                  "int64": "int64", "float": "float", "double": "float", "real": "float",
                  "bool": "bool", "boolean": "bool", "date": "date", "time": "time",
                  "datetime": "datetime"}


class SchemaError(ValueError):
    """A schema problem; `path` is the key path below ``output.schema``."""

    def __init__(self, path: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def _found(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"a mapping with keys {', '.join(map(str, value))}" if value else "an empty mapping"
    return f"{value!r} ({type(value).__name__})"


def _property_type(name: str, value: Any) -> str:
    expected = f"a property type ({', '.join(sorted(set(PROPERTY_TYPES.values())))}, e.g. str:80)"
    if not isinstance(value, str) or not value.strip():
        raise SchemaError(("properties", name), f"expected {expected}, found {_found(value)}")
    base, _, width = value.strip().partition(":")
    kind = PROPERTY_TYPES.get(base.lower())
    if kind is None:
        raise SchemaError(("properties", name), f"expected {expected}, found {value!r}")
    if width and not (kind in ("str", "float") and all(p.isdigit() for p in width.split(".", 1))):
        raise SchemaError(("properties", name), f"expected a width like str:80 or float:10.2, found {value!r}")
    return f"{kind}:{width}" if width else kind


def parse_schema(value: Any) -> dict[str, Any]:
    """A normalised fiona schema, or SchemaError naming the key below ``output.schema``."""
    if value is None:
        raise SchemaError((), "vector outputs need a schema, e.g. {geometry: MultiPolygon, "
                              "properties: {name: str, value: float}}")
    if not isinstance(value, Mapping):
        raise SchemaError((), f"expected a mapping {{geometry: ..., properties: {{...}}}}, found "
                              f"{_found(value)}")
    unknown = [k for k in value if k not in ("geometry", "properties")]
    if unknown:
        raise SchemaError((unknown[0],), f"unknown schema key {unknown[0]!r} (valid keys: geometry, "
                                         "properties)")
    geometry = value.get("geometry")
    by_lower = {g.lower(): g for g in GEOMETRY_TYPES}
    if not isinstance(geometry, str) or geometry.lower() not in by_lower:
        raise SchemaError(("geometry",), f"expected one of {', '.join(GEOMETRY_TYPES)}, found "
                                         f"{_found(geometry)}")
    props = value.get("properties") or {}
    if not isinstance(props, Mapping):
        raise SchemaError(("properties",), f"expected a mapping of property name -> type, found "
                                           f"{_found(props)}")
    out: dict[str, str] = {}
    for name, kind in props.items():
        if not isinstance(name, str) or not name:
            raise SchemaError(("properties",), f"expected property names to be strings, found {name!r}")
        out[name] = _property_type(name, kind)
    return {"geometry": by_lower[geometry.lower()], "properties": out}
