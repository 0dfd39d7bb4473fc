"""Ledger segments: the ledger's operations as gzip'd JSON lines, written and read as streams.

A segment is what a run publishes of its ledger (a bucket's `.ziggurat/ledger/`, a part's
`.ziggurat/parts/I-of-N/ledger/`), and a compacted one holds a whole ledger: at 10^7 tiles that
is gigabytes of operations, so nothing here holds a segment in memory. Writing streams a cursor
through gzip into a local file (uploaded as one object, multipart when large); reading streams
the object into a local file and yields one operation per line. Older segments (one JSON array)
are still read.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from ziggurat.core.errors import OutputError
from ziggurat.io.storage.atomic import HOST

#: segment objects end with this
SUFFIX = ".json.gz"
#: A run's ledger commits are published at most this often (the end of a run always publishes) ...
PUBLISH_SECONDS = 5.0
#: ... or once this many operations (about half as many tiles) wait.
PUBLISH_OPS = 4096


class SegmentStore(Protocol):
    """What segments need of a bucket or a shared folder (`ObjectStore`, `FolderStore`)."""

    def url(self, rel: str) -> str: ...

    def get(self, rel: str) -> bytes | None: ...

    def get_file(self, rel: str, path: Path) -> bool: ...

    def put_file(self, rel: str, path: Path) -> None: ...

    def put(self, rel: str, data: bytes) -> Any: ...


class Journal:
    """A ledger's commits (`Ledger.on_commit`), published as one segment each `PUBLISH_SECONDS` or
    `PUBLISH_OPS` operations, into `folder` of `store`; `fence` is asked before each (a run that
    lost its lock publishes nothing), `published(key, size)` told after."""

    def __init__(self, store: SegmentStore, folder: str, fence: Callable[[], None],
                 published: Callable[[str, int], None]) -> None:
        self.store, self.folder, self.fence, self.published = store, folder, fence, published
        self._ops: list[list[Any]] = []
        self._last = time.monotonic()
        self._seq = 0
        self._lock = threading.Lock()

    def on_commit(self, ops: list[list[Any]]) -> None:
        with self._lock:
            self._ops.extend(ops)
            due = time.monotonic() - self._last >= PUBLISH_SECONDS or len(self._ops) >= PUBLISH_OPS
        if due:
            self.publish()

    def publish(self) -> None:
        """One PUT of the operations committed since the last one."""
        self.fence()
        with self._lock:
            ops, self._ops = self._ops, []
            self._last = time.monotonic()
            if not ops:
                return
            self._seq += 1
            key = f"{self.folder}/{time.time_ns():020d}-{HOST}-{os.getpid()}-{self._seq:06d}{SUFFIX}"
        data = pack(ops)
        self.store.put(key, data)
        self.published(key, len(data))


def pack(ops: Iterable[list[Any]]) -> bytes:
    """A small segment (a few seconds of commits) as bytes; no timestamp: same ops, same bytes."""
    return gzip.compress("".join(json.dumps(op, separators=(",", ":")) + "\n" for op in ops).encode(), mtime=0)


def write_file(ops: Iterable[list[Any]], path: Path) -> int:
    """Stream operations into a segment file; returns how many."""
    n = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for op in ops:
            gz.write((json.dumps(op, separators=(",", ":")) + "\n").encode())
            n += 1
    return n


def read_file(path: Path, where: str) -> Iterator[list[Any]]:
    """The operations of a segment file, one at a time (`where` names it in errors)."""
    try:
        with gzip.open(path, "rb") as gz:
            first = gz.readline()
            if first.startswith(b"[[") or first.strip() == b"[]":   # an older segment: one JSON array
                yield from json.loads(first + gz.read())
                return
            line = first
            while line:
                if line.strip():
                    yield json.loads(line)
                line = gz.readline()
    except (OSError, ValueError, EOFError) as exc:
        raise OutputError(f"the ledger segment {where} is unreadable: {exc}") from exc


@contextmanager
def fetched(store: SegmentStore, rel: str) -> Iterator[Iterator[list[Any]] | None]:
    """The operations of the segment `rel`, streamed through a temporary file; None when it is
    gone (compacted away meanwhile)."""
    fd, name = tempfile.mkstemp(prefix="ziggurat-segment-", suffix=SUFFIX)
    os.close(fd)
    path = Path(name)
    try:
        yield read_file(path, store.url(rel)) if store.get_file(rel, path) else None
    finally:
        path.unlink(missing_ok=True)


def publish_stream(store: SegmentStore, rel: str, ops: Iterable[list[Any]]) -> int:
    """Stream operations (a whole ledger) into one segment object; returns how many."""
    fd, name = tempfile.mkstemp(prefix="ziggurat-segment-", suffix=SUFFIX)
    os.close(fd)
    path = Path(name)
    try:
        n = write_file(ops, path)
        store.put_file(rel, path)
        return n
    finally:
        path.unlink(missing_ok=True)


__all__ = ["PUBLISH_OPS", "PUBLISH_SECONDS", "SUFFIX", "Journal", "SegmentStore", "fetched", "pack",
           "publish_stream", "read_file", "write_file"]
