"""YAML to frozen values with the line of every key, plus the checks built on those lines.

PyYAML's loaders drop line numbers and silently keep the last of two duplicate keys; recipe
error messages need both, so the node tree from the composer is walked here directly. Also
here: ``${ENV}`` substitution, mapchete-style ``zoom<=8`` values and a `Checker` base whose
typed getters fail with "file:line: key: expected X, found Y".
"""

from __future__ import annotations

import numbers
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn

import yaml

from ziggurat.core.errors import RecipeError

#: A path into the recipe: mapping keys and list indices, e.g. ("output", "dtype") or ("bounds", 2).
KeyPath = tuple[Any, ...]

#: YAML 1.2 floats PyYAML (YAML 1.1) reads as strings, e.g. ``nodata: -3.4e38``.
_EXP_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_ZOOM_COND = re.compile(r"^\s*zoom\s*(<=|>=|==|<|>|=)\s*(-?\d+)\s*$")
_ZOOM_LIKE = re.compile(r"^\s*zoom\s*[<>=!]")
ZOOM_OPS: dict[str, Callable[[int, int], bool]] = {"<=": operator.le, ">=": operator.ge, "==": operator.eq,
                                               "=": operator.eq, "<": operator.lt, ">": operator.gt}
#: bounds on what a recipe may expand to (see `_Walker.node`)
MAX_VALUES = 100_000
MAX_DEPTH = 64


