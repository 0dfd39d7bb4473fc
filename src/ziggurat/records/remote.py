"""The records of an output on object storage: a local state folder, published to the bucket.

Tiles go straight to the bucket (one PUT each, see `io.folder`). Everything else a run keeps
(`metadata.json`, `.ziggurat/` provenance, the STAC item, indexes) is written into the output's
local state folder as for a local output, and published:

- the **ledger** stays SQLite locally, for speed; each of its commits hands its operations to
  `RemoteRecords`, which PUTs them as one segment under ``.ziggurat/ledger/`` every
  `PUBLISH_SECONDS` (and at the end), then compacts: one segment holding the whole ledger replaces
  the others. A run on another machine rebuilds the ledger from the segments (`pull`), so it
  resumes exactly: a constant few requests, not one per tile.
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

log = logging.getLogger(__name__)

#: Not published: local-only state (the ledger travels as segments, caches and temporaries stay).
#: In the state folder: what the last run that finished there published (local only).
SYNCED_FILE = "ledger.synced.json"
_LOCAL_ONLY = (LEDGER_FILE, f"{LEDGER_FILE}-wal", f"{LEDGER_FILE}-shm", "lock", "tmp", "cache", "ledger", SYNCED_FILE)
#: Compaction (the whole ledger rewritten as one segment) once the other segments number this many ...
COMPACT_SEGMENTS = 32
#: ... or weigh this share of the largest
COMPACT_SHARE = 0.25


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
        self._sizes: dict[str, int] = {}         # bytes of each segment (compaction policy)
        self._bucket_files: dict[str, list[Any]] = {}   # other records in the bucket: rel -> [size, etag]
        self._journal = Journal(self.store, self.segments, lambda: self.fence(), self._note_published)

    # -- before a run (and for readers: verify, status, reproduce) -----------------------------
    def check(self, *, write: bool) -> None:
        """One LIST: the bucket exists and the credentials may use it, before any tile runs."""
        self.store.check(write=write)

    def pull(self) -> int:
        """Make the state folder a copy of the bucket's records (the bucket is the truth);
        returns the number of ledger operations replayed. Incremental when the state folder is
        what the last finished run here left (`SYNCED_FILE`) and the bucket still holds every
        segment it had: only newer segments and changed records travel."""
        listing = {rel: (size, etag) for rel, size, etag in self.store.list_objects(self.prefix)}
        segments = sorted(rel for rel in listing if rel.startswith(self.segments + "/"))
        synced = self._synced()
        if synced is None or not set(synced["segments"]) <= set(segments):
            synced = {"segments": [], "files": {}, "dirty": None}
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
        replayed = 0
        done = set(synced["segments"])
        with Ledger(self.root) as ledger:
            for rel in segments:
                if rel in done:
                    continue
                with fetched(self.store, rel) as ops:   # streamed: any ledger size, little memory
                    if ops is not None:                 # (None: compacted away meanwhile)
                        replayed += ledger.apply(ops)
        self._existing = segments
        self._unpublished = synced["dirty"]   # a run killed here: its local rows are kept, published at attach
        self._sizes = {rel: listing[rel][0] for rel in segments}
        self._bucket_files = {rel: list(v) for rel, v in listing.items() if not rel.startswith(self.segments + "/")}
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
                "dirty": got.get("dirty")}

    def _write_synced(self, dirty: str | None = None) -> None:
        """`dirty`: the run now recording here; if it is killed, the next run here publishes the rows
        it committed locally but had not published yet (its tiles are in the bucket already)."""
        data = {"url": self.store.url(""), "segments": sorted(self._existing + self._published),
                "files": self._bucket_files, "dirty": dirty}
        write_bytes_atomic(self.folder / SYNCED_FILE, json.dumps(data).encode())

    # -- during a run ----------------------------------------------------------------------------
    def attach(self, ledger: Ledger, *, resync: bool = False, run: str | None = None) -> None:
        """Publish `ledger`'s commits from now on; `resync`: it changed since `pull` (a replaced
        pyramid, an --overwrite begun), so the first segment carries all of it. Rows a run killed
        here had committed but not published are published first: its tiles are not redone."""
        if self._unpublished and not resync:
            key = f"{self.segments}/{time.time_ns():020d}-{HOST}-{os.getpid()}-recovered{SUFFIX}"
            publish_stream(self.store, key, ledger.run_ops(self._unpublished))
            self._published.append(key)
            self._sizes[key] = 1
        self._unpublished = None
        self._write_synced(dirty=run or "unknown")   # the local ledger now runs ahead of the bucket
        ledger.on_commit = self._journal.on_commit
        if resync:   # the whole ledger, streamed into one segment
            key = f"{self.segments}/{time.time_ns():020d}-{HOST}-{os.getpid()}-resync{SUFFIX}"
            publish_stream(self.store, key, ledger.snapshot_ops())
            self._published.append(key)
            self._sizes[key] = self._base_size() or 1

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

    def _base_size(self) -> int:
        return max((self._sizes.get(rel, 0) for rel in self._existing + self._published), default=0)

    def _deltas_grown(self) -> bool:
        """Compaction rewrites the whole ledger: only once the segments besides the largest are
        many (COMPACT_SEGMENTS) or weigh COMPACT_SHARE of it; a one-tile rerun adds one small one."""
        keys = self._existing + self._published
        if len(keys) <= 1:
            return False
        deltas = sum(self._sizes.get(rel, 0) for rel in keys) - self._base_size()
        return len(keys) - 1 >= COMPACT_SEGMENTS or deltas >= COMPACT_SHARE * self._base_size()

    def compact(self) -> None:
        """One segment with the whole ledger replaces the others (written first, so a crash in
        between leaves a ledger that replays to the same state)."""
        key = f"{self.segments}/{time.time_ns():020d}-{HOST}-{os.getpid()}-compacted{SUFFIX}"
        with Ledger(self.root, create=False) as ledger:   # streamed: cursor -> gzip -> multipart upload
            publish_stream(self.store, key, ledger.snapshot_ops())
        self.store.delete_many(self._existing + self._published)
        self._existing, self._published = [key], []
        self._sizes = {key: self._sizes.get(key, 0) or 1}


@contextmanager
def pulled(url: str, storage_options: Mapping[str, Any] | None = None, *, must_exist: bool = True) -> Iterator[Path]:
    """A private local copy of a remote output's records (for verify, status, reproduce: readers
    never touch the state folder a run may be using); removed afterwards."""
    location = Location.parse(url)
    if not location.is_object_store:
        raise OutputError(f"{url}: expected a local path or an object store URL (s3://, gs://, az://)")
    with tempfile.TemporaryDirectory(prefix="ziggurat-records-") as tmp:
        root = Path(tmp) / location.name
        records = RemoteRecords(location, storage_options, root)
        records.check(write=False)
        records.pull()
        if must_exist and not (root / "metadata.json").is_file() and not provenance_dir(root).joinpath("runs").is_dir():
            # (a single file's records: OUT.tif.ziggurat/runs)
            raise OutputError(f"{url}: no ziggurat output there (no metadata.json, no .ziggurat/runs)")
        yield root


__all__ = ["RemoteRecords", "pulled"]
