"""A bucket output's compacted ledger in shards, so compaction rewrites only the blocks a run touched
and a reader fetches only the blocks it asks about.

Under ``<records>/ledger/``:

- ``shards/<name>.<stamp>.json.gz``: the rows of one shard as a segment of operations
  (`records.segments`): ``meta`` (keys, state, a single file's record) or ``z<zoom>-<R>-<C>``, the
  tiles of a zoom with ``row // BLOCK == R`` and ``col // BLOCK == C`` (at most 65,536 tiles);
  every compaction writes new objects, so a reader never sees a half-replaced shard;
- ``index.json``: which shard objects hold the compacted ledger and which delta segments they
  fold; one PUT switches from one compaction to the next (the objects it replaces go after it);
- delta segments (`Journal`) not in the index's ``folded``, replayed on top in name order.

An output whose ledger predates shards has no index: its segments (one of them a whole-ledger
``-compacted`` segment) are replayed as they are, and its next compaction writes shards.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ziggurat.core.errors import OutputError
from ziggurat.records.ledger_queries import LedgerQueries
from ziggurat.records.segments import SUFFIX, SegmentStore, write_file

#: tiles per shard side
BLOCK = 256
META = "meta"
INDEX = "index.json"
#: a shard: META, or (zoom, row block, col block)
Shard = str | tuple[int, int, int]
#: operations that act on every shard (a clear, a reset, a rekey)
GLOBAL = "*"


def shard_of(op: Sequence[Any]) -> Shard:
    """The shard an operation belongs to (GLOBAL: every shard)."""
    kind = op[0]
    if kind in ("p", "xp"):   # a process tile's row, recorded or dropped
        return (int(op[1]), int(op[2]) // BLOCK, int(op[3]) // BLOCK)
    if kind in ("o", "xo"):   # an output tile's
        return META if op[2] is None else (int(op[2]), int(op[3]) // BLOCK, int(op[4]) // BLOCK)
    if kind in ("k", "s"):
        return META
    return GLOBAL


def name_of(shard: Shard) -> str:
    return shard if isinstance(shard, str) else f"z{shard[0]}-{shard[1]}-{shard[2]}"


def parse(name: str) -> Shard:
    if name == META:
        return META
    try:
        z, r, c = name[1:].split("-")
        return (int(z), int(r), int(c))
    except ValueError as exc:
        raise OutputError(f"the ledger index names an unknown shard {name!r}") from exc


def tracked(ops: Iterable[list[Any]], touched: set[Shard],
            want: Callable[[Shard], bool] | None = None) -> Iterator[list[Any]]:
    """`ops`, noting the shards they touch in `touched`; with `want`, only the operations of the
    shards it wants (and every global one)."""
    for op in ops:
        shard = shard_of(op)
        touched.add(shard)
        if want is None or shard == GLOBAL or shard == META or want(shard):
            yield op


@dataclass
class ShardIndex:
    """What ``index.json`` says: name -> {"key", "ops", "bytes"}, and the deltas folded in."""

    shards: dict[str, dict[str, Any]] = field(default_factory=dict)
    folded: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, store: SegmentStore, folder: str) -> "ShardIndex | None":
        data = store.get(f"{folder}/{INDEX}")
        if data is None:
            return None
        try:
            got = json.loads(data)
            return cls(dict(got["shards"]), list(got["folded"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise OutputError(f"the ledger index {store.url(f'{folder}/{INDEX}')} is unreadable: {exc}") from exc

    def keys(self) -> list[str]:
        return sorted(entry["key"] for entry in self.shards.values())

    def bytes_of(self, shards: Iterable[Shard]) -> int:
        names = {name_of(s) for s in shards}
        return sum(int(e.get("bytes", 0)) for n, e in self.shards.items() if n in names)

    def dump(self) -> bytes:
        return json.dumps({"format": 1, "block": BLOCK, "shards": self.shards, "folded": self.folded},
                          sort_keys=True).encode()


def dirty_all(index: ShardIndex | None, ledger: LedgerQueries) -> set[Shard]:
    """Every shard the index or the ledger has (after a global operation)."""
    out: set[Shard] = {META, *ledger.shards(BLOCK)}
    if index is not None:
        out.update(parse(n) for n in index.shards)
    return out


def compact(store: Any, folder: str, ledger: LedgerQueries, index: ShardIndex | None, dirty: set[Shard],
            deltas: Sequence[str], fence: Callable[[], None]) -> ShardIndex:
    """Rewrite the `dirty` shards from the local ledger (streamed, one at a time), switch the
    index to them, then remove what they replace: the `deltas` and the earlier objects of the
    shards (written first, so a crash in between leaves a ledger that replays to the same state)."""
    old = index or ShardIndex()
    new = ShardIndex(dict(old.shards), sorted(deltas))
    stamp = f"{time.time_ns():020d}"
    if GLOBAL in dirty:
        dirty = dirty_all(index, ledger)
    for shard in sorted(dirty, key=lambda s: (0, 0, 0, 0) if isinstance(s, str) else (1, *s)):
        name = name_of(shard)
        if isinstance(shard, str):
            ops = ledger.meta_ops()
        else:
            zoom, rblock, cblock = shard
            ops = ledger.shard_ops(zoom, rblock, cblock, BLOCK)
        rel = f"{folder}/shards/{name}.{stamp}{SUFFIX}"
        n, size = _upload(store, rel, ops)
        if n:
            new.shards[name] = {"key": rel, "ops": n, "bytes": size}
        else:
            new.shards.pop(name, None)
    fence()
    store.put(f"{folder}/{INDEX}", new.dump())
    keep = set(new.keys())   # what replaced shards, and a crashed compaction, left behind goes too
    gone = {rel for rel, _, _ in store.list_objects(f"{folder}/shards") if rel not in keep}
    store.delete_many(sorted(gone | set(deltas) | set(old.folded)))
    return new


def _upload(store: Any, rel: str, ops: Iterable[list[Any]]) -> tuple[int, int]:
    """Stream `ops` into one object (none when there are none); (operations, bytes)."""
    fd, name = tempfile.mkstemp(prefix="ziggurat-shard-", suffix=SUFFIX)
    os.close(fd)
    path = Path(name)
    try:
        n = write_file(ops, path)
        if n:
            store.put_file(rel, path)
        return n, path.stat().st_size
    finally:
        path.unlink(missing_ok=True)


__all__ = ["BLOCK", "GLOBAL", "INDEX", "META", "Shard", "ShardIndex", "compact", "dirty_all", "name_of", "parse",
           "shard_of", "tracked"]