class FrozenDict(Mapping[Any, Any]):
    """A read-only dict; unlike MappingProxyType it pickles, and recipes travel to workers."""

    __slots__ = ("_data",)
    _data: dict[Any, Any]
    __hash__ = None  # type: ignore[assignment]  # values may be unhashable; equality is by content

    def __init__(self, data: Mapping[Any, Any] | Iterable[tuple[Any, Any]] = ()) -> None:
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("FrozenDict is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("FrozenDict is immutable")

    def __reduce__(self) -> tuple[type, tuple[dict[Any, Any]]]:
        return (FrozenDict, (self._data,))


def freeze(value: Any) -> Any:
    """Deep-convert mappings to FrozenDict and lists to tuples."""
    if isinstance(value, Mapping):
        return FrozenDict((k, freeze(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Deep copy back to plain dicts and lists, for code (processes, json) that expects them."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def dotted(path: KeyPath) -> str:
    """``("input", "dem", "path")`` -> ``input.dem.path``; list indices as ``bounds[2]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) and not isinstance(part, bool) else (
            f".{part}" if out else str(part))
    return out


def found(value: Any) -> str:
    """A short description of a value for "expected X, found Y" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, Mapping):
        keys = ", ".join(str(k) for k in list(value)[:6])
        return f"a mapping with keys {keys}" if keys else "an empty mapping"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}: {_short(list(value))}"
    kind = {str: "a string", int: "an integer", float: "a number"}.get(type(value), type(value).__name__)
    return f"{_short(value)} ({kind})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Locator:
    """Turns key paths into ``file:line`` prefixes so every message points at its line."""

    def __init__(self, source: str | None, lines: Mapping[KeyPath, int]) -> None:
        self.source = source or "<recipe>"
        self.lines = lines

    def line(self, path: KeyPath) -> int | None:
        """Line of the key, or of its nearest ancestor when the key itself is absent."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    def prefix(self, path: KeyPath) -> str:
        line = self.line(path)
        return f"{self.source}:{line}:" if line is not None else f"{self.source}:"

    def error(self, path: KeyPath, message: str, *, name_key: bool = True) -> RecipeError:
        key = f" {dotted(path)}:" if path and name_key else ""
        return RecipeError(f"{self.prefix(path)}{key} {message}")

    def describe(self, path: KeyPath) -> str:
        line = self.line(path)
        where = f"{self.source}:{line}" if line is not None else self.source
        return f"{where} key {dotted(path)}" if path else where


def load_yaml(text: str, source: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse one YAML document into frozen values plus a key path -> 1-based line map."""
    try:
        loader = yaml.SafeLoader(text)   # checks the characters first
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise RecipeError(f"{source}:{line}: invalid YAML: character #x{exc.character:04x} is not allowed in a "
                          "recipe (a binary file, or a corrupted one?)") from exc
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            error = _syntax_error(exc, source)
            mark = exc.problem_mark or exc.context_mark
            lines = text.splitlines()
            if mark is not None and mark.line < len(lines) and "${" in lines[mark.line]:
                error = RecipeError(f"{error} (inside [...] or {{...}}, write ${{...}} in quotes)")
            raise error from exc
        except yaml.YAMLError as exc:
            raise RecipeError(f"{source}: invalid YAML: {exc}") from exc
        if node is None:
            return None, {}
        walker = _Walker(loader, source)
        walker.lines[()] = node.start_mark.line + 1
        return walker.node(node, ()), walker.lines
    finally:
        loader.dispose()


def load_mapping(data: Mapping[Any, Any]) -> Any:
    """A Python mapping as if it had been YAML: env substitution, frozen, paths as strings."""
    loc = Locator(None, {})

    def walk(value: Any, path: KeyPath) -> Any:
        if isinstance(value, Mapping):
            return FrozenDict((k, walk(v, path + (k,))) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return tuple(walk(v, path + (i,)) for i, v in enumerate(value))
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            return substitute_env(value, path, loc, reparse=True)
        return value

    return walk(data, ())


def substitute_env(text: str, path: KeyPath, loc: Locator, *, reparse: bool) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}``; a scalar that is one ``${...}`` is re-read
    as YAML so ``zoom_levels: ${ZOOMS}`` can yield numbers and lists."""
    if "${" not in text:
        return text

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None or (default is not None and value == ""):
            if default is None:
                raise loc.error(path, f"environment variable {name!r} is not set "
                                      f"(write ${{{name}:-default}} to give a default)")
            return default
        return value

    leftover = _ENV_RE.sub("", text)
    if "${" in leftover:   # `${NAME` without its brace, `${}` or `${1X}`: would become a literal folder name
        bad = leftover[leftover.index("${"):][:40]
        raise loc.error(path, f"expected ${{NAME}} or ${{NAME:-default}} (NAME: letters, digits, _), found {bad!r}")
    out = _ENV_RE.sub(repl, text)
    if reparse and out.strip() and _ENV_RE.fullmatch(text.strip()):
        try:
            parsed = yaml.safe_load(out)
        except yaml.YAMLError:
            return out
        if isinstance(parsed, str) and _EXP_FLOAT.fullmatch(out.strip()):
            return float(out)
        if not isinstance(parsed, str):  # a string keeps the exact text (no comment stripping)
            return freeze(parsed)
    return out


def _syntax_error(exc: yaml.MarkedYAMLError, source: str) -> RecipeError:
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}:" if mark is not None else f"{source}:"
    what = "; ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
    column = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return RecipeError(f"{where} invalid YAML: {what}{column}")


class _Walker:
    """Builds frozen values from composed nodes, recording the line of every key."""

    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self.loader = loader
        self.lines: dict[KeyPath, int] = {}
        self.loc = Locator(source, self.lines)
        self.active: set[int] = set()
        self.values = 0   # values built, aliases expanded: bounded (an alias bomb is a few lines)

    def scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise _syntax_error(exc, self.loc.source) from exc
        except (ValueError, TypeError, OverflowError, yaml.YAMLError) as exc:   # e.g. `!!float abc`
            raise RecipeError(f"{self.loc.source}:{node.start_mark.line + 1}: invalid YAML value "
                              f"{node.value!r} for tag {node.tag!r}: {exc}") from exc

    def node(self, node: yaml.Node, path: KeyPath) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.loc.error(path, f"the recipe expands to more than {MAX_VALUES:,} values (YAML aliases "
                                       "repeating aliases?); a recipe is a few hundred")
        if len(path) > MAX_DEPTH:
            raise self.loc.error(path[:MAX_DEPTH], f"values nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.ScalarNode):
            value = self.scalar(node)
            if isinstance(value, str) and node.style is None and _EXP_FLOAT.fullmatch(value):
                return float(value)
            if isinstance(value, str):
                value = substitute_env(value, path, self.loc, reparse=node.style is None)
            return value
        if id(node) in self.active:
            raise self.loc.error(path, "recursive YAML alias (an anchor refers to itself)")
        expected = _MAP_TAG if isinstance(node, yaml.MappingNode) else _SEQ_TAG
        if node.tag != expected:
            raise self.loc.error(path, f"unsupported YAML tag {node.tag!r}")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = []
                for i, child in enumerate(node.value):
                    self.lines[path + (i,)] = child.start_mark.line + 1
                    items.append(self.node(child, path + (i,)))
                return tuple(items)
            assert isinstance(node, yaml.MappingNode)
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> FrozenDict:
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:  # merge keys (<<) first: explicit keys win
            if key_node.tag != _MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for src in sources:
                if not isinstance(src, yaml.MappingNode):
                    raise self.loc.error(path, "a merge key (<<) needs a mapping or a list of mappings")
                for key, value in self.node(src, path).items():
                    merged.setdefault(key, value)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.lines[path + ("?",)] = line
                kind = "mapping" if isinstance(key_node, yaml.MappingNode) else "list"
                raise self.loc.error(path + ("?",), f"mapping keys must be plain scalars, found a {kind}",
                                     name_key=False)
            key = self.scalar(key_node)
            if key in out:
                first = self.lines.get(path + (key,))
                self.lines[path + (key,)] = line
                raise self.loc.error(path + (key,), f"duplicate key {key!r} (first defined on line "
                                                    f"{first}); remove one of them")
            self.lines[path + (key,)] = line
            out[key] = self.node(value_node, path + (key,))
        return FrozenDict({**merged, **out})


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def zoom_conditions(value: Any, path: KeyPath, loc: Locator) -> list[tuple[str, str, int]] | None:
    """The (key, op, zoom) conditions of a zoom-dependent value, or None for a plain value."""
    if not isinstance(value, Mapping) or not value:
        return None
    conds = [(k, m.group(1), int(m.group(2))) for k in value
             if isinstance(k, str) and (m := _ZOOM_COND.match(k))]
    if not conds:
        odd = [k for k in value if isinstance(k, str) and _ZOOM_LIKE.match(k)]
        if odd:
            raise loc.error(path + (odd[0],), f"invalid zoom condition {odd[0]!r}; expected e.g. "
                                              "'zoom<=8', 'zoom > 8' (operators <=, >=, <, >, ==, =)")
        return None
    if len(conds) != len(value):
        other = [k for k in value if k not in {c[0] for c in conds}]
        raise loc.error(path, "expected either only zoom conditions ('zoom<=8', ...) or none as keys, "
                              f"found zoom conditions {[c[0] for c in conds]} mixed with {other}")
    return conds


def value_at_zoom(value: Any, zoom: int, path: KeyPath, loc: Locator) -> Any:
    conds = zoom_conditions(value, path, loc)
    if conds is None:
        return value
    hits = [key for key, op, n in conds if ZOOM_OPS[op](zoom, n)]
    if len(hits) != 1:
        listed = ", ".join(c[0] for c in conds)
        raise loc.error(path, f"no condition matches zoom {zoom} (conditions: {listed})" if not hits
                        else f"several conditions match zoom {zoom} ({', '.join(hits)}); "
                             "exactly one must match")
    return value[hits[0]]
