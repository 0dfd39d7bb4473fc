"""`output.bands`: a count, or one spec per band saying what it holds.

```yaml
bands:
  - name: slope                 # GDAL band description; inputs read it by name
    description: Slope of the terrain
    unit: degree
    scale: 0.01                 # stored value * scale + offset = physical value
    offset: 0
  - name: landcover
    classes:                    # colour table + category names + STAC classification:classes
      - {value: 1, name: water, color: "#1f78b4"}
      - {value: 2, name: forest, color: "33a02c", description: Closed canopy}
```

A list of strings names the bands only (`bands: [B04, B08]`).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from ziggurat.recipe.checker import Checker
from ziggurat.recipe.yamlload import FrozenDict, KeyPath, found, freeze, is_number

BAND_KEYS = ("name", "description", "unit", "scale", "offset", "nodata", "colormap", "classes")
CLASS_KEYS = ("value", "name", "description", "color")
#: STAC classification's pattern for class names
CLASS_NAME = re.compile(r"^[0-9A-Za-z_-]+$")
_HEX = re.compile(r"^#?([0-9A-Fa-f]{6})([0-9A-Fa-f]{2})?$")


def parse_color(value: Any) -> tuple[int, int, int, int] | None:
    """"#rrggbb[aa]", "rrggbb" or [r, g, b(, a)] -> RGBA; None if it is none of those."""
    if isinstance(value, str):
        match = _HEX.match(value.strip())
        if match is None:
            return None
        rgb = match.group(1)
        alpha = int(match.group(2), 16) if match.group(2) else 255
        return int(rgb[0:2], 16), int(rgb[2:4], 16), int(rgb[4:6], 16), alpha
    if isinstance(value, (list, tuple)) and len(value) in (3, 4) and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
        return (value[0], value[1], value[2], value[3] if len(value) == 4 else 255)
    return None


def hex_color(rgba: tuple[int, ...]) -> str:
    """STAC's color_hint: RRGGBB, no '#'."""
    return "".join(f"{v:02X}" for v in rgba[:3])


class BandsSection(Checker):
    """Validation of `output.bands`; mixed into the recipe builder."""

    def bands(self, section: Mapping[str, Any], key: KeyPath, dtype: str) -> tuple[int, tuple[FrozenDict, ...]]:
        """(band count, band specs: empty when only a count is given)."""
        value = section.get("bands", 1)
        where = key + ("bands",)
        if not isinstance(value, (list, tuple)):
            return self.integer(section, where, 1, minimum=1), ()
        if not value:
            raise self.fail(where, "a band count or a list of band specs", value)
        specs = []
        names: dict[str, int] = {}
        for i, item in enumerate(value):
            spec = self.band(item, where + (i,), dtype)
            name = spec.get("name")
            if name is not None:
                if name in names:
                    raise self.loc.error(where + (i, "name"), f"band name {name!r} is already band {names[name] + 1}")
                names[name] = i
            specs.append(spec)
        return len(specs), tuple(specs)

    def band(self, item: Any, key: KeyPath, dtype: str) -> FrozenDict:
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping):
            raise self.fail(key, "a band name or a mapping with keys " + ", ".join(BAND_KEYS), item)
        for name in item:
            if name not in BAND_KEYS:
                raise self.loc.error(key + (name,), f"unknown key {name!r} of a band (valid keys: "
                                                    f"{', '.join(BAND_KEYS)})")
        out: dict[str, Any] = {}
        for name in ("name", "description", "unit"):
            if item.get(name) is not None:
                if not isinstance(item[name], str) or not item[name].strip():
                    raise self.fail(key + (name,), "a non-empty string", item[name])
                out[name] = item[name]
        for name in ("scale", "offset"):
            if item.get(name) is not None:
                if not is_number(item[name]) or item[name] != item[name]:
                    raise self.fail(key + (name,), "a number", item[name])
                if name == "scale" and item[name] == 0:
                    raise self.loc.error(key + (name,), "expected a non-zero scale, found 0")
                out[name] = float(item[name])
        if "nodata" in item:
            out["nodata"] = item["nodata"]   # checked against the dtype with the output's nodata
        integer = dtype.startswith(("uint", "int"))
        if item.get("colormap") is not None or item.get("classes") is not None:
            if dtype not in ("uint8", "uint16"):
                what = "colormap" if item.get("colormap") is not None else "classes"
                raise self.loc.error(key + (what,), f"expected dtype uint8 or uint16 for a colour table or classes "
                                                    f"(GDAL's colour tables), found {dtype}")
        if item.get("colormap") is not None:
            out["colormap"] = self.colormap(item["colormap"], key + ("colormap",))
        if item.get("classes") is not None:
            out["classes"] = self.classes(item["classes"], key + ("classes",), integer)
        return freeze(out)

    def colormap(self, value: Any, key: KeyPath) -> FrozenDict:
        if not isinstance(value, Mapping) or not value:
            raise self.fail(key, "a mapping of pixel value -> colour ('#rrggbb' or [r, g, b])", value)
        out = {}
        for pixel, color in value.items():
            if not isinstance(pixel, int) or isinstance(pixel, bool) or not 0 <= pixel <= 65535:
                raise self.fail(key + (pixel,), "an integer pixel value 0..65535", pixel)
            rgba = parse_color(color)
            if rgba is None:
                raise self.fail(key + (pixel,), "a colour: '#rrggbb', '#rrggbbaa' or [r, g, b(, a)]", color)
            out[int(pixel)] = rgba
        return freeze(out)

    def classes(self, value: Any, key: KeyPath, integer: bool) -> tuple[FrozenDict, ...]:
        if not isinstance(value, (list, tuple)) or not value:
            raise self.fail(key, "a list of classes ({value: 1, name: water, color: '#1f78b4'})", value)
        out, seen = [], set()
        for i, item in enumerate(value):
            where = key + (i,)
            if not isinstance(item, Mapping) or "value" not in item or "name" not in item:
                raise self.fail(where, "a mapping with 'value' and 'name'", item)
            unknown = [k for k in item if k not in CLASS_KEYS]
            if unknown:
                raise self.loc.error(where + (unknown[0],), f"unknown key {unknown[0]!r} of a class (valid keys: "
                                                            f"{', '.join(CLASS_KEYS)})")
            pixel = item["value"]
            if not isinstance(pixel, int) or isinstance(pixel, bool) or not 0 <= pixel <= 65535:
                raise self.fail(where + ("value",), "an integer pixel value 0..65535", pixel)
            if pixel in seen:
                raise self.loc.error(where + ("value",), f"class value {pixel} is given twice")
            seen.add(pixel)
            name = item["name"]
            if not isinstance(name, str) or not CLASS_NAME.match(name):
                raise self.loc.error(where + ("name",), "expected a class name of letters, digits, '-' and '_' "
                                                        f"(STAC classification), found {found(name)}")
            cls: dict[str, Any] = {"value": pixel, "name": name}
            if item.get("description") is not None:
                if not isinstance(item["description"], str):
                    raise self.fail(where + ("description",), "a string", item["description"])
                cls["description"] = item["description"]
            if item.get("color") is not None:
                rgba = parse_color(item["color"])
                if rgba is None:
                    raise self.fail(where + ("color",), "a colour: '#rrggbb' or [r, g, b]", item["color"])
                cls["color"] = rgba
            out.append(freeze(cls))
        return tuple(out)


__all__ = ["BAND_KEYS", "BandsSection", "hex_color", "parse_color"]
