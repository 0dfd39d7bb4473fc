"""Files of a remote folder read whole (a tile directory input's metadata and tiles).

An object store is read through `io.store` (counted, retried, listable); HTTP(S) through the
standard library with retries (no listing: a tile that is not there answers 404).
"""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from typing import Any, Mapping

from ziggurat.core.errors import InputError
from ziggurat.core.location import Location
from ziggurat.io.storage.store import STATS, open_store

HTTP_ATTEMPTS = 5


class RemoteFolder:
    """A folder at an object-store or HTTP(S) location; picklable."""

    def __init__(self, location: Location, storage_options: Mapping[str, Any] | None = None) -> None:
        self.location = location
        self.store = open_store(location, storage_options) if location.is_object_store else None
        if self.store is None and not location.is_http:
            raise InputError(f"{location.url}: expected an s3://, gs://, az:// or http(s):// folder")

    @property
    def listable(self) -> bool:
        return self.store is not None

    def url(self, rel: str) -> str:
        return self.location.join(rel).url

    def get(self, rel: str) -> bytes | None:
        """The file's bytes, None when there is none (404)."""
        if self.store is not None:
            return self.store.get(rel)
        url = self.url(rel)
        name = f"{self.location.scheme}://{self.location.bucket}"
        delay = 0.1
        for attempt in range(HTTP_ATTEMPTS):
            STATS.add(name, "GET")
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:
                    data: bytes = resp.read()
                STATS.add(name, "bytes_in", len(data))
                return data
            except urllib.error.HTTPError as exc:
                if exc.code in (404, 410):
                    return None
                if exc.code < 500 and exc.code != 429 or attempt + 1 == HTTP_ATTEMPTS:
                    raise InputError(f"cannot read {url}: HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, OSError) as exc:
                if attempt + 1 == HTTP_ATTEMPTS:
                    raise InputError(f"cannot read {url}: {getattr(exc, 'reason', exc)}") from exc
            STATS.add(name, "retries")
            time.sleep(random.uniform(0, delay))
            delay *= 2
        raise AssertionError("unreachable")

    def files(self) -> dict[str, str | None] | None:
        """Relative path -> ETag of every file below (one LIST per 1,000); None over HTTP."""
        if self.store is None:
            return None
        return {rel: etag for rel, _, etag in self.store.list_objects("")}


__all__ = ["RemoteFolder"]
