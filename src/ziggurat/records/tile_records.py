"""Tile checksums of an output, kept in the tile ledger (`ziggurat.records.ledger`), the last record
per tile winning.

One record per output tile: path (relative to the output root), tile index, SHA-256 and run
id; ``sha256`` None means "processed, nothing there" (an empty tile, or a tile --overwrite
removed). The ledger is the only store: an output written by an older ziggurat that kept
``.ziggurat/tiles.jsonl`` is imported into the ledger the first time it is opened (lines cut
short by a crash are skipped) and the JSON-lines file is removed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

from ziggurat.core.formats import records_beside
from ziggurat.core.grid import TileIndex
from ziggurat.records.ledger import FOLDER, LEDGER_FILE, Ledger, TileRecord, ledger_path, provenance_dir

log = logging.getLogger(__name__)

TILES_FILE = "tiles.jsonl"   # legacy format, imported into the ledger


def output_root(output_path: str | os.PathLike[str]) -> Path:
    """The folder tile record paths are relative to."""
    path = Path(output_path)
    return path.parent if records_beside(path) else path


def import_legacy_records(output_path: str | os.PathLike[str]) -> int:
    """Move an older output's ``tiles.jsonl`` into the ledger; returns the records imported."""
    legacy = provenance_dir(output_path) / TILES_FILE
    if not legacy.is_file():
        return 0
    records: dict[str, TileRecord] = {}
    with open(legacy, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                tile = d.get("tile")
                records[str(d["path"])] = TileRecord(str(d["path"]), d.get("sha256"),
                                                     TileIndex(*tile) if tile else None, d.get("run"))
            except (ValueError, KeyError, TypeError) as exc:  # e.g. a line cut by a crash
                log.warning("%s:%d: skipping an unreadable tile record (%s)", legacy, number, exc)
    with Ledger(output_path) as ledger:
        ledger.record_outputs(records.values())
    legacy.unlink()
    log.info("imported %d tile records from %s into the ledger", len(records), legacy)
    return len(records)


def append_tile_records(output_path: str | os.PathLike[str], records: Iterable[TileRecord]) -> int:
    """Add checksum records (replacing earlier ones for the same path), committed at once."""
    import_legacy_records(output_path)
    with Ledger(output_path) as ledger:
        return ledger.record_outputs(records)


def read_tile_records(output_path: str | os.PathLike[str], zooms: Iterable[int] | None = None) -> dict[str, TileRecord]:
    """Every tile's latest record (of `zooms`; a single file's always), by relative path (absent
    tiles included, sha256 None)."""
    import_legacy_records(output_path)
    if not ledger_path(output_path).is_file():
        return {}
    with Ledger(output_path, create=False) as ledger:
        return {r.path: r for r in ledger.output_records(zooms)}


def tile_paths_in(paths: Iterable[str], zooms: Iterable[int] | None) -> list[str]:
    """Tile paths (``zoom/row/col.ext``) of `zooms` (all without)."""
    if zooms is None:
        return list(paths)
    wanted = {str(z) for z in zooms}
    return [p for p in paths if p.split("/", 1)[0] in wanted]


def has_tile_records(output_path: str | os.PathLike[str]) -> bool:
    folder = provenance_dir(output_path)
    return (folder / LEDGER_FILE).is_file() or (folder / TILES_FILE).is_file()


def compact_tile_records(output_path: str | os.PathLike[str]) -> int:
    """The ledger keeps one row per tile already; returns the number of tile records."""
    import_legacy_records(output_path)
    if not ledger_path(output_path).is_file():
        return 0
    with Ledger(output_path, create=False) as ledger:
        return ledger.output_count()


__all__ = ["FOLDER", "TILES_FILE", "TileRecord", "append_tile_records", "compact_tile_records",
           "has_tile_records", "import_legacy_records", "output_root",
           "provenance_dir", "read_tile_records", "tile_paths_in"]
