"""One run at a time per remote output, fenced: a lock a paused writer lost stops it publishing.

The lock is ``.ziggurat/lock`` in the bucket (a `--part`'s: ``.ziggurat/parts/I-of-N/lock``),
created with a conditional PUT (``If-None-Match: *``) and holding its holder's PID, host and an
expiry, renewed every third of `LOCK_SECONDS` by a thread of the run, each renewal conditional on
the ETag of the last (``If-Match``). A lock whose holder is gone (its PID on this host, or
expired) is taken over. A run that was paused past the expiry (a VM pause, SIGSTOP, a long GC)
finds on waking that its renewal is refused or its ETag is no longer the object's: the lock is
*lost*, and `fence()` (asked before every publication of the run's records, and at its end)
stops the run with one clear error instead of overwriting the new holder's records.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from typing import Any

from ziggurat.core.errors import OutputError
from ziggurat.core.formats import Storage
from ziggurat.io.storage.atomic import HOST, pid_alive
from ziggurat.io.storage.store import AlreadyExists, open_store
from ziggurat.recipe import OutputConfig
from ziggurat.records.ledger import FOLDER, provenance_dir

log = logging.getLogger(__name__)


def lock_seconds() -> float:
    """How long a remote lock lives unless renewed: $ZIGGURAT_LOCK_SECONDS, else 90 s."""
    try:
        return max(1.0, float(os.environ.get("ZIGGURAT_LOCK_SECONDS", "90")))
    except ValueError:
        return 90.0


class RemoteLock:
    """Held for the length of one run; `release` is safe to call twice."""

    def __init__(self, config: OutputConfig, key: str | None = None, what: str | None = None) -> None:
        """`key`: the lock object instead of the output's (a `--part`'s); `what`: what it guards."""
        assert config.location is not None
        single = config.storage is Storage.FILE
        self.store = open_store(config.location.parent if single else config.location, config.storage_options)
        self.key = key or f"{provenance_dir(config.path).name if single else FOLDER}/lock"
        self.output_url = what or f"output {config.location.url}"
        self.url = self.store.url(self.key)
        self.held = False
        self.seconds = lock_seconds()
        self.lost: str | None = None          # why the lock is no longer ours
        self._etag: str | None = None         # of our last write of the lock object
        self._renewed = 0.0                   # when it last succeeded (monotonic)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = dt.datetime.now(dt.timezone.utc).isoformat()
        #: the run holding it, once it has an id (written into the lock at the next renewal)
        self.run: str | None = None

    def _body(self) -> bytes:
        return json.dumps({"pid": os.getpid(), "host": HOST, "started": self._started, "run": self.run,
                           "expires": time.time() + self.seconds}).encode()

    def acquire(self) -> "RemoteLock":
        for _ in range(3):
            try:
                self._etag = self.store.put(self.key, self._body(), create=True)
            except AlreadyExists as exc:
                other = self._holder()
                if other is not None and not self._stale(other):
                    until = dt.datetime.fromtimestamp(float(other.get("expires", 0)), dt.timezone.utc)
                    raise OutputError(
                        f"{self.output_url} is being written by another run (pid {other.get('pid')} "
                        f"on {other.get('host')}, since {other.get('started')}); wait for it to end (its lock "
                        f"{self.url} expires at {until:%Y-%m-%d %H:%M:%S} UTC unless renewed)") from exc
                log.warning("taking over the lock %s of a run that is gone (%s)", self.url, other)
                self.store.delete(self.key)
                continue
            self.held, self._renewed = True, time.monotonic()
            self._thread = threading.Thread(target=self._renew, name="ziggurat-lock", daemon=True)
            self._thread.start()
            return self
        raise OutputError(f"cannot take the run lock {self.url}: other runs keep taking it")

    def _holder(self) -> dict[str, Any] | None:
        data = self.store.get(self.key)
        if data is None:
            return None
        try:
            got = json.loads(data)
            return got if isinstance(got, dict) else {}
        except ValueError:
            return {}

    def active_holder(self) -> dict[str, Any] | None:
        """Who holds the lock now (pid, host, started), or None when no live run does."""
        other = self._holder()
        return other if other is not None and not self._stale(other) else None

    @staticmethod
    def _stale(holder: dict[str, Any]) -> bool:
        pid, host, expires = holder.get("pid"), holder.get("host"), holder.get("expires")
        if not isinstance(pid, int) or not isinstance(expires, (int, float)):
            return True
        if host == HOST and pid != os.getpid() and not pid_alive(pid):
            return True
        return time.time() > expires

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3) and self.lost is None:
            self._renew_once()

    def _renew_once(self) -> None:
        if time.monotonic() - self._renewed > self.seconds:   # paused, or cut off, past the expiry
            self.lost = self._paused()
            return
        try:
            self._etag = self.store.put(self.key, self._body(), match=self._etag)
            self._renewed = time.monotonic()
        except AlreadyExists:
            self.lost = self._taken_by()
        except OutputError as exc:  # the next renewal may work; the run goes on
            log.warning("cannot renew the run lock %s: %s", self.url, exc)

    def _paused(self) -> str:
        why = f"it was not renewed for {time.monotonic() - self._renewed:.0f} s (the run was paused?)"
        other = self._holder_or_none()
        if (other or {}).get("pid") != os.getpid() or (other or {}).get("host") != HOST:
            why += f"; {self._taken_by(other or {})}"
        return why

    def _holder_or_none(self) -> dict[str, Any] | None:
        try:
            return self._holder()
        except OutputError:
            return None

    def _taken_by(self, other: dict[str, Any] | None = None) -> str:
        """Why the lock is lost, naming the run that holds it now (`other`, read when not given),
        or the one that ran since."""
        other = self._holder_or_none() if other is None else other
        if not other:
            ended = self._newer_run()
            return f"another run took it over ({ended} has run since)" if ended else "another run took it over"
        run = f"run {other['run']}, " if other.get("run") else ""
        return (f"another run took it over at {other.get('started')} ({run}pid {other.get('pid')} "
                f"on {other.get('host')})")

    def _newer_run(self) -> str | None:
        """The newest run record beside the lock, when it began after this run (it held the lock
        meanwhile and has ended)."""
        try:
            runs = f"{self.key.rsplit('/', 1)[0]}/runs"
            names = [rel.rsplit("/", 1)[-1] for rel, _, _ in self.store.list_objects(runs)]
        except OutputError:
            return None
        mine = self._started[:19].replace("-", "").replace(":", "")
        newer = sorted(n.removesuffix(".json") for n in names
                       if n.endswith(".json") and n[:15] >= mine[:15] and n.removesuffix(".json") != self.run)
        return f"run {newer[-1]}" if newer else None

    def fence(self) -> None:
        """Raise if the lock is no longer this run's: before the run publishes anything."""
        if self.held and self.lost is None:
            if time.monotonic() - self._renewed > self.seconds:
                self.lost = self._paused()
            else:
                meta = self.store.stat(self.key)
                if meta is None or (self._etag is not None and meta.get("etag") != self._etag):
                    self.lost = self._taken_by()
        if self.lost is not None:
            raise OutputError(f"{self.output_url}: this run lost its lock {self.url}: {self.lost}; it stops "
                              "without publishing its records (the run holding the lock now owns the output; "
                              "rerun to resume once it has ended)")

    def release(self) -> None:
        if self.held:
            self.held = False
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=5)
            if self.lost is not None:
                return   # the lock is another run's now
            try:
                meta = self.store.stat(self.key)
                if meta is not None and (self._etag is None or meta.get("etag") == self._etag):
                    self.store.delete(self.key)
            except OutputError as exc:
                log.warning("cannot remove the run lock %s (it expires by itself): %s", self.url, exc)


__all__ = ["RemoteLock", "lock_seconds"]
