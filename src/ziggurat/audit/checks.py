"""The questions users ask of an output, local or on a bucket: `verify`, `reproduce`, `status`.

A URL is answered from a pulled copy of the bucket's records (`remote_checks`), a path locally.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from ziggurat.audit.remote_checks import reproduce_remote, status_remote, verify_remote
from ziggurat.audit.reproduce import ReproduceResult, VerifyResult, reproduce_local, verify_local
from ziggurat.audit.status import StatusReport, status_local
from ziggurat.core.location import is_url
from ziggurat.engine.summary import ProgressCallback
from ziggurat.plan import Selection


def verify(output: str | os.PathLike[str], *, workers: int | None = None,
           zooms: Iterable[int] | None = None) -> VerifyResult:
    """Check every tile (of `zooms`) against the recorded checksums (hashing with `workers`
    threads); on a bucket, its records are pulled (only the zooms' ledger shards) and its objects
    fetched."""
    if is_url(os.fspath(output)):
        return verify_remote(os.fspath(output), workers=workers, zooms=zooms)
    return verify_local(output, workers=workers, zooms=zooms)


def reproduce(output: str | os.PathLike[str], to: str | os.PathLike[str] | None = None,
              selection: Selection | None = None, *, executor: str | None = None, workers: int | None = None,
              progress: ProgressCallback | None = None, **narrowing: Any) -> ReproduceResult:
    """Rerun OUTPUT from its saved recipe and process source into `to` and compare the tiles
    (see `reproduce_local`)."""
    sel = Selection.of(selection, **narrowing)
    if is_url(os.fspath(output)):
        return reproduce_remote(os.fspath(output), to, sel, executor=executor, workers=workers, progress=progress)
    return reproduce_local(output, to, sel, executor=executor, workers=workers, progress=progress)


def status(output: str | os.PathLike[str]) -> StatusReport:
    """The ledger's counts per zoom; stale against the latest run's saved recipe."""
    if is_url(os.fspath(output)):
        return status_remote(os.fspath(output))
    return status_local(output)


__all__ = ["ReproduceResult", "StatusReport", "VerifyResult", "reproduce", "status", "verify"]
