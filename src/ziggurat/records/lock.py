"""One run at a time per output: a lock file naming its holder, taken over when the holder is gone.

``<output>/.ziggurat/lock`` (``OUT.tif.ziggurat/lock`` beside a single file) is created with
O_EXCL and holds the holder's PID, host and start time. A second run into the same output is
refused with a message naming the holder; a lock whose holder process is gone (this host) or
that is older than a day (another host) is stale and taken over. Two runs writing one output
would otherwise leave ledger checksums that do not match the files.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ziggurat.core.errors import OutputError
from ziggurat.io.storage.atomic import FOREIGN_TMP_AGE, HOST, pid_alive
from ziggurat.records.ledger import provenance_dir

log = logging.getLogger(__name__)
LOCK_FILE = "lock"


class RunLock:
    """Held for the length of one run (a context manager); `release` is safe to call twice."""

    def __init__(self, output_path: str | os.PathLike[str], folder: str | os.PathLike[str] | None = None,
                 what: str | None = None) -> None:
        """`folder`: where the lock file goes instead of the output's records (a `--part`'s lock);
        `what`: the name of what it guards, for the message (default: the output)."""
        self.path = (provenance_dir(output_path) if folder is None else Path(folder)) / LOCK_FILE
        self.what = what or f"output {output_path}"
        self.held = False

    def acquire(self) -> RunLock:
        holder = {"pid": os.getpid(), "host": HOST, "started": dt.datetime.now(dt.timezone.utc).isoformat()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.path.parent}: {exc}") from exc
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError as exc:
                other = self._holder()
                if other is not None and not self._stale(other):
                    raise OutputError(
                        f"{self.what} is being written by another run (pid {other.get('pid')} "
                        f"on {other.get('host')}, since {other.get('started')}); wait for it to end, or remove "
                        f"{self.path} if that run is gone") from exc
                log.warning("taking over the lock %s of a run that is gone (%s)", self.path, other)
                self.path.unlink(missing_ok=True)
                continue
            except OSError as exc:
                raise OutputError(f"cannot create the run lock {self.path}: {exc}") from exc
            with os.fdopen(fd, "w") as fh:
                json.dump(holder, fh)
            self.held = True
            return self
        raise OutputError(f"cannot take the run lock {self.path}: other runs keep taking it")

    def _holder(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # half-written by a killed run: stale

    def _stale(self, holder: dict[str, Any]) -> bool:
        pid, host = holder.get("pid"), holder.get("host")
        if not isinstance(pid, int):
            return True
        if host == HOST:
            return pid != os.getpid() and not pid_alive(pid)
        try:
            return time.time() - self.path.stat().st_mtime > FOREIGN_TMP_AGE
        except OSError:
            return True

    def active_holder(self) -> dict[str, Any] | None:
        """Who holds the lock now (pid, host, started), or None when no live run does."""
        other = self._holder()
        return other if other is not None and not self._stale(other) else None

    def fence(self) -> None:
        """Raise if the lock file is no longer this run's (taken over while the run was paused)."""
        if not self.held:
            return
        holder = self._holder()
        if holder is None or holder.get("pid") != os.getpid() or holder.get("host") != HOST:
            self.held = False   # not ours to remove any more
            raise OutputError(f"{self.what}: this run lost its lock {self.path} (now {holder}); it stops without "
                              "recording more (the run holding the lock now owns the output)")

    def release(self) -> None:
        if self.held:
            self.held = False
            holder = self._holder()
            if holder is None or (holder.get("pid") == os.getpid() and holder.get("host") == HOST):
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["LOCK_FILE", "RunLock"]
