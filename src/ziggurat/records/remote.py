"""The records of an output on object storage: a local state folder, published to the bucket.

Tiles go straight to the bucket (one PUT each, see `io.folder`). Everything else a run keeps
(`metadata.json`, `.ziggurat/` provenance, the STAC item, indexes) is written into the output's
local state folder as for a local output, and published:

- the **ledger** stays SQLite locally, for speed; each of its commits hands its operations to
  `RemoteRecords`, which PUTs them as one delta segment under ``.ziggurat/ledger/`` every
  `PUBLISH_SECONDS` or `PUBLISH_OPS` (and at the end); once the deltas have grown, the shards they
  touched (zoom x 256 x 256 tiles, `records.shards`) are rewritten and the deltas removed. A run
  on another machine rebuilds the ledger from the shards and the deltas (`pull`), so it resumes
  exactly: a few requests per 65,536 tiles, not one per tile; a reader may fetch only the shards
  it needs.
- the other files are uploaded when they change (`push`): after the run starts and when it ends.
- the **run lock** (`records.remote_lock`) is a conditional PUT (``If-None-Match: *``) of
  ``.ziggurat/lock`` with an expiry, renewed (``If-Match``) while the run lives and fenced: a run
  that lost it (paused past the expiry) publishes nothing more.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ziggurat.core.errors import OutputError
from ziggurat.core.formats import records_beside
from ziggurat.core.location import Location
from ziggurat.io.storage.atomic import HOST, write_bytes_atomic
from ziggurat.io.storage.store import ObjectStore, open_store
from ziggurat.records.ledger import LEDGER_FILE, Ledger, ledger_path, provenance_dir
from ziggurat.records.segments import SUFFIX, Journal, fetched, publish_stream
from ziggurat.records.shards import GLOBAL, INDEX, META, Shard, ShardIndex, compact, name_of, parse, shard_of, tracked

log = logging.getLogger(__name__)

#: Not published: local-only state (the ledger travels as segments, caches and temporaries stay).
#: In the state folder: what the last run that finished there published (local only).
SYNCED_FILE = "ledger.synced.json"
_LOCAL_ONLY = (LEDGER_FILE, f"{LEDGER_FILE}-wal", f"{LEDGER_FILE}-shm", "lock", "tmp", "cache", "ledger", SYNCED_FILE)
#: Compaction (the shards the deltas touched rewritten) once the deltas number this many ...
COMPACT_SEGMENTS = 32
#: ... or weigh this share of those shards
COMPACT_SHARE = 0.25


class _Vanished(OutputError):
    """A shard named by the index was gone when it was read: a newer compaction replaced it."""


class RemoteRecords:
    """Publishes and restores the records of one remote output (`config.location`)."""

    def __init__(self, location: Location, storage_options: Mapping[str, Any] | None, root: Path) -> None:
        self.root = Path(root)                   # the local state folder (a single file: its path there)
        self.single = records_beside(self.root)  # OUT.tif: records beside it, in OUT.tif.ziggurat/
        self.store: ObjectStore = open_store(location.parent if self.single else location, storage_options)
        self.base = self.root.parent if self.single else self.root   # what the store's root is, locally
        self.folder = provenance_dir(self.root)
        self.prefix = self.folder.relative_to(self.base).as_posix()   # ".ziggurat" or "OUT.tif.ziggurat"
        self.segments = f"{self.prefix}/ledger"
        self._published: list[str] = []          # segment keys this run wrote
        self._pushed: dict[str, tuple[int, int]] = {}
        self._existing: list[str] = []           # segment keys found by `pull`
        self._adopted = False                    # rows taken over from parts: compact at the end
        self._unpublished: str | None = None     # a run killed here, whose local rows go out at attach
        #: raises when the run lost its lock (`RemoteLock.fence`): nothing is published after that
        self.fence: Callable[[], None] = lambda: None
        self._sizes: dict[str, int] = {}         # bytes of each delta segment (compaction policy)
        self._index: ShardIndex | None = None    # the compacted ledger's shards (None: none yet)
        self._touched: set[Shard] = set()        # shards the deltas change (rewritten by compaction)
        self._bucket_files: dict[str, list[Any]] = {}   # other records in the bucket: rel -> [size, etag]
        self._journal = Journal(self.store, self.segments, lambda: self.fence(), self._note_published)

    # -- before a run (and for readers: verify, status, reproduce) -----------------------------
    def check(self, *, write: bool) -> None:
        """One LIST: the bucket exists and the credentials may use it, before any tile runs."""
        self.store.check(write=write)

    def pull(self, want: Callable[[Shard], bool] | None = None) -> int:
        """`_pull`, again from the start when another run compacted the ledger while it was read."""
        for attempt in range(3):
            try:
                return self._pull(want)
            except _Vanished:
                if attempt == 2:
                    raise
                log.info("the ledger of %s was compacted while it was read; reading it again", self.store.url(""))
        raise AssertionError("unreachable")

    def _pull(self, want: Callable[[Shard], bool] | None = None) -> int:
        """Make the state folder a copy of the bucket's records (the bucket is the truth);
        returns the number of ledger operations replayed. Incremental when the state folder is
        what the last finished run here left (`SYNCED_FILE`), no compaction ran since and the
        bucket still holds every delta it had: only newer deltas and changed records travel.
        `want` (readers): only the tile shards it wants (a partial ledger, never synced)."""
        listing = {rel: (size, etag) for rel, size, etag in self.store.list_objects(self.prefix)}
        index = ShardIndex.load(self.store, self.segments) if f"{self.segments}/{INDEX}" in listing else None
        folded = set(index.folded) if index else set()
        deltas = sorted(rel for rel in listing if rel.startswith(self.segments + "/") and rel.endswith(SUFFIX)
                        and "/" not in rel[len(self.segments) + 1:] and rel not in folded)
        synced = None if want is not None else self._synced()
        if (synced is None or not set(synced["segments"]) <= set(deltas)
                or synced["shards"] != (index.keys() if index else [])):
            synced = {"segments": [], "files": {}, "dirty": None, "shards": [], "touched": []}
            for name in ("runs", "sources"):
                shutil.rmtree(self.folder / name, ignore_errors=True)
            for path in (ledger_path(self.root), *(Path(f"{ledger_path(self.root)}-{x}") for x in ("wal", "shm"))):
                path.unlink(missing_ok=True)
        self.base.mkdir(parents=True, exist_ok=True)
        # a tile directory's own files (metadata.json, the STAC item); a single file's folder holds others'
        files = [] if self.single else [rel for rel, _ in self.store.list_dir("")]
        files += [rel for rel in listing if not rel.startswith(self.segments + "/")
                  and rel.split("/")[1] not in _LOCAL_ONLY
                  and (synced["files"].get(rel) != list(listing[rel]) or not (self.base / rel).is_file())]
        for rel in files:
            self._fetch_file(rel)
        self._touched = {GLOBAL if n == GLOBAL else parse(n) for n in synced["touched"]}
        with Ledger(self.root) as ledger:
            replayed = 0 if synced["shards"] or index is None else self._replay_shards(ledger, index, want)
            done = set(synced["segments"])
            for rel in deltas:
                if rel in done:
                    continue
                with fetched(self.store, rel) as ops:   # streamed: any ledger size, little memory
                    if ops is not None:                 # (None: compacted away meanwhile)
                        replayed += ledger.apply(tracked(ops, self._touched, want))
        self._existing, self._index = deltas, index
        self._unpublished = synced["dirty"]   # a run killed here: its local rows are kept, published at attach
        self._sizes = {rel: listing[rel][0] for rel in deltas}
        self._bucket_files = {rel: list(v) for rel, v in listing.items() if not rel.startswith(self.segments + "/")}
        return replayed

    def _replay_shards(self, ledger: Ledger, index: ShardIndex, want: Callable[[Shard], bool] | None) -> int:
        replayed = 0
        for name, entry in sorted(index.shards.items()):
            shard = parse(name)
            if want is not None and shard != META and not want(shard):
                continue
            with fetched(self.store, entry["key"]) as ops:
                if ops is None:
                    raise _Vanished(f"{self.store.url(entry['key'])}: a ledger shard vanished while it was read "
                                    "(another run compacted the ledger meanwhile); try again")
                replayed += ledger.apply(ops)
        return replayed

    def _fetch_file(self, rel: str) -> None:
        data = self.store.get(rel)
        if data is not None:
            target = self.base / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(target, data)
            st = target.stat()
            self._pushed[rel] = (st.st_size, st.st_mtime_ns)

    def _synced(self) -> dict[str, Any] | None:
        """What the last run that finished here published, if the local ledger is still exactly that."""
        try:
            got = json.loads((self.folder / SYNCED_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(got, dict) or got.get("url") != self.store.url("") or not ledger_path(self.root).is_file():
            return None
        return {"segments": list(got.get("segments", [])), "files": dict(got.get("files", {})),
                "dirty": got.get("dirty"), "shards": list(got.get("shards", [])),
                "touched": list(got.get("touched", [GLOBAL]))}

    def _write_synced(self, dirty: str | None = None) -> None:
        """`dirty`: the run now recording here; if it is killed, the next run here publishes the rows
        it committed locally but had not published yet (its tiles are in the bucket already)."""
        data = {"url": self.store.url(""), "segments": sorted(self._existing + self._published),
                "files": self._bucket_files, "dirty": dirty, "shards": self._index.keys() if self._index else [],
                "touched": sorted(name_of(s) for s in self._touched)}
        write_bytes_atomic(self.folder / SYNCED_FILE, json.dumps(data).encode())

    # -- during a run ----------------------------------------------------------------------------
    def attach(self, ledger: Ledger, *, resync: bool = False, run: str | None = None) -> None:
        """Publish `ledger`'s commits from now on; `resync`: it changed since `pull` (a replaced
        pyramid, an --overwrite begun), so the first segment carries all of it. Rows a run killed
        here had committed but not published are published first: its tiles are not redone."""
        if self._unpublished and not resync:
            key = f"{self.segments}/{time.time_ns():020d}-{HOST}-{os.getpid()}-recovered{SUFFIX}"
            n = publish_stream(self.store, key, tracked(ledger.run_ops(self._unpublished), self._touched))
            self._published.append(key)
            self._sizes[key] = 40 * n   # about
        self._unpublished = None
        self._write_synced(dirty=run or "unknown")   # the local ledger now runs ahead of the bucket
        ledger.on_commit = self._on_commit
        if resync:   # the whole ledger, streamed into one segment (it starts with a reset: every shard)
            key = f"{self.segments}/{time.time_ns():020d}-{HOST}-{os.getpid()}-resync{SUFFIX}"
            n = publish_stream(self.store, key, tracked(ledger.snapshot_ops(), self._touched))
            self._published.append(key)
            self._sizes[key] = 40 * n

    def _on_commit(self, ops: list[list[Any]]) -> None:
        touched = self._touched
        for op in ops:
            touched.add(shard_of(op))
        self._journal.on_commit(ops)

    def adopt(self) -> None:
        """The ledger took over rows published elsewhere (a part's segments): the end of the run
        compacts it into this output's own segments."""
        self._adopted = True

    def publish(self) -> None:
        """One PUT of the operations committed since the last one."""
        self._journal.publish()

    def _note_published(self, key: str, size: int) -> None:
        self._published.append(key)
        self._sizes[key] = size

    def push(self) -> int:
        """Upload the records that changed in the state folder; returns how many."""
        sent = 0
        for path in sorted(self._files()):
            rel = path.relative_to(self.base).as_posix()
            st = path.stat()
            if self._pushed.get(rel) == (st.st_size, st.st_mtime_ns):
                continue
            self.store.put(rel, path.read_bytes())
            self._pushed[rel] = (st.st_size, st.st_mtime_ns)
            sent += 1
        return sent

    def _files(self) -> list[Path]:
        out = [] if self.single else [p for p in self.root.iterdir() if p.is_file() and not p.name.startswith(".tmp-")]
        if self.folder.is_dir():
            for dirpath, dirnames, filenames in os.walk(self.folder):
                rel = Path(dirpath).relative_to(self.folder).parts
                if rel and rel[0] in _LOCAL_ONLY:
                    dirnames[:] = []
                    continue
                if not rel:
                    dirnames[:] = [d for d in dirnames if d not in _LOCAL_ONLY]
                out += [Path(dirpath) / f for f in filenames
                        if not f.startswith(".tmp-") and not (not rel and f in _LOCAL_ONLY)]
        return out

    def finish(self) -> None:
        """Publish the last operations, compact when the deltas have grown, push the records;
        then the state folder is what the bucket holds (the next run here pulls incrementally)."""
        self.fence()
        self.publish()
        if self._adopted or self._deltas_grown():
            self.compact()
        self.push()
        self._write_synced()

    def _deltas_grown(self) -> bool:
        """Compaction rewrites the shards the deltas touched: only once the deltas are many
        (COMPACT_SEGMENTS) or weigh COMPACT_SHARE of those shards; a one-tile rerun adds one small
        delta to a large shard and leaves it."""
        keys = self._existing + self._published
        if not keys:
            return False
        if self._index is None:
            return True   # no shards yet (a first run, a ledger from before shards)
        base = (sum(int(e.get("bytes", 0)) for e in self._index.shards.values()) if GLOBAL in self._touched
                else self._index.bytes_of(self._touched))
        deltas = sum(self._sizes.get(rel, 0) for rel in keys)
        return len(keys) >= COMPACT_SEGMENTS or deltas >= COMPACT_SHARE * base

    def compact(self, *, whole: bool = False) -> None:
        """The shards the deltas touched (`whole`: every shard), rewritten from the local ledger
        (streamed: cursor -> gzip -> upload, one shard at a time), replace them and the deltas."""
        if self._adopted or whole:
            self._touched.add(GLOBAL)   # rows taken over from parts were never published as deltas
        with Ledger(self.root, create=False) as ledger:
            self._index = compact(self.store, self.segments, ledger, self._index, self._touched,
                                  self._existing + self._published, self.fence)
        self._existing, self._published, self._sizes, self._touched = [], [], {}, set()


@contextmanager
def pulled(url: str, storage_options: Mapping[str, Any] | None = None, *, must_exist: bool = True,
           want: Callable[[Shard], bool] | None = None) -> Iterator[Path]:
    """A private local copy of a remote output's records (for verify, status, reproduce: readers
    never touch the state folder a run may be using); removed afterwards. `want`: only the tile
    shards it wants (`plan` of a window)."""
    location = Location.parse(url)
    if not location.is_object_store:
        raise OutputError(f"{url}: expected a local path or an object store URL (s3://, gs://, az://)")
    with tempfile.TemporaryDirectory(prefix="ziggurat-records-") as tmp:
        root = Path(tmp) / location.name
        records = RemoteRecords(location, storage_options, root)
        records.check(write=False)
        records.pull(want)
        if must_exist and not (root / "metadata.json").is_file() and not provenance_dir(root).joinpath("runs").is_dir():
            # (a single file's records: OUT.tif.ziggurat/runs)
            raise OutputError(f"{url}: no ziggurat output there (no metadata.json, no .ziggurat/runs)")
        yield root


__all__ = ["RemoteRecords", "pulled"]
