"""What the tile ledger answers beyond one tile: failed tiles, counts by zoom, key and run,
checksums of output tiles (`status`, `verify`, `plan`, the manifest). Read-only; mixed into `Ledger`."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any, Iterable, Iterator, NamedTuple

from ziggurat.core.grid import TileIndex

#: rows an export of the ledger (`snapshot_ops`, a shard) reads at a time: never a whole table in memory
PAGE = 10_000


class ProcessRow(NamedTuple):
    """A process tile's latest outcome and what made it."""

    status: str
    run: str | None
    key: str | None
    deps: str | None


class TileRecord(NamedTuple):
    """One output tile's checksum; `sha256` None means the tile is known to be absent (empty)."""

    path: str                    # relative to the output root, with "/" separators
    sha256: str | None
    index: TileIndex | None      # type: ignore[assignment]  # None for a single file (shadows tuple.index)
    run: str | None = None


class LedgerQueries:
    """Aggregate reads of the ledger's tables; `Ledger` provides the connection and its lock."""

    _conn: sqlite3.Connection
    _lock: threading.RLock
    #: the key column (NULL in an older ledger read as it is)
    _key: str

    def failed_tiles(self) -> list[tuple[TileIndex, str | None]]:
        """Process tiles whose latest outcome failed, with the run that saw it."""
        with self._lock:
            rows = self._conn.execute("SELECT zoom, row, col, run FROM process_tiles WHERE status='failed' "
                                      "ORDER BY zoom, row, col").fetchall()
        return [(TileIndex(z, r, c), run) for z, r, c, run in rows]

    def count_keys_in(self, zoom: int, rows: range, cols: range) -> dict[tuple[str, str | None], int]:
        """(status, key) -> count of the process tiles of a zoom inside a row/col window."""
        if not len(rows) or not len(cols):
            return {}
        with self._lock:
            return {(status, key): int(n) for status, key, n in self._conn.execute(
                f"SELECT status, {self._key}, count(*) FROM process_tiles WHERE zoom=? AND row BETWEEN ? AND ? "
                f"AND col BETWEEN ? AND ? GROUP BY status, {self._key}",
                (zoom, rows[0], rows[-1], cols[0], cols[-1]))}

    def count_by_key(self) -> list[tuple[int, str, str | None, int]]:
        """(zoom, status, key, count) over every process tile (`ziggurat status`)."""
        with self._lock:
            return [(int(z), str(s), k, int(n)) for z, s, k, n in self._conn.execute(
                f"SELECT zoom, status, {self._key}, count(*) FROM process_tiles "
                f"GROUP BY zoom, status, {self._key}")]

    def tiles_by_run(self) -> dict[str, int]:
        """Run id -> output tiles on disk it wrote (what the manifest lists)."""
        with self._lock:
            return {str(run): int(n) for run, n in self._conn.execute(
                "SELECT run, count(*) FROM output_tiles WHERE sha256 IS NOT NULL GROUP BY run")}

    def checksums(self, paths: Iterable[str]) -> dict[str, str | None]:
        """Recorded SHA-256 of output tiles by relative path (absent paths are left out)."""
        wanted = list(paths)
        out: dict[str, str | None] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                out.update(self._conn.execute(
                    f"SELECT path, sha256 FROM output_tiles WHERE path IN ({marks})", chunk).fetchall())
        return out

    def process_counts(self) -> dict[int, dict[str, int]]:
        """zoom -> status -> count."""
        out: dict[int, dict[str, int]] = {}
        with self._lock:
            for zoom, status, n in self._conn.execute(
                    "SELECT zoom, status, count(*) FROM process_tiles GROUP BY zoom, status"):
                out.setdefault(zoom, {})[status] = n
        return out

    def written_paths(self, zoom: int, limit: int) -> list[str]:
        """Up to `limit` paths of written output tiles of a zoom (samples for size estimates)."""
        with self._lock:
            return [p for (p,) in self._conn.execute(
                "SELECT path FROM output_tiles WHERE zoom=? AND sha256 IS NOT NULL LIMIT ?", (zoom, limit))]

    def output_records(self, zooms: Iterable[int] | None = None) -> Iterator[TileRecord]:
        """Output tile records (of `zooms`, and a single file's), in tile order."""
        where, args = "", tuple[int, ...]()
        if zooms is not None:
            args = tuple(sorted(set(zooms)))
            where = f"WHERE zoom IS NULL OR zoom IN ({','.join('?' * len(args))}) "
        with self._lock:
            rows = self._conn.execute("SELECT path, zoom, row, col, sha256, run FROM output_tiles "
                                      f"{where}ORDER BY zoom, row, col, path", args).fetchall()
        for path, zoom, row, col, sha, run in rows:
            yield TileRecord(path, sha, None if zoom is None else TileIndex(zoom, row, col), run)

    def snapshot_ops(self) -> Iterator[list[Any]]:
        """The whole ledger as operations, starting with a reset (a compacted segment)."""
        yield ["reset"]
        with self._lock:
            tables = [("k", "SELECT key, parts FROM keys"), ("s", "SELECT name, value FROM state"),
                      ("p", "SELECT zoom, row, col, status, run, time, key, deps FROM process_tiles"),
                      ("o", "SELECT path, zoom, row, col, sha256, run FROM output_tiles")]
            for kind, query in tables:   # a cursor, a page at a time: never the whole table in memory
                cursor = self._conn.execute(query)
                while rows := cursor.fetchmany(PAGE):
                    for row in rows:
                        yield [kind, *row]

    def run_ops(self, run: str) -> Iterator[list[Any]]:
        """One run's rows as operations (with every key, small), to publish what a killed run had
        committed here but not published."""
        with self._lock:
            process = "SELECT zoom, row, col, status, run, time, key, deps FROM process_tiles WHERE run=?"
            tables = [("k", "SELECT key, parts FROM keys", ()), ("p", process, (run,)),
                      ("o", "SELECT path, zoom, row, col, sha256, run FROM output_tiles WHERE run=?", (run,))]
            for kind, query, args in tables:
                cursor = self._conn.execute(query, args)
                while rows := cursor.fetchmany(PAGE):
                    for row in rows:
                        yield [kind, *row]

    # -- shards of a bucket's compacted ledger (records.shards) ----------------------------------
    def shards(self, block: int) -> set[tuple[int, int, int]]:
        """(zoom, row // block, col // block) of every tile row."""
        query = ("SELECT DISTINCT zoom, row / ?, col / ? FROM {} WHERE zoom IS NOT NULL")
        with self._lock:
            return {(int(z), int(r), int(c)) for table in ("process_tiles", "output_tiles")
                    for z, r, c in self._conn.execute(query.format(table), (block, block))}

    def shard_ops(self, zoom: int, rblock: int, cblock: int, block: int) -> Iterator[list[Any]]:
        """The rows of one shard as operations (a cursor, a page at a time)."""
        window = (zoom, rblock * block, rblock * block + block - 1, cblock * block, cblock * block + block - 1)
        where = "WHERE zoom=? AND row BETWEEN ? AND ? AND col BETWEEN ? AND ?"
        yield from self._ops([("p", f"SELECT zoom, row, col, status, run, time, key, deps FROM process_tiles {where}",
                               window),
                              ("o", f"SELECT path, zoom, row, col, sha256, run FROM output_tiles {where}", window)])

    def meta_ops(self) -> Iterator[list[Any]]:
        """Keys, state and a single file's record as operations."""
        yield from self._ops([("k", "SELECT key, parts FROM keys", ()), ("s", "SELECT name, value FROM state", ()),
                              ("o", "SELECT path, zoom, row, col, sha256, run FROM output_tiles WHERE zoom IS NULL",
                               ())])

    def _ops(self, tables: list[tuple[str, str, tuple[Any, ...]]]) -> Iterator[list[Any]]:
        with self._lock:
            for kind, query, args in tables:
                cursor = self._conn.execute(query, args)
                while rows := cursor.fetchmany(PAGE):
                    for row in rows:
                        yield [kind, *row]

    def output_count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM output_tiles").fetchone()[0])


__all__ = ["LedgerQueries", "ProcessRow", "TileRecord"]
