"""The engine's recorder: every outcome into the ledger, with the key of what made it.

Workers hash each tile right after writing it (`TileOutcome.checksums`); the engine hands every
outcome to a `RunRecorder`, which writes the process tile's outcome, its key and deps
(`records.keys`) and its output tiles' checksums to the ledger in one transaction (batched
commits) and, at the end of the run (also a failed or interrupted one), records the tiles in
flight that reached the disk, commits and completes the manifest. Continue mode asks it which
tiles are done: recorded, and made as this run would make them (otherwise stale, with a reason).
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ziggurat.core.bounds import Bounds
from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Tile, TileIndex
from ziggurat.core.tasks import EMPTY, FAILED, SKIPPED, WRITTEN, TileOutcome
from ziggurat.io import Output
from ziggurat.io.checksum import sha256_or_none
from ziggurat.io.common import int_names
from ziggurat.io.storage.atomic import HOST, write_bytes_atomic
from ziggurat.recipe import Recipe
from ziggurat.records.keys import RunKeys
from ziggurat.records.ledger import DONE, Ledger, ProcessRow, ledger_path
from ziggurat.records.staleness import Staleness
from ziggurat.records.tile_records import TileRecord, import_legacy_records, output_root, provenance_dir

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
OVERWRITE_STATE = "overwrite"       # ledger state: an --overwrite run in progress
ACCEPTED_STATE = "accepted process changes"   # ledger state: every --accept-process-change, who and when
_SALVAGE_SLACK_NS = 2_000_000_000   # file system clocks may lag time.time_ns() a little


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """The run's manifest, and the latest one (`manifest.json`)."""
    data = (json.dumps(manifest, indent=2, allow_nan=False) + "\n").encode()
    write_bytes_atomic(folder / "runs" / f"{manifest['run']}.json", data)
    write_bytes_atomic(folder / MANIFEST_FILE, data)


@dataclass(frozen=True)
class RunExtent:
    """The zooms and area (grid CRS) a run covers; kept in the ledger for an --overwrite run."""

    zooms: tuple[int, ...]
    bounds: Bounds | None
    run: str = ""

    def covers(self, tile: Tile) -> bool:
        return tile.zoom in self.zooms and (self.bounds is None or self.bounds.intersects(tile.bounds))

    def contains(self, other: RunExtent) -> bool:
        if not set(other.zooms) <= set(self.zooms):
            return False
        if self.bounds is None or other.bounds is None:
            return self.bounds is None
        inner = self.bounds.intersection(other.bounds)
        return inner is not None and all(abs(a - b) < 1e-9 for a, b in zip(inner, other.bounds))

    def to_json(self, run: str) -> str:
        return json.dumps({"run": run, "zooms": list(self.zooms),
                           "bounds": None if self.bounds is None else list(self.bounds)})

    @classmethod
    def from_json(cls, text: str | None) -> RunExtent | None:
        if not text:
            return None
        data = json.loads(text)
        bounds = data.get("bounds")
        return cls(tuple(data.get("zooms") or ()), None if bounds is None else Bounds(*bounds), str(data["run"]))

    @classmethod
    def of(cls, zooms: Sequence[int], bounds: Bounds | None) -> RunExtent:
        return cls(tuple(zooms), bounds)


