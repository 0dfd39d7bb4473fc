"""Shared-memory result slots: reserved up front so a full /dev/shm fails at allocation.

`multiprocessing.shared_memory` only calls `ftruncate`, so writing into an over-committed
segment kills the writer with SIGBUS (CPython gh-114390). Here every slot is a file in the
shared-memory filesystem reserved with `posix_fallocate`, which raises ENOSPC at once.
Names carry the parent's PID and a run token, so segments left by a killed run are found
and removed by the next one.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ziggurat.io.storage.atomic import pid_alive

log = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
PREFIX = "ziggurat-"
#: Always leave this much of the shared-memory filesystem free: multiprocessing's own
#: locks and queues live there too.
MIN_HEADROOM = 1024 * 1024
HEADROOM_FRACTION = 0.10


def sweep_stale(shm_dir: Path | str = SHM_DIR) -> int:
    """Remove slots whose owning process is gone (a run killed with SIGKILL); count them."""
    removed = 0
    try:
        entries = list(Path(shm_dir).iterdir())
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        try:
            pid = int(entry.name[len(PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not pid_alive(pid):
            try:
                entry.unlink()
                removed += 1
            except OSError:
                pass
    if removed:
        log.info("removed %d stale shared-memory segment(s) of killed runs", removed)
    return removed + sweep_semaphores(Path(shm_dir))


def _mapped_files() -> set[str] | None:
    """Files mapped by this user's processes (a POSIX semaphore is mapped by every user of it);
    None where /proc cannot tell."""
    mapped: set[str] = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            if os.stat(f"/proc/{pid}").st_uid != os.getuid():
                continue
            with open(f"/proc/{pid}/maps") as maps:
                mapped.update(line.split(None, 5)[5].strip() for line in maps if line.count(" ") >= 5
                              and "/sem." in line)
        except (OSError, IndexError):
            continue   # gone meanwhile, or not ours to read
    return mapped


def sweep_semaphores(shm_dir: Path = SHM_DIR, min_age: float = 600.0) -> int:
    """Remove multiprocessing semaphores (`sem.mp-*`) left by runs killed with their resource
    tracker: this user's, older than `min_age` seconds, and mapped by no process of this user."""
    try:
        candidates = [e for e in Path(shm_dir).iterdir() if e.name.startswith("sem.mp-")]
    except OSError:
        return 0
    now = time.time()
    old = []
    for entry in candidates:
        try:
            st = entry.stat()
        except OSError:
            continue
        if st.st_uid == os.getuid() and now - st.st_mtime > min_age:
            old.append(entry)
    if not old:
        return 0
    mapped = _mapped_files()
    if mapped is None:
        return 0
    removed = 0
    for entry in old:
        if str(entry) not in mapped:
            try:
                entry.unlink()
                removed += 1
            except OSError:
                pass
    if removed:
        log.info("removed %d semaphore(s) of killed runs from %s", removed, shm_dir)
    return removed


def remove_own(shm_dir: Path | str = SHM_DIR) -> int:
    """Unlink this process's slots at once (a run stopped by a second Ctrl-C); count them."""
    own = f"{PREFIX}{os.getpid()}-"
    removed = 0
    try:
        entries = [e for e in Path(shm_dir).iterdir() if e.name.startswith(own)]
    except OSError:
        return 0
    for entry in entries:
        try:
            entry.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def free_bytes(shm_dir: Path = SHM_DIR) -> tuple[int, int]:
    """(available, total) bytes of the shared-memory filesystem."""
    st = os.statvfs(shm_dir)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


@dataclass(frozen=True)
class SlotSpec:
    """What a worker needs to attach to the slots: picklable and small."""

    names: tuple[str, ...]
    size: int
    shm_dir: str


