"""`ziggurat rm`: remove the tiles of a tile directory inside a window, with their records, so files
(or objects), ledger and `verify` agree afterwards, whether it ends or is stopped.

Tiles are listed in name order as a stream and removed 1,000 at a time: each batch's ledger rows
go first (committed and, on a bucket, published), then the files (one DeleteObjects request per
batch on S3). A stop in between leaves files without records, which `verify` calls extra and a
second `rm` removes; never records of files that are gone. Then the records of the window's
empty tiles and its process tiles go too, so a later run remakes what was removed. An output
ziggurat writes is locked as for a run; a tile directory without records (mapchete's) has only
files to remove.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

from ziggurat.audit.tilestore import TileStore, window
from ziggurat.core.bounds import Bounds
from ziggurat.core.grid import Grid, TileIndex
from ziggurat.io.outputs.stored import open_stored
from ziggurat.recipe import OutputConfig
from ziggurat.recipe.output import state_folder
from ziggurat.records.ledger import Ledger
from ziggurat.records.lock import RunLock
from ziggurat.records.remote import RemoteRecords
from ziggurat.records.remote_lock import RemoteLock

#: tiles removed per batch (S3's DeleteObjects takes 1,000 keys)
BATCH = 1000


@dataclass
class Removed:
    """What `remove_tiles` did."""

    url: str
    tiles: int = 0          # files (objects) removed
    records: int = 0        # ledger rows dropped (output and process tiles)
    seconds: float = 0.0

    def describe(self) -> str:
        rows = f", {self.records} ledger records dropped" if self.records else ""
        return f"removed {self.tiles} tiles{rows} in {self.seconds:.2f} s -> {self.url}"


def count_tiles(target: str, zooms: Iterable[int], bounds: Bounds | None = None,
                storage_options: dict[str, Any] | None = None) -> int:
    """How many tile files `remove_tiles` would remove (one listing, streamed)."""
    return sum(1 for _ in TileStore.existing(target, storage_options).tiles(zooms, bounds))


def remove_tiles(target: str, zooms: Iterable[int], bounds: Bounds | None = None,
                 storage_options: dict[str, Any] | None = None) -> Removed:
    """Remove the tiles of `zooms` inside `bounds` (all of them without) from the tile directory
    at `target` (a folder or a bucket URL), and their records."""
    start = time.perf_counter()
    tiles = TileStore.existing(target, storage_options)
    zooms = sorted(set(zooms))
    done = Removed(tiles.url)
    if not tiles.has_records():
        for batch in _batches(tiles.tiles(zooms, bounds)):
            tiles.store.delete_many([rel for rel, _ in batch])
            done.tiles += len(batch)
    else:
        _remove_recorded(tiles, zooms, bounds, storage_options, done)
    done.seconds = time.perf_counter() - start
    return done


def _remove_recorded(tiles: TileStore, zooms: list[int], bounds: Bounds | None,
                     storage_options: dict[str, Any] | None, done: Removed) -> None:
    """A ziggurat output: locked as for a run; each batch's records before its files."""
    records: RemoteRecords | None = None
    if tiles.location is None:
        root = Path(tiles.url)
        lock: RunLock | RemoteLock = RunLock(root)
    else:
        root = state_folder(tiles.location)
        config = OutputConfig(path=root, format=tiles.stored.format, location=tiles.location,
                              storage_options=storage_options or {})
        lock, records = RemoteLock(config, what=f"output {tiles.url}"), RemoteRecords(tiles.location,
                                                                                       storage_options, root)
    lock.acquire()
    try:
        if records is not None:
            records.check(write=True)
            records.pull()
            records.fence = lock.fence
        with Ledger(root) as ledger:
            if records is not None:
                records.attach(ledger)
            # 1. the process tiles: a later run remakes them (and their files, byte for byte)
            process_grid = _process_grid(tiles)
            for zoom in zooms:
                if process_grid.minzoom <= zoom <= process_grid.maxzoom:
                    rows, cols = window(process_grid, zoom, bounds)
                    if len(rows) and len(cols):
                        done.records += ledger.forget_window(zoom, rows, cols, "process_tiles")
            _commit(ledger, records)
            # 2. the files, a batch at a time, each batch's records first
            for batch in _batches(tiles.tiles(zooms, bounds)):
                done.records += ledger.forget_outputs([rel for rel, _ in batch])
                _commit(ledger, records)
                tiles.store.delete_many([rel for rel, _ in batch])
                done.tiles += len(batch)
            # 3. what is left in the window: records of empty tiles
            for zoom in zooms:
                done.records += ledger.forget_window(zoom, *tiles.window(zoom, bounds), "output_tiles")
            ledger.commit()
        if records is not None:
            records.finish()
        else:
            _refresh_catalog(root)
    finally:
        lock.release()


def _commit(ledger: Ledger, records: RemoteRecords | None) -> None:
    """Durable here, and on a bucket published, before anything it no longer records is deleted."""
    ledger.commit()
    if records is not None:
        records.publish()


def _refresh_catalog(root: Path) -> None:
    """The STAC item describes what is on disk, and the indexes list tiles: rebuilt, removed."""
    from ziggurat.records.catalog.index import remove_indexes
    from ziggurat.records.catalog.parts import item_path
    from ziggurat.records.catalog.stac import build_item

    remove_indexes(root)
    item = item_path(root)
    if item.is_file():
        if any(True for _ in open_stored(root).scan()):
            build_item(root)
        else:   # nothing left to describe
            item.unlink()


def _process_grid(tiles: TileStore) -> Grid:
    """The grid the process tiles were recorded in (metadata.json's `process_grid`)."""
    meta = json.loads(tiles.meta)
    return Grid.from_dict(meta["process_grid"]) if "process_grid" in meta else tiles.stored.grid


def _batches(items: Iterator[tuple[str, TileIndex]]) -> Iterator[list[tuple[str, TileIndex]]]:
    while batch := list(islice(items, BATCH)):
        yield batch


__all__ = ["Removed", "count_tiles", "remove_tiles"]
