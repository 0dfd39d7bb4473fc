"""The records of a `--part` run, and how the ending run takes them over.

Parts run at once on different machines, so none may write the output's ledger. Each keeps its
own ledger in a local state folder and publishes what it commits as gzip'd JSON segments under
``.ziggurat/parts/I-of-N/ledger/`` of the output: objects in the bucket, or files beside the
tiles on a shared file system (`FolderStore`). Its run manifest and sources go to the output's
``.ziggurat/runs`` and ``sources`` like any run's. A part restarted on any machine rebuilds its
ledger from the output's ledger and its own segments, so it resumes exactly. Each part holds
its own lock (``.ziggurat/parts/I-of-N/lock``): two copies of one part never run at once, and
parts never block each other.

The ending run (a plain run of the recipe) replays every part's segments into the output's
ledger before it plans, refuses while a part still runs, skips the parts' tiles (continue
mode), builds the rest, and removes the parts' segments once its own records are safe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ziggurat.core.errors import OutputError
from ziggurat.io.storage.atomic import HOST
from ziggurat.io.storage.folder_store import FolderStore
from ziggurat.io.storage.store import ObjectStore, open_store
from ziggurat.plan.parts import Part
from ziggurat.recipe import OutputConfig
from ziggurat.recipe.output import state_root
from ziggurat.records.ledger import FOLDER, Ledger, ledger_path, provenance_dir
from ziggurat.records.lock import RunLock
from ziggurat.records.remote_lock import RemoteLock
from ziggurat.records.segments import SUFFIX, Journal, fetched, publish_stream

log = logging.getLogger(__name__)
PARTS = f"{FOLDER}/parts"
Store = ObjectStore | FolderStore


def records_store(config: OutputConfig) -> Store:
    """Where an output's records are shared: its bucket, or its folder."""
    if config.location is not None:
        return open_store(config.location, config.storage_options)
    return FolderStore(config.path)


def _chain(store: Store, rels: list[str]) -> Iterator[list[Any]]:
    """The operations of several segments in order, streamed."""
    for rel in rels:
        with fetched(store, rel) as ops:
            if ops is not None:
                yield from ops


def _segments(store: Store, prefix: str) -> list[str]:
    return sorted(rel for rel, _ in store.list_all(prefix) if rel.endswith(SUFFIX))


def _main_lock(config: OutputConfig) -> RunLock | RemoteLock:
    return RemoteLock(config) if config.remote else RunLock(config.path)


class PartRecords:
    """One part's ledger (local), published as segments; its lock; its manifests pushed."""

    def __init__(self, config: OutputConfig, part: Part) -> None:
        self.config, self.part = config, part
        self.store = records_store(config)
        self.prefix = f"{PARTS}/{part.name}"
        self.segments = f"{self.prefix}/ledger"
        digest = hashlib.sha256(config.url.encode()).hexdigest()[:12]
        #: a stand-in output path whose records folder holds the part's ledger and manifests
        self.state = state_root() / "parts" / digest / part.name / Path(config.path).name
        self._own: list[str] = []
        #: raises when the part lost its lock: nothing is published after that
        self.fence: Callable[[], None] = lambda: None
        self._journal = Journal(self.store, self.segments, lambda: self.fence(),
                                lambda key, size: self._own.append(key))

    def lock(self) -> RunLock | RemoteLock:
        what = f"part {self.part} of output {self.config.url}"
        if self.config.remote:
            return RemoteLock(self.config, key=f"{self.prefix}/lock", what=what)
        return RunLock(self.config.path, folder=Path(self.config.path) / self.prefix, what=what)

    def check_main_idle(self) -> None:
        """A plain run of the output (the ending run) must not be running while parts do."""
        holder = _main_lock(self.config).active_holder()
        if holder is not None:
            raise OutputError(f"output {self.config.url} is being written by a run that is not a part (pid "
                              f"{holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}); "
                              "parts run before the ending run, not with it")

    def pull(self) -> int:
        """A fresh local ledger: the output's rows, then this part's own segments (the part resumes
        where any earlier copy of it stopped, on any machine). Returns the operations replayed."""
        folder = provenance_dir(self.state)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        replayed = 0
        with Ledger(self.state) as ledger:
            if self.config.remote:
                replayed += ledger.apply(_chain(self.store, _segments(self.store, f"{FOLDER}/ledger")))
            elif ledger_path(self.config.path).is_file():
                with Ledger(self.config.path, create=False) as main:
                    replayed += ledger.apply(main.snapshot_ops())
            self._own = _segments(self.store, self.segments)
            replayed += ledger.apply(_chain(self.store, self._own))
        return replayed

    def attach(self, ledger: Ledger) -> None:
        """Publish the part's commits from now on."""
        ledger.on_commit = self._journal.on_commit

    def publish(self) -> None:
        self._journal.publish()

    def push(self) -> None:
        """The part's run manifests and sources into the output's records, beside every run's."""
        folder = provenance_dir(self.state)
        for sub in ("runs", "sources"):
            for path in sorted((folder / sub).glob("*")):
                if path.is_file() and not path.name.startswith(".tmp-"):
                    self.store.put(f"{FOLDER}/{sub}/{path.name}", path.read_bytes())

    def finish(self) -> None:
        """Last segment, the part's segments compacted into one, manifests pushed."""
        self.fence()
        self.publish()
        if len(self._own) > 1:
            key = f"{self.segments}/{time.time_ns():020d}-{HOST}-{os.getpid()}-compacted{SUFFIX}"
            publish_stream(self.store, key, _chain(self.store, self._own))   # first: a crash in between
                                                                              # replays to the same rows
            for rel in self._own:
                self.store.delete(rel)
            self._own = [key]
        self.push()


def merge_parts(config: OutputConfig) -> list[str]:
    """Replay every part's segments into the output's ledger (a bucket's is then compacted into
    its own segments at the end of the run); returns the segment keys, removed by `drop_merged`
    once the ending run's records are safe. Refuses while a part still runs. No parts: the
    ledger is not touched."""
    store = records_store(config)
    keys: list[str] = []
    for rel, _ in store.list_all(PARTS):
        name, _, rest = rel[len(PARTS) + 1:].partition("/")
        if rest == "lock":
            _refuse_running(config, name)
        elif rest.startswith("ledger/") and rel.endswith(SUFFIX):
            keys.append(rel)
    keys.sort()
    if not keys:
        return keys
    with Ledger(config.path) as ledger:
        ledger.apply(_chain(store, keys))
    if keys:
        log.info("took over the records of %d part segment(s) under %s", len(keys), store.url(PARTS))
    return keys


def _refuse_running(config: OutputConfig, name: str) -> None:
    part = Part.parse(name.replace("-of-", "/"))
    lock = PartRecords(config, part).lock()
    holder = lock.active_holder()
    if holder is not None:
        raise OutputError(f"part {part} of output {config.url} is still running (pid {holder.get('pid')} on "
                          f"{holder.get('host')}, since {holder.get('started')}); the ending run starts when "
                          "every part has ended")


def drop_merged(config: OutputConfig, keys: list[str]) -> None:
    """Remove part segments the output's own records now hold."""
    store = records_store(config)
    for rel in keys:
        store.delete(rel)


__all__ = ["PARTS", "PartRecords", "drop_merged", "merge_parts", "records_store"]