class SlotPool:
    """Parent-side owner of the slots; hands out free slot numbers and unlinks on close."""

    def __init__(self, spec: SlotSpec, maps: list[mmap.mmap]) -> None:
        self.spec = spec
        self._maps = maps
        self._free = list(range(len(maps)))[::-1]

    @classmethod
    def allocate(cls, size: int, wanted: int, shm_dir: Path | str = SHM_DIR, needed: int | None = None
                 ) -> "SlotPool":
        """Reserve up to `wanted` slots of `size` bytes, fewer if space is short (with a warning
        below `needed`: the rest only lets results wait for the writer longer)."""
        shm_dir = Path(shm_dir)
        size = max(int(size), 1)
        available, total = free_bytes(shm_dir)
        headroom = max(MIN_HEADROOM, int(total * HEADROOM_FRACTION))
        affordable = max(0, (available - headroom) // size)
        count = min(wanted, affordable)
        if count < min(wanted, needed or wanted):
            log.warning("shared memory at %s is short (%.1f MiB free): using %d result slot(s) of "
                        "%.1f MiB instead of %d", shm_dir, available / 2**20, count, size / 2**20, wanted)
        token = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}-"
        names: list[str] = []
        maps: list[mmap.mmap] = []
        for k in range(count):
            name = f"{token}{k}"
            path = shm_dir / name
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as exc:   # a full /dev/shm may refuse even the file
                if exc.errno not in (errno.ENOSPC, errno.ENOMEM):
                    raise
                log.warning("shared memory %s is full after %d of %d result slot(s)", shm_dir, k, count)
                break
            try:
                os.posix_fallocate(fd, 0, size)
                maps.append(mmap.mmap(fd, size))
            except OSError as exc:
                path.unlink(missing_ok=True)
                if exc.errno not in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
                    cls(SlotSpec(tuple(names), size, str(shm_dir)), maps).close()
                    raise
                log.warning("shared memory full after %d of %d result slot(s); continuing with %d",
                            k, count, max(k - 1, 0))
                if maps:  # give one back: keep headroom for the pool's own semaphores
                    maps.pop().close()
                    (shm_dir / names.pop()).unlink(missing_ok=True)
                break
            finally:
                os.close(fd)
            names.append(name)
        return cls(SlotSpec(tuple(names), size, str(shm_dir)), maps)

    def __len__(self) -> int:
        return len(self._maps)

    @property
    def free(self) -> int:
        return len(self._free)

    def acquire(self) -> int | None:
        return self._free.pop() if self._free else None

    def release(self, *slots: int | None) -> None:
        """Give slots back (None: a task that held none)."""
        self._free.extend(slot for slot in slots if slot is not None)

    def view(self, slot: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        """A numpy view of a slot's bytes (no copy); valid until the slot is released."""
        return np.frombuffer(self._maps[slot], dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def close(self) -> None:
        """Unmap and unlink every slot; safe to call more than once."""
        for m in self._maps:
            try:
                m.close()
            except BufferError:  # a view is still alive; unlinking below still frees the name
                pass
        self._maps = []
        for name in self.spec.names:
            (Path(self.spec.shm_dir) / name).unlink(missing_ok=True)
        self._free = []


class SlotWriter:
    """Worker-side: attaches to slots lazily (once per worker) and copies results in."""

    def __init__(self, spec: SlotSpec) -> None:
        self.spec = spec
        self._maps: dict[int, mmap.mmap] = {}

    def write(self, slot: int, array: np.ndarray) -> None:
        if array.nbytes > self.spec.size:
            raise ValueError(f"result of {array.nbytes} bytes does not fit a {self.spec.size}-byte slot")
        m = self._maps.get(slot)
        if m is None:
            fd = os.open(Path(self.spec.shm_dir) / self.spec.names[slot], os.O_RDWR)
            try:
                m = self._maps[slot] = mmap.mmap(fd, self.spec.size)
            finally:
                os.close(fd)
        dst = np.frombuffer(m, dtype=array.dtype, count=array.size).reshape(array.shape)
        dst[...] = array
        del dst

    def close(self) -> None:
        for m in self._maps.values():
            try:
                m.close()
            except BufferError:
                pass
        self._maps.clear()