class RunRecorder:
    """The engine's hook: `begin_run` at the start, `add` per outcome, `finish` at the end."""

    def __init__(self, recipe: Recipe, output: Output, manifest: dict[str, Any], overwrite: bool,
                 keys: RunKeys, extent: RunExtent | None = None, records: Path | None = None) -> None:
        self.recipe, self.output, self.manifest, self.overwrite = recipe, output, manifest, overwrite
        self.keys = keys
        self.extent = extent
        #: stale tiles this run rebuilt, by reason (continue mode)
        self.stale: Counter[str] = Counter()
        self._stale_reasons: dict[TileIndex, str] = {}
        self.run: str = manifest["run"]
        self.path = Path(output.path)
        records = records or self.path   # a part keeps its records apart (records.part_records)
        self.folder = provenance_dir(records)
        self.root = output_root(self.path)
        self.single = not output.capabilities.tile_files  # one file: one record at the end
        self.remote = recipe.output.remote  # tiles in a bucket: no file-system checks
        self.start_ns = time.time_ns()
        self._buffer: list[TileRecord] = []
        fresh = not ledger_path(records).is_file()
        if records == self.path:
            import_legacy_records(self.path)
        #: no ledger but tiles on disk (written by an older ziggurat): continue mode falls back
        #: to "the tile files exist" and adopts such tiles into the ledger (see `adopt`)
        self.legacy = fresh and records == self.path and not self.single and bool(int_names(self.root))
        self.ledger = Ledger(records)
        self._recorded_keys: set[int] = set()
        #: an interrupted --overwrite run: the tiles it had not redone yet are stale
        self.interrupted = None if overwrite else RunExtent.from_json(self.ledger.get_state(OVERWRITE_STATE))
        self.staleness = Staleness(self.ledger, keys, self.interrupted)
        if overwrite and extent is not None and not self.single:
            self.ledger.set_state(OVERWRITE_STATE, extent.to_json(self.run))
        self._pending: set[TileIndex] = set()   # handed out, no outcome yet
        self._failed: set[TileIndex] = set()
        self.records = 0
        self._base = str(self.root) + os.sep
        self._suffix = self._tile_suffix()
        # process tiles that are single output tiles need no output_tiles() per outcome
        self._one_to_one = recipe.grid.metatiling == recipe.output.metatiling

    def _tile_suffix(self) -> str | None:
        """The file suffix when tile paths are root/zoom/row/col<suffix> (checked on samples),
        so paths are built with string formatting instead of pathlib (~30 us per tile)."""
        if self.single:
            return None
        samples = [TileIndex(0, 0, 0), TileIndex(3, 5, 7)]
        suffix = Path(self.output.tile_path(samples[0])).suffix
        for index in samples:
            expected = os.path.join(self.root, *map(str, index[:2]), f"{index[2]}{suffix}")
            if str(self.output.tile_path(index)) != expected:
                return None
        return suffix

    # -- per tile ------------------------------------------------------------------------------
    def is_done(self, process_tile: Tile) -> bool:
        """Continue mode: the ledger has the tile (written or empty) as this run would make it (same
        key and deps); a legacy output without a ledger: the files exist. Stale tiles are not."""
        if self.single:
            return False
        index = process_tile.index
        row = self.ledger.row(index)
        if row is None or row.status not in DONE:
            return self.legacy and self.output.exists(process_tile)
        return self._stale(process_tile, index, row) is None

    def _stale(self, tile: Tile, index: TileIndex, row: ProcessRow) -> str | None:
        known = self._stale_reasons.get(index)
        if known is not None:
            return known
        why = self.staleness.reason(tile, row)   # the decision `plan` makes too
        if why is not None:  # remembered until its outcome arrives (see `add`)
            self._stale_reasons[index] = why
        return why

    def adopt_process(self, accept: bool, zooms: Iterable[int]) -> int:
        """Tiles made by another version of the process keep counting as done when its code is the
        same (rows keyed by the source's bytes, before keys held the code) or, with `accept`
        (`--accept-process-change`), whatever changed in it, if nothing else did. Acceptances are
        recorded in the ledger and the manifest: who, when, from which code to which. Returns the
        rows that took this run's keys."""
        source_sha = (self.manifest.get("process") or {}).get("sha256")
        moved, accepted = 0, []
        for key, text in self.ledger.known_keys():
            old = json.loads(text)
            for zoom in zooms:
                now = self.keys.parts(zoom)
                if key == self.keys.key(zoom) or not isinstance(old, dict) or "process" not in old \
                        or {k: v for k, v in old.items() if k != "process"} != \
                        {k: v for k, v in now.items() if k != "process"}:
                    continue
                same_code = old["process"] == source_sha
                if same_code or accept:
                    n = self.ledger.rekey(key, self._key_of(zoom))
                    moved += n
                    if n and not same_code:
                        accepted.append({"from": old["process"], "to": now["process"], "tiles": n, "zoom": zoom,
                                         "by": f"{getpass.getuser()}@{HOST}", "at": _now_iso(), "run": self.run})
                    break
        if accepted:
            log_text = self.ledger.get_state(ACCEPTED_STATE)
            self.ledger.set_state(ACCEPTED_STATE, json.dumps([*json.loads(log_text or "[]"), *accepted]))
            self.manifest["accepted_process_changes"] = accepted
        return moved

    def _key_of(self, zoom: int) -> str:
        key = self.keys.key(zoom)
        if zoom not in self._recorded_keys:
            self.ledger.record_key(key, self.keys.parts_json(zoom))
            self._recorded_keys.add(zoom)
        return key

    def outcome(self, outcome: TileOutcome) -> None:
        """A subscriber of the run's outcomes: skipped tiles of a legacy output enter the ledger,
        tiles that ran are recorded (blocked overview tiles are not: nothing ran)."""
        if outcome.status == SKIPPED:
            self.skipped(self.recipe.grid.tile(*outcome.index))
        elif outcome.ran:
            self.add(outcome)

    def skipped(self, process_tile: Tile) -> None:
        """A tile continue mode skipped: one of a legacy output enters the ledger."""
        if self.legacy and not self.ledger.is_done(process_tile.index):
            self.adopt(process_tile)

    def adopt(self, process_tile: Tile) -> None:
        """Record an existing tile of an output without a ledger as written (hashing its files),
        as made by this run's recipe: there is no record of another."""
        for tile in self.output.output_tiles(process_tile):
            self._buffer.append(TileRecord(self._rel(tile.index), sha256_or_none(self.output.tile_path(tile)),
                                           tile.index, None))
        self.ledger.record_process(process_tile.index, WRITTEN, None, self._key_of(process_tile.zoom),
                                   self.keys.deps(process_tile))
        self.flush()

    def add(self, outcome: TileOutcome) -> None:
        index = TileIndex(*outcome.index)
        self._pending.discard(index)
        if self.single:
            return
        why = self._stale_reasons.pop(index, None)
        if why is not None:
            self.stale[why] += 1
        tile = self.recipe.grid.tile(*index)
        key, deps = self._key_of(index.zoom), self.keys.deps(tile)
        if outcome.status == FAILED:
            self._failed.add(index)
            self.ledger.record_process(index, FAILED, self.run, key, deps)
            self.ledger.maybe_commit()
            return
        if outcome.status not in (WRITTEN, EMPTY):
            return
        written = tuple(TileIndex(*i) for i in outcome.written)
        sums: tuple[str | None, ...] = tuple(outcome.checksums)
        if len(sums) != len(written):  # written by the parent (a sink): hash here
            sums = tuple(sha256_or_none(self.output.tile_path(i)) for i in written)
        for i, sha in zip(written, sums):
            self._buffer.append(TileRecord(self._rel(i), sha, i, self.run))
        if self._one_to_one:
            unwritten = [] if written else [index]
        else:
            wrote = set(written)
            unwritten = [t.index for t in self.output.output_tiles(tile) if t.index not in wrote]
        for i in unwritten:
            rel = self._rel(i)
            # without --overwrite an older tile that is still there keeps its record
            if self.overwrite or not self._still_there(rel):
                self._buffer.append(TileRecord(rel, None, i, self.run))
        self.ledger.record_process(index, outcome.status, self.run, key, deps)  # one transaction with its tiles
        self.flush()

    def _still_there(self, rel: str) -> bool:
        """An older tile file is there: on disk, or (remote: no HEAD per tile) in the ledger."""
        if self.remote:
            return self.ledger.checksums([rel]).get(rel) is not None
        return os.path.exists(self._base + rel)

    def _rel(self, index: TileIndex) -> str:
        if self._suffix is not None:
            return f"{index[0]}/{index[1]}/{index[2]}{self._suffix}"
        return Path(self.output.tile_path(index)).relative_to(self.root).as_posix()

    def flush(self) -> None:
        """Hand buffered records to the ledger; it commits in timed batches."""
        buffer, self._buffer = self._buffer, []
        self.records += self.ledger.record_outputs(buffer)
        self.ledger.maybe_commit()

    def _salvage(self) -> None:
        """Tiles of failed or unfinished process tiles that reached the disk are real: record them."""
        for index in sorted(self._pending | self._failed):
            for tile in self.output.output_tiles(self.recipe.grid.tile(*index)):
                if self.remote:  # a few tiles in flight: one GET each tells (and hashes) what arrived
                    data = self.output.tile_bytes_of(tile)
                    if data is not None:
                        self._buffer.append(TileRecord(self._rel(tile.index), hashlib.sha256(data).hexdigest(),
                                                       tile.index, self.run))
                    continue
                path = self.output.tile_path(tile)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if st.st_mtime_ns >= self.start_ns - _SALVAGE_SLACK_NS:
                    self._buffer.append(TileRecord(self._rel(tile.index), sha256_or_none(path),
                                                   tile.index, self.run))

    # -- end of run ----------------------------------------------------------------------------
    def finish(self, summary: Any, error: BaseException | None = None,
               pending: Iterable[TileIndex] = ()) -> None:
        """Record checksums and the end of the run; never hides the run's own error.

        `pending`: process tiles handed to the executor without an outcome (in flight when
        the run stopped); tiles of theirs that reached the disk are recorded too.
        """
        self._pending.update(TileIndex(*i) for i in pending)
        try:
            self._finish(summary, error)
        except (OSError, sqlite3.Error) as exc:
            if error is None:
                raise OutputError(f"cannot record provenance in {self.folder}: {exc}") from exc
            log.warning("cannot record provenance in %s: %s", self.folder, exc)
        finally:
            self.keys.close()
            self.ledger.close()

    def _finish(self, summary: Any, error: BaseException | None) -> None:
        if self.single:
            if error is None and not summary.failed and self.path.is_file():
                self._buffer.append(TileRecord(self.path.name, sha256_or_none(self.path), None, self.run))
        else:
            self._salvage()
        self.flush()
        ok = error is None and not summary.failed
        if ok and not self.single and self.extent is not None:
            if self.overwrite or (self.interrupted is not None and self.extent.contains(self.interrupted)):
                self.ledger.set_state(OVERWRITE_STATE, None)  # the --overwrite is complete
        self.ledger.commit()
        failed = [{"tile": list(o.index), "error": o.error} for o in summary.failed[:100]]
        status = ("interrupted" if isinstance(error, KeyboardInterrupt)
                  else "failed" if error is not None or summary.failed else "succeeded")
        self.manifest.update({
            "status": status, "ended": _now_iso(), "seconds": round(summary.seconds, 3),
            "error": None if error is None else f"{type(error).__name__}: {error}",
            "summary": {"total": summary.total, "process_tiles_written": summary.written,
                        "output_tiles_written": summary.output_tiles, "empty": summary.empty,
                        "skipped": summary.skipped, "failed": len(summary.failed),
                        "rebuilt_stale": dict(self.stale)},
            "requests": dict(summary.requests),
            "failed_tiles": failed, "tile_records": self.records,
            "tiles_by_run": {} if self.single else self.ledger.tiles_by_run()})
        self._write_manifest()

    def _write_manifest(self) -> None:
        write_manifest(self.folder, self.manifest)


__all__ = ["MANIFEST_FILE", "OVERWRITE_STATE", "RunExtent", "RunRecorder", "write_manifest"]
