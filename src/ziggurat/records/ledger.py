"""The tile ledger: a durable record of every tile's outcome, the single store of tile state.

SQLite in WAL mode at ``<output>/.ziggurat/ledger.sqlite`` (``OUT.tif.ziggurat/ledger.sqlite``
beside a single-file output). Only the parent process (the engine loop) writes it; rows are
committed in batches as tiles finish (every `COMMIT_SECONDS` or `COMMIT_ROWS` rows, at the end
and on interrupt). With ``synchronous=NORMAL`` a WAL commit survives a killed process (not a
power cut), so after ``kill -9`` the ledger holds exactly the tiles committed before it.

Two tables:

- ``process_tiles(zoom, row, col, status, run, time, key, deps)``: one row per process (or
  overview) tile, status ``written`` | ``empty`` | ``failed``, and what made it: `key` (process
  source, the recipe at the tile's zoom, input fingerprints; see `records.keys`) and `deps` (the
  checksums of the upstream tiles it read, for tile-directory inputs). Continue mode skips
  written and empty tiles whose key and deps are unchanged.
- ``keys(key, parts)``: what each key was made of (JSON), so a stale tile can say why.
- ``state(name, value)``: e.g. an ``--overwrite`` run in progress (``overwrite``), so an
  interrupted one is finished exactly by the next run.
- ``output_tiles(path, zoom, row, col, sha256, run)``: one row per output tile file, the
  checksum `ziggurat verify` compares (``sha256`` NULL: processed, nothing there).

A process tile row is committed in the same transaction as its output tiles' rows, so a tile
file without a process row (a crash between the rename and the commit) is simply processed
again: tile bytes are deterministic, so the redo writes the same bytes.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ziggurat.core.errors import OutputError
from ziggurat.core.formats import records_beside
from ziggurat.core.grid import TileIndex
from ziggurat.io.outputs.stored import RECORDS_FOLDER, provenance_dir
from ziggurat.records.ledger_queries import LedgerQueries, ProcessRow, TileRecord

log = logging.getLogger(__name__)

FOLDER = RECORDS_FOLDER
LEDGER_FILE = "ledger.sqlite"
COMMIT_SECONDS = 0.2
COMMIT_ROWS = 512
DONE = ("written", "empty")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS process_tiles (
    zoom INTEGER NOT NULL, row INTEGER NOT NULL, col INTEGER NOT NULL,
    status TEXT NOT NULL, run TEXT, time REAL, key TEXT, deps TEXT,
    PRIMARY KEY (zoom, row, col)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, parts TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS output_tiles (
    path TEXT PRIMARY KEY, zoom INTEGER, row INTEGER, col INTEGER, sha256 TEXT, run TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS output_tiles_zrc ON output_tiles (zoom, row, col);
DROP INDEX IF EXISTS output_tiles_zoom;
"""


def ledger_path(output_path: str | os.PathLike[str]) -> Path:
    return provenance_dir(output_path) / LEDGER_FILE


def sweep_temporaries(output_path: str | os.PathLike[str], *, keep_own: bool = True) -> int:
    """Remove temporary files left by dead writers: everything in ``.ziggurat/tmp`` and the
    ``.tmp-<pid>-*`` files of atomic metadata writes (output root and provenance folders)."""
    from ziggurat.io.storage.atomic import sweep_tmp

    folder = provenance_dir(output_path)
    removed = sweep_tmp(folder / "tmp", keep_own=keep_own)
    root = Path(output_path).parent if records_beside(output_path) else Path(output_path)
    for place in (root, folder, folder / "runs", folder / "sources"):
        removed += sweep_tmp(place, prefix=".tmp-", keep_own=keep_own)
    if removed:
        log.info("removed %d temporary file(s) of interrupted writers under %s", removed, root)
    return removed


