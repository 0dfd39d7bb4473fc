"""What made a tile: a key per zoom over everything that can change its bytes, plus per-tile deps.

The ledger stores, with every process tile, the `key` of the recipe that made it and, for tiles
that read tile-directory inputs (chained recipes), `deps`: a hash of the upstream tiles' recorded
checksums. Continue mode skips a tile only when both are unchanged; otherwise the tile is stale
and `reason` says why ("process code changed", "process_parameters changed (azimuth)").

A process zoom's key covers: the process source (SHA-256), the resolved `process_parameters` at
that zoom, each input's path, format, options and fingerprint (inputs with per-tile sources are
covered by `deps` instead), the pyramid, the output settings that change bytes, and the area
results are masked to. An overview zoom's key covers the output settings and its resampling;
whether its sources changed is the schedule's business (a rebuilt child rebuilds its parent).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ziggurat.core.grid import Tile
from ziggurat.core.location import is_url
from ziggurat.io import Input
from ziggurat.recipe import Recipe
from ziggurat.recipe.dump import plain
from ziggurat.records.ledger import Ledger, ledger_path

#: Bumped when what a key covers changes: every tile then counts as stale once.
KEY_VERSION = 1
_NOT_IN_KEY = ("stac",)   # output options that do not change tile bytes


def code_digest(source: bytes) -> str:
    """What a process module runs, not how it is written: SHA-256 of its syntax tree without
    docstrings (comments and formatting are not in the tree), so a comment-only edit keeps every
    tile; source that does not parse is keyed by its bytes."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return hashlib.sha256(source).hexdigest()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]   # type: ignore[attr-defined]
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _area_digest(area: Any) -> str | None:
    """The polygon rasters are masked to, to 9 decimals: the same area reached through another
    CRS or file must not look changed."""
    if area is None:
        return None
    import shapely

    return digest(shapely.to_wkt(shapely.normalize(area), rounding_precision=9, trim=True))


def _output_settings(recipe: Recipe) -> dict[str, Any]:
    out = recipe.output
    return {"format": out.format, "dtype": out.dtype, "bands": out.bands, "nodata": repr(out.nodata),
            "compress": out.compress, "metatiling": out.metatiling,
            "options": {k: plain(v) for k, v in out.options.items() if k not in _NOT_IN_KEY}}


