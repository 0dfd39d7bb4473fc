"""`verify`, `status` and `reproduce` of an output on object storage.

Each pulls a private copy of the bucket's records (`records.remote.pulled`: the ledger rebuilt
from its segments, the manifests, the saved recipes) and then works as on a local output;
`verify` hashes the objects themselves (one GET each, in threads) and lists the bucket once to
find objects no record expects.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

from ziggurat.audit.reproduce import ReproduceResult, VerifyResult, reproduce_local
from ziggurat.audit.status import StatusReport, status_local
from ziggurat.core.errors import ProvenanceError
from ziggurat.core.formats import Storage, records_beside
from ziggurat.core.location import Location
from ziggurat.io.outputs.stored import METADATA_FILE, is_chunk_object, stored_from_metadata
from ziggurat.io.storage.store import open_store
from ziggurat.records.remote import pulled
from ziggurat.records.tile_records import has_tile_records, read_tile_records


def verify_remote(url: str, *, workers: int | None = None, zooms: Iterable[int] | None = None) -> VerifyResult:
    start = time.perf_counter()
    location = Location.parse(url)
    single = records_beside(location.name)  # one COG: the record is its name beside the records
    store = open_store(location.parent if single else location)
    wanted = None if zooms is None else set(zooms)
    want = None if wanted is None else (lambda shard: shard[0] in wanted)
    with pulled(url, want=want) as root:   # with zooms: only their ledger shards
        if not has_tile_records(root):
            raise ProvenanceError(f"{url}: no tile checksums recorded (no ledger under .ziggurat/ledger/)")
        records = read_tile_records(root, wanted)
    result = VerifyResult(Path(location.name), problems=[])
    result.output = url  # type: ignore[assignment]  # shown as given
    expected = {path: rec for path, rec in records.items() if rec.sha256 is not None}
    for rec in expected.values():
        result.by_run[str(rec.run)] = result.by_run.get(str(rec.run), 0) + 1

    def fetch(path: str) -> tuple[str, bytes | None]:
        return path, store.get(path)

    with ThreadPoolExecutor(max_workers=workers or min(32, 4 * (os.cpu_count() or 1))) as pool:
        for path, data in pool.map(fetch, sorted(expected)):
            record = expected[path]
            if data is None:
                result.missing.append(record)
                continue
            result.bytes_hashed += len(data)
            sha = hashlib.sha256(data).hexdigest()
            if sha == record.sha256:
                result.identical += 1
            else:
                result.changed.append((record, sha))
    if not single:
        prefixes = [""] if wanted is None else [f"{z}/" for z in sorted(wanted)]
        stored = _stored_kind(store, location.name)
        tiles = {rel for prefix in prefixes for rel, _ in store.list_all(prefix)
                 if (is_chunk_object(rel) if stored is Storage.STORE else rel.split("/", 1)[0].isdigit())}
        result.extra = sorted(tiles - set(expected))
    result.seconds = time.perf_counter() - start
    return result


def _stored_kind(store: Any, name: str) -> Storage:
    """How the bucket's output is stored (its metadata.json): a store's objects besides its chunks
    (groups, array documents, coordinates) are no stored tiles."""
    raw = store.get(METADATA_FILE)
    try:
        return stored_from_metadata(Path(name), json.loads(raw)).storage if raw is not None else Storage.TILES
    except (KeyError, TypeError, ValueError):
        return Storage.TILES


def status_remote(url: str) -> StatusReport:
    with pulled(url) as root:
        report = status_local(root)
    report.output = url  # type: ignore[assignment]
    return report


def reproduce_remote(url: str, to: str | os.PathLike[str] | None = None, selection: Any = None,
                     **options: Any) -> ReproduceResult:
    """Into `to`, by default a new local folder ``<name>.reproduced-<UTC time>`` here."""
    location = Location.parse(url)
    if to is None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        to = Path.cwd() / f"{location.name}.reproduced-{stamp}"
    with pulled(url) as root:
        result = reproduce_local(root, to, selection, **options)
    result.source = url  # type: ignore[assignment]
    return result


__all__ = ["reproduce_remote", "status_remote", "verify_remote"]