class Ledger(LedgerQueries):
    """One connection to an output's ledger; batches writes into timed commits."""

    def __init__(self, output_path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = ledger_path(output_path)
        self.existed = self.path.is_file()
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.existed:
            raise FileNotFoundError(self.path)
        # the engine may pull tasks from an executor thread: one lock guards the connection
        self._lock = threading.RLock()
        try:
            columns = self._open(create)
        except sqlite3.Error as exc:   # a full disk, a read-only folder: one message naming the file
            raise OutputError(f"cannot open the tile ledger {self.path}: {exc}") from exc
        #: read-only, an older ledger has no keys: read them as NULL (stale: "unknown recipe")
        self._key, self._deps = ("key", "deps") if create or {"key", "deps"} <= columns else ("NULL", "NULL")
        self._pending = 0
        self._in_tx = False
        self._last_commit = time.monotonic()
        self._row_query = (f"SELECT status, run, {self._key}, {self._deps} FROM process_tiles "
                           "WHERE zoom=? AND row=? AND col=?")
        #: called with the operations of each commit (a remote output publishes them as a segment)
        self.on_commit: Callable[[list[list[Any]]], None] | None = None
        #: called before every commit (stale objects deleted before the ledger says they are gone)
        self.before_commit: Callable[[], None] | None = None
        #: True holds timed commits back (while stale objects wait for one bulk delete)
        self.hold: Callable[[], bool] | None = None
        self._journal: list[list[Any]] = []

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)

    def _open(self, create: bool) -> set[str]:
        self._conn = self._connect() if create else self._connect_readonly()
        if create:
            # a checkpoint every 64 MB of WAL rather than 4 MB: the engine's commits touch pages all
            # over the B-trees (tiles come along a curve), and each checkpoint rewrites them
            self._conn.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                                     "PRAGMA wal_autocheckpoint=16384;" + _SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(process_tiles)")}
        for column in [c for c in ("key", "deps") if c not in columns and create]:  # an older ledger
            self._conn.execute(f"ALTER TABLE process_tiles ADD COLUMN {column} TEXT")
        return columns

    def _connect_readonly(self) -> sqlite3.Connection:
        """Readers (verify, plan, status, reproduce) never need write access: read-only, and on
        a read-only file system (an archive, a published output) immutable, which needs no -shm."""
        uri = self.path.resolve().as_uri()
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None,
                                   check_same_thread=False)

    # -- writing ----------------------------------------------------------------------------
    def _begin(self) -> None:
        if not self._in_tx:
            self._conn.execute("BEGIN")
            self._in_tx = True

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Ledger writes under the lock; a full disk or a read-only file system becomes one clear
        error naming the ledger (the open batch is rolled back: its tiles simply run again)."""
        with self._lock:
            try:
                self._begin()
                yield
            except sqlite3.Error as exc:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self._in_tx = False
                self._journal = []
                raise OutputError(f"cannot write the tile ledger {self.path}: {exc}") from exc

    def record_process(self, index: TileIndex, status: str, run: str | None, key: str | None = None,
                       deps: str | None = None) -> None:
        with self._writing():
            row = (*map(int, index[:3]), status, run, time.time(), key, deps)
            self._conn.execute("INSERT OR REPLACE INTO process_tiles VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
            self._log("p", *row)
            self._pending += 1

    def record_key(self, key: str, parts: str) -> None:
        with self._writing():
            if self._conn.execute("INSERT OR IGNORE INTO keys VALUES (?, ?)", (key, parts)).rowcount:
                self._log("k", key, parts)   # (a known key is published already)
                self._pending += 1

    def known_keys(self) -> list[tuple[str, str]]:
        """(key, parts JSON) of every key the ledger's rows were made with."""
        with self._lock:
            return [(str(k), str(p)) for k, p in self._conn.execute("SELECT key, parts FROM keys").fetchall()]

    def rekey(self, old: str, new: str) -> int:
        """Rows made with key `old` count as made with `new` (the same code, or a change the user
        accepted); returns how many."""
        with self._writing():
            n = self._conn.execute("UPDATE process_tiles SET key=? WHERE key=?", (new, old)).rowcount
            self._log("rekey", old, new)
            self._pending += 1
        return int(n)

    def key_parts(self, key: str) -> str | None:
        try:
            with self._lock:
                got = self._conn.execute("SELECT parts FROM keys WHERE key=?", (key,)).fetchone()
        except sqlite3.OperationalError:  # read-only, an older ledger without the table
            return None
        return None if got is None else str(got[0])

    def set_state(self, name: str, value: str | None) -> None:
        """Committed at once: the state must survive a killed run."""
        with self._writing():
            if value is None:
                self._conn.execute("DELETE FROM state WHERE name=?", (name,))
            else:
                self._conn.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (name, value))
            self._log("s", name, value)
        self.commit()

    def get_state(self, name: str) -> str | None:
        try:
            with self._lock:
                got = self._conn.execute("SELECT value FROM state WHERE name=?", (name,)).fetchone()
        except sqlite3.OperationalError:  # read-only, an older ledger without the table
            return None
        return None if got is None else str(got[0])

    def clear(self) -> None:
        """Forget every tile (the pyramid they describe was removed)."""
        with self._writing():
            self._conn.execute("DELETE FROM process_tiles")
            self._conn.execute("DELETE FROM output_tiles")
            self._log("c")
        self.commit()

    def record_outputs(self, records: Iterable[TileRecord]) -> int:
        rows = [(r.path, *(tuple(map(int, r.index[:3])) if r.index is not None else (None, None, None)),
                 r.sha256, r.run) for r in records]
        if not rows:
            return 0
        with self._writing():
            self._conn.executemany("INSERT OR REPLACE INTO output_tiles VALUES (?, ?, ?, ?, ?, ?)", rows)
            if self.on_commit is not None:
                self._journal.extend(["o", *r] for r in rows)
            self._pending += len(rows)
        return len(rows)

    def forget_outputs(self, paths: Sequence[str]) -> int:
        """Drop the records of these output tiles (`ziggurat rm`: before their files go)."""
        n = 0
        with self._writing():
            for start in range(0, len(paths), 500):
                chunk = list(paths[start:start + 500])
                rows = self._conn.execute("SELECT path, zoom, row, col FROM output_tiles WHERE path IN "
                                          f"({','.join('?' * len(chunk))})", chunk).fetchall()
                self._conn.executemany("DELETE FROM output_tiles WHERE path=?", [(r[0],) for r in rows])
                for row in rows:
                    self._log("xo", *row)
                n += len(rows)
            self._pending += n
        return n

    def forget_window(self, zoom: int, rows: range, cols: range, table: str) -> int:
        """Drop the rows of `table` ("process_tiles" or "output_tiles") of a zoom inside a window."""
        where = "zoom=? AND row BETWEEN ? AND ? AND col BETWEEN ? AND ?"
        args = (zoom, rows[0], rows[-1], cols[0], cols[-1])
        process = table == "process_tiles"
        with self._writing():
            found = self._conn.execute(f"SELECT {'zoom, row, col' if process else 'path, zoom, row, col'} "
                                       f"FROM {table} WHERE {where}", args).fetchall()
            self._conn.execute(f"DELETE FROM {table} WHERE {where}", args)
            for row in found:
                self._log("xp" if process else "xo", *row)
            self._pending += len(found)
        return len(found)

    def maybe_commit(self) -> None:
        """Commit when the batch is big or old enough (durable against a killed process)."""
        if self._pending >= COMMIT_ROWS or time.monotonic() - self._last_commit >= COMMIT_SECONDS:
            if self.hold is None or not self.hold():
                self.commit()

    def commit(self) -> None:
        """Make the batch durable; a full disk or a read-only file system is one clear error
        (the batch is lost, earlier commits stay: the tiles of the lost rows run again)."""
        if self.before_commit is not None:
            self.before_commit()
        with self._lock:
            try:
                if self._in_tx:
                    self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite rolled back already
                self._journal = []
                raise OutputError(f"cannot write the tile ledger {self.path}: {exc}") from exc
            finally:
                self._in_tx = False
                self._pending = 0
                self._last_commit = time.monotonic()
            ops, self._journal = self._journal, []
        if ops and self.on_commit is not None:
            self.on_commit(ops)

    # -- operations (what a remote output publishes and replays) -------------------------------
    def _log(self, op: str, *args: Any) -> None:
        if self.on_commit is not None:
            self._journal.append([op, *args])

    def apply(self, ops: Iterable[Sequence[Any]]) -> int:
        """Replay published operations (`on_commit`'s, or `snapshot_ops`); returns how many."""
        n = 0
        with self._writing():
            for op in ops:
                kind, args = op[0], tuple(op[1:])
                if kind == "p":
                    self._conn.execute("INSERT OR REPLACE INTO process_tiles VALUES (?, ?, ?, ?, ?, ?, ?, ?)", args)
                elif kind == "o":
                    self._conn.execute("INSERT OR REPLACE INTO output_tiles VALUES (?, ?, ?, ?, ?, ?)", args)
                elif kind == "k":
                    self._conn.execute("INSERT OR IGNORE INTO keys VALUES (?, ?)", args)
                elif kind == "s":
                    if args[1] is None:
                        self._conn.execute("DELETE FROM state WHERE name=?", args[:1])
                    else:
                        self._conn.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", args)
                elif kind == "xo":
                    self._conn.execute("DELETE FROM output_tiles WHERE path=?", args[:1])
                elif kind == "xp":
                    self._conn.execute("DELETE FROM process_tiles WHERE zoom=? AND row=? AND col=?", args)
                elif kind == "rekey":
                    self._conn.execute("UPDATE process_tiles SET key=? WHERE key=?", (args[1], args[0]))
                elif kind in ("c", "reset"):
                    self._conn.execute("DELETE FROM process_tiles")
                    self._conn.execute("DELETE FROM output_tiles")
                    if kind == "reset":
                        self._conn.execute("DELETE FROM keys")
                        self._conn.execute("DELETE FROM state")
                else:
                    raise OutputError(f"the tile ledger {self.path}: unknown published operation {kind!r}")
                n += 1
        journal = self.on_commit
        self.on_commit = None  # replayed rows are published already
        try:
            self.commit()
        finally:
            self.on_commit = journal
        return n

    def close(self) -> None:
        """Commit and close; the last connection checkpoints and removes the WAL file."""
        with self._lock:
            try:
                self.commit()
            finally:
                self._conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------
    def row(self, index: TileIndex) -> ProcessRow | None:
        """The process tile's row: one primary-key lookup, the same cost at any ledger size and in
        any walk order (a cache of grid rows cost O(row width) per tile along the curve)."""
        with self._lock:
            got = self._conn.execute(self._row_query, (int(index[0]), int(index[1]), int(index[2]))).fetchone()
        return None if got is None else ProcessRow(*got)

    def is_done(self, index: TileIndex) -> bool:
        """Written or empty (failed tiles run again), whatever made it."""
        got = self.row(index)
        return got is not None and got.status in DONE


__all__ = ["COMMIT_ROWS", "COMMIT_SECONDS", "DONE", "LEDGER_FILE", "Ledger", "ProcessRow", "TileRecord",
           "ledger_path", "provenance_dir", "sweep_temporaries"]
