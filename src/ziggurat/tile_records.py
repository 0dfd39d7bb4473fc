"""Tile checksums of an output: an append-only JSON-lines file, the last record per tile winning.

``.ziggurat/tiles.jsonl`` (beside a single-file output: ``OUT.tif.ziggurat/tiles.jsonl``), one
record per output tile: ``{"path": "6/10/20.tif", "tile": [6, 10, 20], "sha256": "...",
"run": "<run id>"}``. ``sha256: null`` means "processed, nothing there" (an empty tile, or a tile
--overwrite removed). Appends share a file lock, compaction (one sorted line per tile, at the
end of every run) takes it alone, so concurrent runs into one folder lose no record. A durable
ledger (SQLite) can adopt the format through `append_tile_records` / `read_tile_records`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from ziggurat.grid import TileIndex
from ziggurat.io._common import tmp_path

log = logging.getLogger(__name__)

FOLDER = ".ziggurat"
TILES_FILE = "tiles.jsonl"


class TileRecord(NamedTuple):
    """One tile's checksum; `sha256` None means the tile is known to be absent (empty)."""

    path: str                    # relative to the output root, with "/" separators
    sha256: str | None
    index: TileIndex | None      # None for a single-file output
    run: str | None = None

    def to_json(self) -> str:
        return json.dumps({"path": self.path, "tile": list(self.index) if self.index else None,
                           "sha256": self.sha256, "run": self.run}, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> "TileRecord":
        d = json.loads(line)
        tile = d.get("tile")
        return cls(str(d["path"]), d.get("sha256"), TileIndex(*tile) if tile else None, d.get("run"))


# -- where things are -----------------------------------------------------------------------------
def is_single_file(output_path: str | os.PathLike[str]) -> bool:
    return Path(output_path).suffix.lower() in (".tif", ".tiff")


def provenance_dir(output_path: str | os.PathLike[str]) -> Path:
    """``OUT/.ziggurat`` for a tile directory, ``OUT.tif.ziggurat`` beside a single file."""
    path = Path(output_path)
    return path.with_name(path.name + FOLDER) if is_single_file(path) else path / FOLDER


def output_root(output_path: str | os.PathLike[str]) -> Path:
    """The folder tile record paths are relative to."""
    path = Path(output_path)
    return path.parent if is_single_file(path) else path


# -- tile records ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(folder: Path, exclusive: bool) -> Iterator[None]:
    """Appenders share the lock, compaction takes it alone (no-op where flock is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: a single writer is assumed
        yield
        return
    with open(folder / "tiles.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def append_tile_records(output_path: str | os.PathLike[str], records: Iterable[TileRecord]) -> int:
    """Append checksum records (the last one per path wins when read back)."""
    lines = "".join(r.to_json() + "\n" for r in records)
    if not lines:
        return 0
    folder = provenance_dir(output_path)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder, exclusive=False), open(folder / TILES_FILE, "a", encoding="utf-8") as fh:
        fh.write(lines)
    return lines.count("\n")


_PREFIX = '{"path":"'


def _scan(path: Path) -> dict[str, str]:
    """path -> line of the last record of every tile (unreadable lines are skipped)."""
    out: dict[str, str] = {}
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        return out
    with fh:
        for number, line in enumerate(fh, 1):
            end = line.find('"', len(_PREFIX))
            if line.startswith(_PREFIX) and line.endswith("}\n") and "\\" not in line[:end]:
                out[line[len(_PREFIX):end]] = line  # our own compact format: no JSON decoding
                continue
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                out[str(data["path"])] = line.rstrip("\n") + "\n"
            except (ValueError, KeyError, TypeError) as exc:  # e.g. a line cut by a crash
                log.warning("%s:%d: skipping an unreadable tile record (%s)", path, number, exc)
    return out


def _read_lines(path: Path) -> dict[str, TileRecord]:
    out: dict[str, TileRecord] = {}
    for key, line in _scan(path).items():
        d = json.loads(line)
        tile = d.get("tile")
        out[key] = TileRecord(key, d.get("sha256"), TileIndex(*tile) if tile else None, d.get("run"))
    return out


def read_tile_records(output_path: str | os.PathLike[str]) -> dict[str, TileRecord]:
    """Every tile's latest record, by relative path (absent tiles included, sha256 None)."""
    return _read_lines(provenance_dir(output_path) / TILES_FILE)


def has_tile_records(output_path: str | os.PathLike[str]) -> bool:
    return (provenance_dir(output_path) / TILES_FILE).is_file()


def compact_tile_records(output_path: str | os.PathLike[str]) -> int:
    """Rewrite tiles.jsonl with one line per tile, sorted; returns the number of lines."""
    folder = provenance_dir(output_path)
    path = folder / TILES_FILE
    if not path.exists():
        return 0
    with _locked(folder, exclusive=True):
        records = _scan(path)
        tmp = tmp_path(path, ".jsonl")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.writelines(records[key] for key in sorted(records, key=_sort_key))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return len(records)


def _sort_key(path: str) -> tuple[tuple[int, int, str], ...]:
    """Numeric order for zoom/row/col ("6/10/9" before "6/10/10"), text order otherwise."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.rsplit(".", 1)[0].split("/"))


__all__ = ["FOLDER", "TILES_FILE", "TileRecord", "append_tile_records", "compact_tile_records",
           "has_tile_records", "is_single_file", "output_root", "provenance_dir", "read_tile_records"]