class RunKeys:
    """A run's tile keys; built once in the parent, cheap per tile (cached per zoom)."""

    def __init__(self, recipe: Recipe, process_sha: str | None, fingerprints: Mapping[str, Any],
                 per_tile: Mapping[str, Input]) -> None:
        self.recipe = recipe
        self.per_tile = dict(per_tile)
        self._base: dict[str, Any] = {
            "v": KEY_VERSION, "process": process_sha, "grid": recipe.grid.to_dict(),
            "output": _output_settings(recipe),
            "area": _area_digest(recipe.area),
            "inputs": {name: {"path": str(cfg.path), "format": cfg.format, "options": plain(cfg.options),
                              "fingerprint": "per tile" if name in self.per_tile else fingerprints.get(name)}
                       for name, cfg in recipe.inputs.items()}}
        self._parts: dict[int, dict[str, Any]] = {}
        self._keys: dict[int, str] = {}
        self._upstream: dict[Path, Ledger | None] = {}

    def parts(self, zoom: int) -> dict[str, Any]:
        got = self._parts.get(zoom)
        if got is None:
            source = self.recipe.overview_source(zoom)
            if source is None:
                got = {**self._base, "parameters": plain(self.recipe.parameters_at(zoom))}
            else:
                resampling = (self.recipe.baselevels or {}).get(source, "nearest")
                got = {"v": KEY_VERSION, "overview": source, "resampling": resampling,
                       "grid": self._base["grid"], "output": self._base["output"]}
            self._parts[zoom] = got
        return got

    def key(self, zoom: int) -> str:
        got = self._keys.get(zoom)
        if got is None:
            got = self._keys[zoom] = digest(self.parts(zoom))
        return got

    def parts_json(self, zoom: int) -> str:
        return json.dumps(self.parts(zoom), sort_keys=True, default=str)

    # -- per tile ------------------------------------------------------------------------------
    def deps(self, tile: Tile) -> str | None:
        """Hash of the upstream tiles a process tile reads (None without tile-directory inputs)."""
        if not self.per_tile or self.recipe.overview_source(tile.zoom) is not None:
            return None
        seen = []
        for name, inp in sorted(self.per_tile.items()):
            for path, version in inp.sources(tile):
                # a URL without a version (HTTP: no listing) cannot be checked here
                where = str(path)
                seen.append((name, where, version or ("unversioned" if is_url(where) else self._version(Path(path)))))
        return digest(seen) if seen else None

    def _version(self, path: Path) -> str:
        """A file of a ziggurat output (<root>/<zoom>/<row>/<col>): its recorded checksum; any other
        file (or one without a record): its size and modification time."""
        if len(path.parents) > 3:
            root = path.parents[2]
            recorded = self._checksums(root, [path.relative_to(root).as_posix()])
            sha = recorded.get(path.relative_to(root).as_posix())
            if sha:
                return sha
        return _stat(path)

    def _checksums(self, root: Path, rels: list[str]) -> dict[str, str | None]:
        if root not in self._upstream:
            self._upstream[root] = Ledger(root, create=False) if ledger_path(root).is_file() else None
        ledger = self._upstream[root]
        return {} if ledger is None else ledger.checksums(rels)

    def close(self) -> None:
        for ledger in self._upstream.values():
            if ledger is not None:
                ledger.close()
        self._upstream.clear()


def _stat(path: Path) -> str:
    """An upstream tile without a recorded checksum: its size and time, or that it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def reason(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """Why a tile made with the `old` parts is stale under the `new` ones (one short phrase)."""
    if old is None:
        return "made by an unknown recipe (recorded before tile keys existed)"
    if old.get("v") != new.get("v"):
        return "ziggurat's tile keys changed"
    if "overview" in new or "overview" in old:
        if old.get("overview") != new.get("overview"):
            return "baselevels changed"
        return "overview resampling changed" if old.get("resampling") != new.get("resampling") \
            else "output settings changed"
    if old.get("process") != new.get("process"):
        return "process code changed"
    if old.get("parameters") != new.get("parameters"):
        a, b = old.get("parameters") or {}, new.get("parameters") or {}
        names = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        return f"process_parameters changed ({', '.join(names)})"
    a_in, b_in = old.get("inputs") or {}, new.get("inputs") or {}
    changed = sorted(k for k in set(a_in) | set(b_in) if a_in.get(k) != b_in.get(k))
    if changed:
        return f"input {', '.join(changed)} changed"
    for part, what in (("grid", "pyramid"), ("output", "output settings"), ("area", "area")):
        if old.get(part) != new.get(part):
            return f"{what} changed"
    return "recipe changed"


def reason_for_key(ledger: Ledger, key: str | None, now: Mapping[str, Any]) -> str:
    """Why tiles recorded with `key` are stale under the parts `now` (their parts from the ledger)."""
    text = None if key is None else ledger.key_parts(key)
    return reason(None if text is None else json.loads(text), now)


def stale_lines(per_zoom: Iterable[Mapping[str, int]]) -> list[str]:
    """`stale: <n> <reason>` lines over all zooms, the most frequent reason first."""
    totals: dict[str, int] = {}
    for stale in per_zoom:
        for why, n in stale.items():
            totals[why] = totals.get(why, 0) + n
    return [f"stale: {n:,} {why}" for why, n in sorted(totals.items(), key=lambda kv: -kv[1])]


__all__ = ["KEY_VERSION", "RunKeys", "digest", "reason", "reason_for_key", "stale_lines"]
