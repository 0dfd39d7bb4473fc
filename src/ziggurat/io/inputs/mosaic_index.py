"""The member files of a mosaic input and their footprints, read once and cached.

Sources expand to member files in priority order (a glob sorted by path, a vector index in its
feature order). Each member's header (CRS, bounds, bands, dtype, nodata) is read once, in
parallel, and kept in a JSON cache (``<output>/.ziggurat/cache/mosaic-<input>-<hash>.json``)
keyed by the file's size and modification time, so a rerun over 25,000 files stats them instead
of opening them; members of a vector index take their footprint from the index itself and are
opened only when a tile reads them.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

from ziggurat.core.bounds import Bounds
from ziggurat.core.errors import InputError
from ziggurat.core.location import Location, gdal_path, is_url
from ziggurat.io.storage.atomic import write_json_atomic
from ziggurat.io.storage.store import open_store
from ziggurat.recipe.mosaic import is_glob

log = logging.getLogger(__name__)
CACHE_VERSION = 2
_HEADER_THREADS = 16



class Member(NamedTuple):
    """One file of a mosaic: `source` is the recipe entry it came from (its priority group)."""

    path: str
    source: int
    size: int
    mtime: int
    bounds: tuple[float, float, float, float] | None   # in `crs`
    crs: str | None                                     # WKT
    bands: int | None = None                            # None: not opened yet (vector index)
    dtype: str | None = None
    nodata: float | None = None
    sha256: str | None = None                           # filled in when fingerprinted

    @property
    def version(self) -> str:
        """What identifies this content: its hash when known, else size and time."""
        return self.sha256 or f"{self.size}:{self.mtime}"


#: Headers this process has read (path -> member): planning and fingerprinting one run read
#: each header once even before the cache file exists.
_SEEN: dict[str, Member] = {}


#: url -> (size, ETag) of objects seen in a bucket listing (a glob's expansion): no HEAD per member.
_REMOTE: dict[str, tuple[int, str | None]] = {}


def _stat(path: str) -> tuple[int, int]:
    """(size, version): a local file's mtime; an object's ETag folded into an integer."""
    if is_url(path):
        seen = _REMOTE.get(path)
        if seen is None:
            loc = Location.parse(path)
            if not loc.is_object_store:  # HTTP: no version to compare; the size alone
                return 0, 0
            meta = open_store(loc.parent).stat(loc.name)
            if meta is None:
                raise FileNotFoundError(path)
            seen = (meta["size"], meta["etag"])  # asked each time: a replaced object must show
        return seen[0], int(hashlib.sha256(str(seen[1]).encode()).hexdigest()[:15], 16)
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _remote_glob(pattern: str) -> list[str]:
    """The objects of a bucket matching a glob (one listing of the part before the first wildcard)."""
    loc = Location.parse(pattern)
    if not loc.is_object_store:
        raise InputError(f"mosaic source {pattern!r}: a glob needs a listable location (a local folder or "
                         "s3://, gs://, az://), not HTTP; list the files or give an index")
    fixed = re.split(r"[*?\[]", loc.key, maxsplit=1)[0]
    prefix = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
    base = Location(loc.scheme, loc.bucket, prefix)
    out = []
    for rel, size, etag in open_store(base).list_objects(""):
        key = f"{prefix}/{rel}" if prefix else rel
        if fnmatch.fnmatchcase(key, loc.key):
            url = Location(loc.scheme, loc.bucket, key).url
            out.append(url)
            _REMOTE[url] = (size, etag)
    return sorted(out)


def _header(path: str, source: int) -> Member:
    import rasterio

    size, mtime = _stat(path)
    try:  # no directory listing per open: with 25,000 files in a folder it costs 2/3 of the time
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(gdal_path(path)) as src:
            if src.crs is None:
                raise InputError(f"mosaic member {path} has no CRS")
            b = src.bounds
            return Member(path, source, size, mtime, (min(b.left, b.right), min(b.bottom, b.top),
                                                      max(b.left, b.right), max(b.bottom, b.top)),
                          src.crs.to_wkt(), src.count, src.dtypes[0], src.nodata)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"mosaic member {path} cannot be read: {exc}") from exc


def _from_vector_index(path: str, location: str, source: int) -> list[Member]:
    """Members listed by a vector index: file paths in `location`, footprints from geometries."""
    import fiona
    import shapely.geometry

    folder = Path(path).parent
    out = []
    try:
        with fiona.open(path) as layer:
            crs = layer.crs_wkt or None
            for n, feature in enumerate(layer):
                where = feature["properties"].get(location)
                if not where:
                    raise InputError(f"mosaic index {path}: feature {n} has no {location!r} field value "
                                     f"(fields: {', '.join(feature['properties'])})")
                member = str(where) if os.path.isabs(str(where)) or "://" in str(where) \
                    else os.path.abspath(folder / str(where))
                geom = shapely.geometry.shape(feature["geometry"])
                try:
                    size, mtime = _stat(member)
                except OSError as exc:
                    raise InputError(f"mosaic index {path}: member {member} cannot be read: {exc}") from exc
                out.append(Member(member, source, size, mtime, tuple(geom.bounds), crs))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"mosaic index {path} cannot be read: {exc}") from exc
    return out


def expand(sources: Iterable[Mapping[str, Any]]) -> list[tuple[int, str, Mapping[str, Any]]]:
    """(source number, path, source spec) per member file or index, in priority order."""
    out = []
    for number, spec in enumerate(sources):
        path = str(spec["path"])
        if is_glob(path):
            paths = _remote_glob(path) if is_url(path) else sorted(glob.glob(path, recursive=True))
        else:
            paths = [path]
        if not paths:
            raise InputError(f"mosaic source {path!r} matches no file")
        out += [(number, p, spec) for p in paths]
    return out


class MosaicIndex:
    """The members of one mosaic input, in priority order (first source first)."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members

    @classmethod
    def build(cls, name: str, sources: Iterable[Mapping[str, Any]], cache_dir: str | None) -> MosaicIndex:
        sources = list(sources)
        cache = _cache_path(cache_dir, name, sources)
        known = _load_cache(cache)
        members: list[Member] = []
        todo: list[tuple[int, int, str]] = []      # (slot, source, path) headers to read
        for number, path, spec in expand(sources):
            if "location" in spec:                  # a vector index: footprints from the index
                members += _from_vector_index(path, str(spec["location"]), number)
                continue
            try:
                size, mtime = _stat(path)
            except OSError as exc:
                raise InputError(f"mosaic member {path} cannot be read: {exc}") from exc
            hit = known.get(path) or _SEEN.get(path)
            if hit is not None and hit.size == size and hit.mtime == mtime and hit.bands is not None:
                members.append(hit if hit.source == number else hit._replace(source=number))
            else:
                todo.append((len(members), number, path))
                members.append(Member(path, number, size, mtime, None, None))
        if todo:
            with ThreadPoolExecutor(min(_HEADER_THREADS, len(todo))) as pool:
                for (slot, _, _), member in zip(todo, pool.map(lambda t: _header(t[2], t[1]), todo)):
                    members[slot] = member
            log.info("mosaic %r: read %d of %d member headers", name, len(todo), len(members))
        index = cls(members)
        index.cache = cache
        _SEEN.update((m.path, m) for m in members if m.bands is not None)
        if cache is not None and (todo or not cache.is_file()):
            index.save(cache)
        else:
            index.saved = True  # the cache file holds these members already
        return index

    saved = False

    cache: Path | None = None

    def save(self, path: Path | None = None) -> None:
        _SEEN.update((m.path, m) for m in self.members if m.bands is not None)
        path = path or self.cache
        if path is None:
            return
        self.saved = True
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, {"version": CACHE_VERSION, "members": [m._asdict() for m in self.members]})
        except OSError as exc:  # a cache: a run without it is only slower
            log.warning("cannot write the mosaic index cache %s: %s", path, exc)


def _cache_path(cache_dir: str | None, name: str, sources: list[Mapping[str, Any]]) -> Path | None:
    if cache_dir is None:
        return None
    digest = hashlib.sha256(json.dumps([dict(s) for s in sources], sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"mosaic-{name}-{digest}.json"


def _load_cache(path: Path | None) -> dict[str, Member]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("version") != CACHE_VERSION:
            return {}
        members = [Member(**{**m, "bounds": tuple(m["bounds"]) if m["bounds"] else None})
                   for m in data["members"]]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring the unreadable mosaic index cache %s: %s", path, exc)
        return {}
    return {m.path: m for m in members}


def member_bounds(member: Member) -> Bounds | None:
    return None if member.bounds is None else Bounds(*member.bounds)


__all__ = ["CACHE_VERSION", "Member", "MosaicIndex", "expand", "member_bounds"]
