"""SHA-256 of files and fingerprints of inputs, for provenance and `ziggurat verify`.

A leaf module (no ziggurat imports) so the worker side (`job.py`) can hash a tile right
after writing it, while its bytes are still in the page cache.

Input fingerprints (recorded in the run manifest, compared by `ziggurat reproduce`):

- a file up to `FULL_HASH_LIMIT` (1 GiB): ``{"kind": "sha256", "size", "sha256"}`` of the
  whole file;
- a larger file: ``{"kind": "partial-sha256", "size", "mtime", "sha256"}`` where the hash
  covers only the first and the last `PARTIAL_HASH_BYTES` (16 MiB) -- a cheaper fingerprint
  that can miss a change in the middle of an unchanged-size file (mtime is kept as a hint);
- a tile directory (has ``metadata.json``): ``{"kind": "tiledir", "files", "size", "sha256"}``
  where the hash covers the bytes of metadata.json and then one line ``relative/path<TAB>size``
  per file, sorted by path; hidden entries (``.ziggurat/``, ``.tmp-*``) are left out. Tiles
  are not read, so a tile rewritten with the same size is not noticed;
- another directory: the same listing hash without metadata.json (``"kind": "directory"``);
- a remote path (``/vsi...``, ``scheme://``): ``{"kind": "remote"}``, not hashed.

A run keeps each file input's fingerprint with the file's stat in the output's cache folder
(`remembered`): the next run hashes it again only when its size, modification time, inode or
change time differ (the change time cannot be set back by hand, so an edit is never missed; git
trusts its index the same way). `ziggurat reproduce` always hashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

log = logging.getLogger(__name__)

FULL_HASH_LIMIT = 1 << 30          #: files above this size get the partial fingerprint
PARTIAL_HASH_BYTES = 16 << 20      #: bytes hashed at each end of a large file
_CHUNK = 1 << 20                   #: read size for files that are not read in one go
_WHOLE = 4 << 20                   #: files up to this size are read with one call

_cache: dict[tuple[str, int, int, int, int], dict[str, Any]] = {}
_cache_lock = threading.Lock()


def sha256_and_size(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Hex SHA-256 and byte count of a file: small files in one read, others in 1 MiB chunks.

    Reading and hashing release the GIL (hashlib does for buffers over 2 KiB), so threads
    hash files in parallel.
    """
    with open(path, "rb", buffering=0) as f:
        if os.fstat(f.fileno()).st_size <= _WHOLE:
            data = f.read()  # to EOF in one call
            return hashlib.sha256(data).hexdigest(), len(data)
        digest, total = hashlib.sha256(), 0
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            digest.update(view[:n])
            total += n
        return digest.hexdigest(), total


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file."""
    return sha256_and_size(path)[0]


def sha256_or_none(path: str | os.PathLike[str]) -> str | None:
    """The file's SHA-256, or None when it does not exist."""
    try:
        return sha256_file(path)
    except FileNotFoundError:
        return None


def hash_many(paths: Iterable[Any], workers: int | None = None,
              batch: int = 64, hasher: Callable[[Any], Any] = sha256_or_none
              ) -> Iterator[tuple[Any, Any]]:
    """(path, sha256 or None if missing) for every path, in order, hashed by a thread pool.

    hashlib and file reads release the GIL, so threads scale; paths go out in batches with
    a bounded number in flight so a million tiles do not become a million futures.
    """
    workers = workers or min(32, 2 * (os.cpu_count() or 1))

    def run(chunk: Sequence[Any]) -> list[tuple[Any, Any]]:
        return [(p, hasher(p)) for p in chunk]

    it = iter(paths)
    batches = iter(lambda: list(islice(it, batch)), [])
    with ThreadPoolExecutor(workers, thread_name_prefix="ziggurat-hash") as pool:
        window = [pool.submit(run, b) for b in islice(batches, 2 * workers)]
        while window:
            done = window.pop(0).result()
            window.extend(pool.submit(run, b) for b in islice(batches, 1))
            yield from done


def _partial_sha256(path: Path, size: int, part: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(part))
        f.seek(max(part, size - part))
        digest.update(f.read(part))
    return digest.hexdigest()


#: what a tile file is named: {zoom}/{int}/{int}.{tile extension} (either layout)
_TILE_FILE = re.compile(r"\d+/\d+/\d+\.(tif|png|geojson|fgb)")


