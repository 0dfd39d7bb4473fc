"""A tile directory wherever it is (a folder or a bucket), for the commands that copy and remove
tiles (`ziggurat cp`, `ziggurat rm`): its grid and layout from its metadata.json, its tiles inside
a window listed in name order as a stream (one LIST per 1,000 objects, nothing held), and one
store to read, write and delete them with."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ziggurat.core.bounds import Bounds
from ziggurat.core.errors import OutputError
from ziggurat.core.formats import Storage
from ziggurat.core.grid import Grid, TileIndex
from ziggurat.core.location import Location, is_url
from ziggurat.io.outputs.stored import METADATA_FILE, StoredOutput, stored_from_metadata
from ziggurat.io.storage.folder_store import FolderStore
from ziggurat.io.storage.store import ObjectStore, open_store
from ziggurat.records.ledger import FOLDER, LEDGER_FILE


@dataclass
class TileStore:
    """`stored` describes the tiles (grid, layout, extension); `store` holds them."""

    url: str
    store: ObjectStore | FolderStore
    stored: StoredOutput
    location: Location | None
    meta: bytes

    @staticmethod
    def connect(target: str, storage_options: dict[str, Any] | None = None
                ) -> tuple[Location | None, ObjectStore | FolderStore]:
        """The store at `target` (a path or a URL), whatever it holds."""
        location = Location.parse(target) if is_url(target) else None
        if location is None:
            return None, FolderStore(os.path.abspath(target))
        if not location.is_object_store:
            raise OutputError(f"{target}: expected a local folder or an object store URL (s3://, gs://, az://)")
        return location, open_store(location, storage_options)

    @classmethod
    def open(cls, target: str, storage_options: dict[str, Any] | None = None, *,
             missing_ok: bool = False) -> "TileStore | None":
        """The tile directory at `target`: a clear error where there is none (None with `missing_ok`
        where there is nothing at all)."""
        location, store = cls.connect(target, storage_options)
        meta = store.get(METADATA_FILE)
        if meta is None:
            if missing_ok:
                return None
            raise OutputError(f"{target}: no tile directory there (no {METADATA_FILE})")
        try:
            stored = stored_from_metadata(Path(location.name if location else os.path.abspath(target)),
                                          json.loads(meta))
        except (KeyError, TypeError, ValueError) as exc:
            raise OutputError(f"{target}/{METADATA_FILE}: not the metadata of a tile directory: {exc}") from exc
        if stored.storage is not Storage.TILES:
            raise OutputError(f"{target}: a {stored.format} store, not a tile directory; copy and remove "
                              "work on tile directories (one file per tile)")
        return cls(target if location is None else location.url, store, stored, location, meta)

    @classmethod
    def existing(cls, target: str, storage_options: dict[str, Any] | None = None) -> "TileStore":
        found = cls.open(target, storage_options)
        assert found is not None
        return found

    def has_records(self) -> bool:
        """Whether ziggurat keeps a ledger of this output (its records must follow any change)."""
        if isinstance(self.store, FolderStore):
            return (self.store.root / FOLDER / LEDGER_FILE).is_file()
        return any(True for _ in self.store.list_all(f"{FOLDER}/ledger/"))

    def window(self, zoom: int, bounds: Bounds | None) -> tuple[range, range]:
        """The rows and columns of a zoom inside `bounds` (every tile of the zoom without)."""
        return window(self.stored.grid, zoom, bounds)

    def tiles(self, zooms: Iterable[int], bounds: Bounds | None) -> Iterator[tuple[str, TileIndex]]:
        """(relative path, tile) of each tile file inside the window, zoom by zoom, in name order."""
        for _, rel, index in self.listing(zooms, bounds):
            yield rel, index

    def listing(self, zooms: Iterable[int], bounds: Bounds | None
                ) -> Iterator[tuple[tuple[int, int, str], str, TileIndex]]:
        """`tiles` with an increasing key (zoom, listing, name): two directories' listings of the
        same window merge in one pass."""
        suffix = f".{self.stored.ext}"
        layout = self.stored.layout
        for zoom in sorted(set(zooms)):
            rows, cols = self.window(zoom, bounds)
            if not len(rows) or not len(cols):
                continue
            firsts = cols if layout.col_first else rows
            if bounds is None:
                prefixes = [f"{zoom}/"]
            else:   # one listing per row folder of the window, in name order
                prefixes = [f"{zoom}/{first}/" for first in sorted(firsts, key=str)]
            for n, prefix in enumerate(prefixes):
                for rel in self._names(prefix):
                    parts = rel.split("/")
                    if len(parts) != 3 or not parts[2].endswith(suffix):
                        continue
                    try:
                        index = layout.index(zoom, int(parts[1]), int(parts[2][:-len(suffix)]))
                    except ValueError:
                        continue
                    if index.row in rows and index.col in cols:
                        yield (zoom, n, rel), rel, index

    def _names(self, prefix: str) -> Iterator[str]:
        """Relative paths under `prefix` in name order (a bucket lists in that order)."""
        if isinstance(self.store, ObjectStore):
            for rel, _ in self.store.list_all(prefix):
                yield rel
            return
        yield from _sorted_walk(self.store.root, prefix.rstrip("/"))



def window(grid: Grid, zoom: int, bounds: Bounds | None) -> tuple[range, range]:
    """The rows and columns of `grid` at a zoom inside `bounds` (all of them without)."""
    if bounds is None:
        rows, cols = grid.matrix_shape(zoom)
        return range(rows), range(cols)
    return grid.tile_range(bounds, zoom)


def _sorted_walk(root: Path, rel: str) -> Iterator[str]:
    """Files under root/rel, depth first, names sorted as strings at each level (the order of a
    bucket's listing of the same keys); temporaries of writers skipped."""
    try:
        entries = sorted(os.scandir(root / rel), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name.startswith(".tmp-"):
            continue
        path = f"{rel}/{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield from _sorted_walk(root, path)
        elif entry.is_file(follow_symlinks=False):
            yield path


__all__ = ["TileStore", "window"]
