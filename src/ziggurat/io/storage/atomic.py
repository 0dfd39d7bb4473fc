"""Atomic file writes: write under a temporary name on the same file system, then rename.

Every file ziggurat writes (tiles, metadata, manifests, STAC items, indexes, a single-file
output) goes through `staged`, so a crash, a full disk or Ctrl-C never leaves a half-written
file under its final name. Temporary names carry the writer's PID and host, so a later run
can remove what a killed writer left (`sweep_tmp`) without touching a live one's files.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

#: Temporary names carry the writer's host as well as its PID: on a cluster (Dask) workers on
#: other hosts write into the same folder, and a PID says nothing about another host.
HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40] or "localhost"
#: Another host's temporary files are only swept once they are this old (seconds).
FOREIGN_TMP_AGE = 24 * 3600


def _tmp_name(suffix: str) -> str:
    return f"{os.getpid()}-{HOST}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}{suffix}"


def tmp_path(final: Path, suffix: str) -> Path:
    """A temporary name beside `final`, unique per host, process and thread."""
    return final.with_name(f".tmp-{_tmp_name(suffix)}")


#: Where tile writers put temporary files: ``<output>/.ziggurat/tmp`` (the same file system as
#: the tiles, so ``os.replace`` stays atomic). Names start with the writer's PID so a new run
#: can remove what a killed one left without touching a live process's files.
TMP_FOLDER = (".ziggurat", "tmp")


def tmp_folder(root: Path) -> Path:
    return root.joinpath(*TMP_FOLDER)


def tmp_in(folder: Path, suffix: str) -> Path:
    """A temporary file name in `folder` (created if needed), unique per host, process and thread."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder / _tmp_name(suffix)


def pid_alive(pid: int) -> bool:
    """A process of this host with that PID exists (this process counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_tmp(folder: Path, *, prefix: str = "", keep_own: bool = True) -> int:
    """Remove temporary files in `folder` whose writer PID is no longer alive; returns the count.

    Names are ``<prefix><pid>-...``. With `keep_own` False this process's files go too (called
    once its writers have stopped)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix):].split("-", 2)
        if not parts[0].isdigit():
            continue
        pid = int(parts[0])
        host = parts[1] if len(parts) > 2 and not parts[1].isdigit() else HOST  # older names: local
        if host != HOST:  # another host's writer: only an old file is surely abandoned
            try:
                if time.time() - os.stat(folder / name).st_mtime < FOREIGN_TMP_AGE:
                    continue
            except OSError:
                continue
        elif (pid == os.getpid() and keep_own) or (pid != os.getpid() and pid_alive(pid)):
            continue
        try:
            os.unlink(folder / name)
            removed += 1
        except OSError:
            pass
    return removed


@contextmanager
def staged(final: Path, tmp: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path (default: a hidden name beside `final`); it replaces `final` only
    when the block finishes without an error, and is removed in every case."""
    tmp = tmp_path(final, final.suffix or ".tmp") if tmp is None else tmp
    try:
        yield tmp
        os.replace(tmp, final)
    finally:  # also on KeyboardInterrupt; a no-op after os.replace
        tmp.unlink(missing_ok=True)


def write_all(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write `data` whole or raise (a full disk raises ENOSPC here, never a short file);
    `durable`: on disk before it is renamed into place (fsync; what the records rely on)."""
    with open(path, "wb") as f:
        written = f.write(data)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    if written != len(data) or os.path.getsize(path) != len(data):
        raise OSError(f"{path}: wrote {written} of {len(data)} bytes")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """metadata.json, manifests, STAC items: few per run, so each is fsynced before the rename."""
    with staged(path) as tmp:
        write_all(tmp, data, durable=True)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    write_bytes_atomic(path, (json.dumps(payload, indent=2, allow_nan=False) + "\n").encode())
