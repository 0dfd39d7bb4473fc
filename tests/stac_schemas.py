"""Validation of STAC items and collections against the official JSON schemas, offline: the core
schemas ship with pystac, the extension schemas are copied into tests/data/stac-schemas/."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import pystac
from pystac.validation import JsonSchemaSTACValidator

SCHEMAS = Path(__file__).parent / "data" / "stac-schemas"


@lru_cache(maxsize=1)
def validator() -> JsonSchemaSTACValidator:
    out = JsonSchemaSTACValidator()
    for path in sorted(SCHEMAS.rglob("*.json")):
        schema = json.loads(path.read_text())
        out.schema_cache[schema["$id"].rstrip("#")] = schema
    return out


def validate(stac: dict[str, Any] | Path) -> list[str]:
    """Every schema the object was checked against; raises pystac's STACValidationError.

    An extension whose schema is not in tests/data fails (no silent network fetch)."""
    data = json.loads(stac.read_text()) if isinstance(stac, Path) else stac
    known = set(validator().schema_cache)
    missing = [e for e in data.get("stac_extensions") or [] if e.rstrip("#") not in known]
    assert not missing, f"no offline schema for {missing}: add it to {SCHEMAS}"
    return pystac.validation.validate_dict(data, validator=validator())
