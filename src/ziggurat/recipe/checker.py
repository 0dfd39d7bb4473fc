"""Typed access to parsed recipe sections, failing with "file:line: key: expected X, found Y";
the base of every section's validation."""

from __future__ import annotations

import difflib
from typing import Any, Mapping

from ziggurat.core.errors import RecipeError
from ziggurat.recipe.yamlload import KeyPath, Locator, found, is_int

#: no default given: the key is required
_MISSING: Any = object()


class Checker:
    """Typed access to parsed sections that fails with "file:line: key: expected X, found Y"."""

    def __init__(self, loc: Locator) -> None:
        self.loc = loc

    def fail(self, path: KeyPath, expected: str, value: Any) -> RecipeError:
        return self.loc.error(path, f"expected {expected}, found {found(value)}")

    def check_keys(self, section: Mapping[Any, Any], path: KeyPath, allowed: tuple[str, ...]) -> None:
        for key in section:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = (f"did you mean {'.'.join(path + (close[0],))!r}?" if close
                    else f"valid keys: {', '.join(allowed)}")
            raise self.loc.error(path + (key,), f"unknown key {'.'.join(map(str, path + (key,)))!r} ({hint})",
                                 name_key=False)

    def required(self, section: Mapping[Any, Any], path: KeyPath, expected: str) -> Any:
        if path[-1] not in section:
            raise self.loc.error(path[:-1], f"missing required key {'.'.join(map(str, path))!r} "
                                            f"(expected {expected})", name_key=False)
        return section[path[-1]]

    def mapping(self, section: Mapping[Any, Any], path: KeyPath, expected: str, *,
                required: bool) -> Mapping[Any, Any] | None:
        value = self.required(section, path, expected) if required else section.get(path[-1])
        if value is None and not required:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(path, expected, value)
        return value

    def string(self, section: Mapping[Any, Any], path: KeyPath, expected: str,
               default: Any = _MISSING) -> Any:
        value = section.get(path[-1]) if default is not _MISSING else self.required(section, path, expected)
        if value is None and default is not _MISSING:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, expected, value)
        return value

    def resampling(self, value: Any, path: KeyPath) -> str:
        """A rasterio resampling name, lower-cased."""
        from rasterio.enums import Resampling

        names = list(Resampling.__members__)
        if not isinstance(value, str) or value.lower() not in names:
            raise self.fail(path, f"a resampling name ({', '.join(names)})", value)
        return value.lower()

    def integer(self, section: Mapping[Any, Any], path: KeyPath, default: int | None, *,
                minimum: int = 0, choices: tuple[int, ...] = ()) -> Any:
        value = section.get(path[-1])
        if value is None:
            return default
        expected = (f"one of {', '.join(map(str, choices))}" if choices
                    else f"an integer >= {minimum}")
        if not is_int(value) or value < minimum or (choices and value not in choices):
            raise self.fail(path, expected, value)
        return int(value)


__all__ = ["Checker"]
