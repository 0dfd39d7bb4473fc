"""A folder seen as an object store: the records a run publishes for others (a `--part`'s ledger
segments) go to a shared file system with the same calls as to a bucket."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

from ziggurat.core.errors import StorageError
from ziggurat.io.storage.atomic import HOST, write_bytes_atomic


class FolderStore:
    """Keys are '/'-separated paths under `root`; writes are atomic (a reader on another machine
    sees a whole file or none); listing skips the temporaries of writers in progress."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.name = str(self.root)

    def url(self, rel: str) -> str:
        return str(self.root / rel)

    def get(self, rel: str) -> bytes | None:
        try:
            return (self.root / rel).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {self.url(rel)}: {exc.strerror or exc}") from exc

    def get_file(self, rel: str, path: Path) -> bool:
        """Copy the file (any size, little memory); False if there is none."""
        try:
            shutil.copyfile(self.root / rel, path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot read {self.url(rel)}: {exc.strerror or exc}") from exc
        return True

    def put_file(self, rel: str, path: Path) -> None:
        """A local file into the folder, atomically (copied beside it, then renamed)."""
        target = self.root / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".tmp-{os.getpid()}-{HOST}-{target.name}")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc

    def put(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, data)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc

    def delete(self, rel: str) -> None:
        """Remove the file, and the folders it leaves empty (as a bucket has no empty folders)."""
        path = self.root / rel
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {self.url(rel)}: {exc.strerror or exc}") from exc
        for folder in path.parents:
            if folder == self.root or self.root not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:   # not empty (or already gone): the folders above are not empty either
                break

    def delete_many(self, rels: list[str]) -> None:
        """Remove many files (as `ObjectStore.delete_many`)."""
        for rel in rels:
            self.delete(rel)

    def list_all(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """(relative path, size) of every file under `prefix`, in no particular order."""
        top = self.root / prefix if prefix else self.root
        for dirpath, _, filenames in os.walk(top):
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                path = Path(dirpath) / name
                try:
                    size = path.stat().st_size
                except OSError:   # removed meanwhile
                    continue
                yield path.relative_to(self.root).as_posix(), size


__all__ = ["FolderStore"]
