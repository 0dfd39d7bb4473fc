"""Where data lives: one value type for local paths, object-store URLs and GDAL virtual paths.

`pathlib` collapses ``s3://b/k`` to ``s3:/b/k`` and turns ``/vsis3/b/k`` into a local folder at the
file-system root, so no URL ever goes through it. A `Location` keeps the text the user gave and
knows three spellings of it: the URL (``s3://bucket/key``, what provenance records), the GDAL
path rasterio and fiona open (``/vsis3/bucket/key``, ``/vsicurl/https://...``), and for local
paths the `Path`.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

#: URL scheme -> GDAL virtual file system prefix (GDAL's names for the same stores).
_VSI = {"s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/", "azure": "/vsiaz/", "abfs": "/vsiaz/"}
_VSI_SCHEMES = {v: k for k, v in _VSI.items() if k != "azure" and k != "abfs"}
#: Schemes with buckets (object stores ziggurat can also write to).
OBJECT_SCHEMES = ("s3", "gs", "az")
HTTP_SCHEMES = ("http", "https")


def is_url(text: str) -> bool:
    """A URL or GDAL virtual path: never normalised by pathlib (``//`` matters)."""
    return text.startswith("/vsi") or "://" in text


@dataclass(frozen=True)
class Location:
    """A storage location: `scheme` ("file", "s3", "gs", "az", "http", "https" or "vsi" for a GDAL
    path with no URL form), `bucket` (host for HTTP), `key` (no leading or trailing slash)."""

    scheme: str
    bucket: str
    key: str
    #: the query string of an HTTP URL (signed URLs), kept verbatim
    query: str = ""

    @classmethod
    def parse(cls, text: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> "Location":
        """Parse a path or URL; a relative local path is taken relative to `base` (default: cwd)."""
        raw = os.fspath(text)
        if raw.startswith("/vsi"):
            prefix = raw[: raw.index("/", 1) + 1]
            rest = raw[len(prefix):]
            if prefix == "/vsicurl/" and "://" in rest:
                return cls.parse(rest)
            scheme = _VSI_SCHEMES.get(prefix)
            if scheme is None:  # /vsizip/, /vsimem/ ...: GDAL's own, used as given
                return cls("vsi", "", raw)
            bucket, _, key = rest.partition("/")
            return cls(scheme, bucket, key.strip("/"))
        if "://" in raw:
            parts = urlsplit(raw)
            scheme = {"azure": "az", "abfs": "az", "gcs": "gs"}.get(parts.scheme.lower(), parts.scheme.lower())
            if scheme == "file":
                return cls("file", "", os.path.abspath(parts.path))
            if scheme not in OBJECT_SCHEMES + HTTP_SCHEMES:
                raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {raw!r} (expected a local path, "
                                 "s3://, gs://, az://, http(s):// or a GDAL /vsi.../ path)")
            if not parts.netloc:
                raise ValueError(f"{raw!r} names no bucket or host")
            return cls(scheme, parts.netloc, parts.path.strip("/"), parts.query)
        path = os.path.expanduser(raw)
        if base is not None and not os.path.isabs(path):
            path = os.path.join(os.fspath(base), path)
        return cls("file", "", os.path.abspath(path))

    # -- what it is ---------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def is_object_store(self) -> bool:
        """A bucket ziggurat can list, read and write through an object-store client."""
        return self.scheme in OBJECT_SCHEMES

    @property
    def is_http(self) -> bool:
        return self.scheme in HTTP_SCHEMES

    # -- spellings ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """What the user writes and provenance records (a local path as a plain path)."""
        if self.scheme in ("file", "vsi"):
            return self.key
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.bucket}/{self.key}{query}" if self.key else f"{self.scheme}://{self.bucket}"

    @property
    def gdal(self) -> str:
        """The path GDAL (rasterio, fiona) opens."""
        if self.scheme in ("file", "vsi"):
            return self.key
        if self.is_http:
            return f"/vsicurl/{self.url}"
        return f"{_VSI[self.scheme]}{self.bucket}/{self.key}"

    @property
    def path(self) -> Path:
        """The local path; only for local locations."""
        if not self.is_local:
            raise ValueError(f"{self.url} is not a local path")
        return Path(self.key)

    @property
    def name(self) -> str:
        return posixpath.basename(self.key.rstrip("/")) or self.bucket

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    def join(self, *parts: str) -> "Location":
        """A location below this one (``/``-separated parts)."""
        extra = "/".join(p.strip("/") for p in parts if p.strip("/"))
        if self.is_local:
            return Location("file", "", os.path.join(self.key, *extra.split("/")) if extra else self.key)
        key = f"{self.key}/{extra}" if self.key and extra else (self.key or extra)
        return Location(self.scheme, self.bucket, key, "" if extra else self.query)

    @property
    def parent(self) -> "Location":
        if self.is_local:
            return Location("file", "", os.path.dirname(self.key))
        return Location(self.scheme, self.bucket, posixpath.dirname(self.key))

    def with_name(self, name: str) -> "Location":
        return self.parent.join(name)

    def relative(self, other: "Location") -> str:
        """`other`'s key relative to this location (``/`` separated); ValueError if not below."""
        if (other.scheme, other.bucket) != (self.scheme, self.bucket):
            raise ValueError(f"{other.url} is not below {self.url}")
        if self.is_local:
            rel = os.path.relpath(other.key, self.key)
            if rel.startswith(".."):
                raise ValueError(f"{other.url} is not below {self.url}")
            return Path(rel).as_posix()
        prefix = self.key + "/" if self.key else ""
        if not other.key.startswith(prefix):
            raise ValueError(f"{other.url} is not below {self.url}")
        return other.key[len(prefix):]

    def __str__(self) -> str:
        return self.url


def gdal_path(text: str | os.PathLike[str]) -> str:
    """What GDAL opens for a path or URL the user gave (``s3://b/k`` -> ``/vsis3/b/k``)."""
    raw = os.fspath(text)
    return Location.parse(raw).gdal if is_url(raw) else raw


__all__ = ["HTTP_SCHEMES", "OBJECT_SCHEMES", "Location", "gdal_path", "is_url"]