def _listing_fingerprint(root: Path, kind: str) -> dict[str, Any]:
    """Names and sizes of the files; of a tile directory only its tiles and metadata.json, so an
    index, a VRT or a STAC item written beside them later leaves its fingerprint unchanged."""
    digest = hashlib.sha256()
    meta = root / "metadata.json"
    if kind == "tiledir":
        digest.update(meta.read_bytes())
    entries: list[tuple[str, int]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            if kind == "tiledir" and not _TILE_FILE.fullmatch(
                    Path(os.path.relpath(os.path.join(folder, name), root)).as_posix()):
                continue
            full = os.path.join(folder, name)
            entries.append((Path(os.path.relpath(full, root)).as_posix(), os.stat(full).st_size))
    entries.sort()
    for rel, size in entries:
        digest.update(f"{rel}\t{size}\n".encode())
    return {"kind": kind, "files": len(entries), "size": sum(s for _, s in entries),
            "sha256": digest.hexdigest()}


def fingerprint_input(path: str | os.PathLike[str], *, full_limit: int = FULL_HASH_LIMIT,
                      partial_bytes: int = PARTIAL_HASH_BYTES) -> dict[str, Any]:
    """A fingerprint of an input (rules in the module docstring); cached per process by
    (path, size, mtime, inode) so a reproduce check and the run it starts hash once."""
    text = os.fspath(path)
    if text.startswith("/vsi") or "://" in text:
        return {"kind": "remote"}
    p = Path(text)
    if p.is_dir():
        return _listing_fingerprint(p, "tiledir" if (p / "metadata.json").is_file() else "directory")
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, full_limit)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return dict(cached)
    if st.st_size <= full_limit:
        out: dict[str, Any] = {"kind": "sha256", "size": st.st_size, "sha256": sha256_file(p)}
    else:
        out = {"kind": "partial-sha256", "size": st.st_size, "mtime": st.st_mtime_ns,
               "head_tail_bytes": partial_bytes,
               "sha256": _partial_sha256(p, st.st_size, partial_bytes)}
    with _cache_lock:
        _cache[key] = dict(out)
    return out


def fingerprint_config(config: Any) -> dict[str, Any]:
    """An input's fingerprint from its config: that of its path (most drivers); an object in a
    bucket by its size and ETag (one HEAD), so a replaced remote file makes its tiles stale."""
    text = os.fspath(config.path)
    if "://" in text or text.startswith("/vsi"):
        from ziggurat.core.location import Location
        from ziggurat.io.storage.store import open_store

        try:
            loc = Location.parse(text)
        except ValueError:
            return {"kind": "remote"}
        if loc.is_object_store and loc.suffix:  # one object (a tile directory is a prefix)
            meta = open_store(loc.parent, config.storage_options).stat(loc.name)
            if meta is not None:
                return {"kind": "remote", "size": meta["size"], "etag": meta["etag"]}
        return {"kind": "remote"}
    cache = getattr(config, "cache_dir", None)
    return remembered(config.path, cache) if cache else fingerprint_input(config.path)


#: file inputs remembered per output (the oldest are forgotten beyond it)
REMEMBERED = 256


def remembered(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """`fingerprint_input(path)`, taken from `cache_dir/fingerprints.json` while the file's stat
    is the one it was hashed with (see the module docstring); directories are always listed."""
    p = Path(path)
    if not p.is_file():
        return fingerprint_input(path)
    st = p.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, FULL_HASH_LIMIT]
    book = Path(cache_dir) / "fingerprints.json"
    try:
        known = json.loads(book.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    key = str(p.resolve())
    entry = known.get(key)
    if isinstance(entry, dict) and entry.get("stat") == stamp and isinstance(entry.get("fingerprint"), dict):
        return dict(entry["fingerprint"])
    out = fingerprint_input(path)
    known.pop(key, None)
    known[key] = {"stat": stamp, "fingerprint": out}
    tmp = book.with_name(f".{book.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        book.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(dict(list(known.items())[-REMEMBERED:])))
        os.replace(tmp, book)
    except OSError as exc:   # a read-only state folder: the run says so itself; hash again next time
        log.debug("cannot remember the fingerprint of %s in %s: %s", path, book, exc)
        tmp.unlink(missing_ok=True)
    return out


def compare_fingerprints(recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why two fingerprints of the same input differ, or None when they match."""
    if recorded.get("kind") == "remote" or current.get("kind") == "remote":
        if recorded.get("etag") and current.get("etag") and recorded["etag"] != current["etag"]:
            return f"ETag {recorded['etag']} recorded, {current['etag']} now"
        return None  # not hashed: nothing else to compare
    if recorded.get("kind") != current.get("kind"):
        return f"fingerprint kind {recorded.get('kind')} recorded, {current.get('kind')} now"
    for key in ("size", "files", "sha256"):
        if key in recorded and recorded.get(key) != current.get(key):
            return f"{key} {recorded.get(key)} recorded, {current.get(key)} now"
    if recorded.get("kind") == "partial-sha256" and recorded.get("mtime") != current.get("mtime"):
        return ("modification time changed (size and first/last bytes match; the cheap "
                "fingerprint of a large file cannot tell whether the middle changed)")
    return None


__all__ = ["FULL_HASH_LIMIT", "PARTIAL_HASH_BYTES", "REMEMBERED", "compare_fingerprints", "fingerprint_input",
           "hash_many", "remembered", "sha256_and_size", "sha256_file", "sha256_or_none"]
