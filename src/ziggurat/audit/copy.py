"""`ziggurat cp`: copy the tiles of a tile directory inside a window to another folder or bucket.

Streamed at both ends, so memory stays flat for any number of tiles: the source and the
destination are listed in name order and merged in one pass (a tile already there is kept
unless `overwrite`: no request per tile to ask), and at most twice `workers` tiles are in flight.
The destination gets the source's metadata.json first, so it is a tile directory GDAL, mapchete
and ziggurat read; a destination that is a ziggurat output with its own records is refused
(its ledger would not know the copied tiles).
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from ziggurat.audit.tilestore import TileStore
from ziggurat.core.bounds import Bounds
from ziggurat.core.errors import OutputError
from ziggurat.io.outputs.stored import METADATA_FILE
from ziggurat.io.storage.store import ObjectStore


@dataclass
class Copied:
    """What `copy_tiles` did."""

    source: str
    target: str
    tiles: int = 0
    skipped: int = 0         # already at the destination
    bytes: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        rate = self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0
        return (f"copied {self.tiles} tiles ({self.bytes / 1e6:.1f} MB, {rate:.0f} MB/s), {self.skipped} already "
                f"there, in {self.seconds:.2f} s -> {self.target}")


def copy_tiles(source: str, target: str, zooms: Iterable[int], bounds: Bounds | None = None, *,
               overwrite: bool = False, workers: int = 8, source_options: dict[str, Any] | None = None,
               target_options: dict[str, Any] | None = None) -> Copied:
    """Copy the tiles of `zooms` inside `bounds` (all without) from `source` to `target` (folders
    or bucket URLs)."""
    start = time.perf_counter()
    src = TileStore.existing(source, source_options)
    dst = _target(src, target, target_options)
    done = Copied(src.url, dst.url)
    todo = _missing(src, dst, sorted(set(zooms)), bounds, overwrite, done)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running: set[Future[int]] = set()
        for rel in todo:
            if len(running) >= 2 * workers:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                _count(finished, done)
            running.add(pool.submit(_copy_one, src, dst, rel))
        _count(wait(running).done, done)
    done.seconds = time.perf_counter() - start
    return done


def _target(src: TileStore, target: str, options: dict[str, Any] | None) -> TileStore:
    """The destination, made a tile directory of the source's kind where it is none yet."""
    dst = TileStore.open(target, options, missing_ok=True)
    if dst is None:
        _, store = TileStore.connect(target, options)
        if isinstance(store, ObjectStore):
            store.check(write=True)
        store.put(METADATA_FILE, src.meta)
        return TileStore.existing(target, options)
    if (dst.stored.grid, dst.stored.format, dst.stored.layout) != (src.stored.grid, src.stored.format,
                                                                    src.stored.layout):
        raise OutputError(f"{target}: a tile directory of another grid, format or layout than {src.url}; "
                          "copy into a new folder")
    if dst.has_records():
        raise OutputError(f"{target} is a ziggurat output with its own records: its ledger would not know copied "
                          "tiles (verify would call them extra); copy into a new folder, or run the recipe there")
    return dst


def _missing(src: TileStore, dst: TileStore, zooms: list[int], bounds: Bounds | None, overwrite: bool,
             done: Copied) -> Iterator[str]:
    """The source's tiles to copy: both listings merged in name order."""
    there = iter(()) if overwrite else dst.listing(zooms, bounds)
    other = next(there, None)
    for key, rel, _ in src.listing(zooms, bounds):
        while other is not None and other[0] < key:
            other = next(there, None)
        if other is not None and other[0] == key:
            done.skipped += 1
            continue
        yield rel


def _copy_one(src: TileStore, dst: TileStore, rel: str) -> int:
    data = src.store.get(rel)
    if data is None:   # removed since it was listed
        return -1
    dst.store.put(rel, data)
    return len(data)


def _count(finished: Iterable[Future[int]], done: Copied) -> None:
    for future in finished:
        size = future.result()   # a failed copy: its error (naming the object) ends the command
        if size >= 0:
            done.tiles += 1
            done.bytes += size


__all__ = ["Copied", "copy_tiles"]
