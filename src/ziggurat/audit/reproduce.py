"""`ziggurat verify` and `ziggurat reproduce`: check an output against its provenance.

verify: hash every tile on disk (thread pool) and compare with `.ziggurat/tiles.jsonl`:
missing, changed and extra tiles. reproduce: rerun from the SAVED recipe and process source
into a new folder and compare the new tiles' checksums with the recorded ones.

Which runs reproduce replays: by default every recorded run that still owns a tile record,
oldest first, each with its own saved recipe, process source and options (zoom, bounds,
tile, point, overwrite), so a folder built by several runs is rebuilt the same way. With
`zoom` or `bounds` it runs the latest run's recipe once over that area instead and compares
only the tiles it covers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from ziggurat.core.errors import ProvenanceError, ZigguratError
from ziggurat.core.formats import records_beside
from ziggurat.core.grid import TileIndex
from ziggurat.engine.run import ProgressCallback, execute
from ziggurat.io.checksum import compare_fingerprints, fingerprint_input, hash_many, sha256_and_size
from ziggurat.io.outputs.stored import open_stored
from ziggurat.plan.selection import Selection
from ziggurat.recipe import Recipe, load_recipe
from ziggurat.records.provenance import (
    TileRecord,
    has_tile_records,
    library_versions,
    list_runs,
    output_root,
    provenance_dir,
    read_manifest,
    read_tile_records,
)
from ziggurat.records.tile_records import tile_paths_in

log = logging.getLogger(__name__)


def _short(sha: str | None) -> str:
    return "empty" if sha is None else sha[:12] if len(sha) == 64 else sha


def _listing(lines: list[str], title: str, items: Sequence[Any], limit: int) -> None:
    if not items:
        return
    lines.append(f"{title}:")
    shown = items if limit <= 0 else items[:limit]
    lines.extend(f"  {item}" for item in shown)
    if len(shown) < len(items):
        lines.append(f"  ... and {len(items) - len(shown)} more")


# -- verify ---------------------------------------------------------------------------------------
@dataclass
class VerifyResult:
    """What `verify` found; `ok` is False when anything is missing, changed or extra."""

    output: Path
    identical: int = 0
    missing: list[TileRecord] = field(default_factory=list)
    changed: list[tuple[TileRecord, str]] = field(default_factory=list)   # (record, sha256 on disk)
    extra: list[str] = field(default_factory=list)       # paths on disk that no record expects
    problems: list[str] = field(default_factory=list)    # saved recipe/process copies that changed
    bytes_hashed: int = 0
    seconds: float = 0.0
    by_run: dict[str, int] = field(default_factory=dict)   # run id -> tiles on disk it made

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.extra or self.problems)

    def describe(self, limit: int = 50) -> str:
        """The report the CLI prints; lists are cut at `limit` entries (0: all)."""
        mb = self.bytes_hashed / 1e6
        rate = mb / self.seconds if self.seconds > 0 else 0.0
        lines = [f"{'OK' if self.ok else 'FAILED'}: {self.identical} tiles identical, "
                 f"{len(self.changed)} changed, {len(self.missing)} missing, {len(self.extra)} extra "
                 f"({mb:.1f} MB hashed in {self.seconds:.2f} s, {rate:.0f} MB/s) -> {self.output}"]
        _listing(lines, "changed", [f"{r.path} (tile {_tile(r)}): recorded {_short(r.sha256)}, "
                                    f"now {_short(sha)}" for r, sha in self.changed], limit)
        _listing(lines, "missing", [f"{r.path} (tile {_tile(r)})" for r in self.missing], limit)
        _listing(lines, "extra (no checksum recorded)", self.extra, limit)
        _listing(lines, "provenance", self.problems, limit)
        if len(self.by_run) > 1:  # tiles of several runs (and recipes) side by side
            _listing(lines, "tiles by run (ziggurat status shows which are stale)",
                     [f"{run}: {n}" for run, n in sorted(self.by_run.items())], limit)
        return "\n".join(lines)


def _tile(record: TileRecord) -> str:
    return " ".join(map(str, record.index)) if record.index else "-"


def _check_sources(output: Path) -> list[str]:
    """Saved copies are named by their hash: one whose bytes changed is reported."""
    problems = []
    for path in sorted((provenance_dir(output) / "sources").glob("*")):
        stem = path.stem
        expected = stem.rsplit("-", 1)[-1].rsplit("_", 1)[-1]
        if hashlib.sha256(path.read_bytes()).hexdigest()[:len(expected)] != expected:
            problems.append(f"{path.relative_to(provenance_dir(output))} does not match its recorded hash")
    return problems


def _sha_and_size(item: tuple[str, TileRecord]) -> tuple[str, int] | None:
    try:
        mode = os.stat(item[0]).st_mode   # a FIFO or a link to /dev/zero is never opened
        if not stat.S_ISREG(mode):
            return "not a regular file", 0
        return sha256_and_size(item[0])
    except FileNotFoundError:
        return None
    except OSError as exc:  # reported as a changed tile rather than stopping the check
        return f"unreadable ({exc.strerror or exc})", 0


def verify_local(output: str | os.PathLike[str], *, workers: int | None = None,
                 zooms: Iterable[int] | None = None) -> VerifyResult:
    """Check every tile (of `zooms`) of a local output against the recorded checksums (hashing
    with `workers` threads)."""
    start = time.perf_counter()
    out = Path(os.path.abspath(output))
    if not has_tile_records(out):
        read_manifest(out)  # a clear "no provenance" error when there is nothing at all
        raise ProvenanceError(f"{out}: no tile checksums recorded ({provenance_dir(out)}/tiles.jsonl)")
    records = read_tile_records(out, zooms)
    root = output_root(out)
    result = VerifyResult(out, problems=_check_sources(out))
    expected = {path: rec for path, rec in records.items() if rec.sha256 is not None}
    for rec in expected.values():
        result.by_run[str(rec.run)] = result.by_run.get(str(rec.run), 0) + 1
    base = str(root)
    items = ((os.path.join(base, path), rec) for path, rec in expected.items())
    for (_, record), found in hash_many(items, workers, hasher=_sha_and_size):
        if found is None:
            result.missing.append(record)
            continue
        sha, size = found
        result.bytes_hashed += size
        if sha == record.sha256:
            result.identical += 1
        else:
            result.changed.append((record, sha))
    if not records_beside(out):
        result.extra = sorted(set(tile_paths_in(open_stored(root).tile_files(), zooms)) - set(expected))
    result.seconds = time.perf_counter() - start
    return result



# -- reproduce ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TileDiff:
    path: str
    index: TileIndex | None
    recorded: str | None      # None: recorded as empty
    reproduced: str | None    # None: reproduced as empty

    def __str__(self) -> str:
        tile = " ".join(map(str, self.index)) if self.index else "-"
        return (f"{self.path} (tile {tile}): recorded {_short(self.recorded)}, "
                f"reproduced {_short(self.reproduced)}")


@dataclass
class ReproduceResult:
    """A reproduction and its comparison; `ok` is False on any difference or failure."""

    source: Path
    target: Path
    runs: list[str] = field(default_factory=list)
    narrowed: bool = False
    warnings: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)   # paths of written tiles with equal bytes
    identical_empty: int = 0
    differing: list[TileDiff] = field(default_factory=list)
    not_reproduced: list[TileRecord] = field(default_factory=list)
    unrecorded: list[TileRecord] = field(default_factory=list)   # written now, never recorded
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.differing or self.not_reproduced or self.failed)

    def describe(self, limit: int = 50) -> str:
        scope = "the given zoom/area" if self.narrowed else f"{len(self.runs)} run(s)"
        lines = [f"{'IDENTICAL' if self.ok else 'DIFFERENT'}: reproduced {scope} of {self.source} "
                 f"into {self.target} in {self.seconds:.2f} s",
                 f"  {len(self.identical)} tiles identical ({self.identical_empty} empty tiles also "
                 f"empty), {len(self.differing)} differing, {len(self.not_reproduced)} not reproduced, "
                 f"{len(self.failed)} failed, {len(self.unrecorded)} new tiles without a record"]
        _listing(lines, "differing", self.differing, limit)
        _listing(lines, "not reproduced (recorded, not written now)",
                 [f"{r.path} (tile {_tile(r)})" for r in self.not_reproduced], limit)
        _listing(lines, "failed", self.failed, limit)
        _listing(lines, "written now, never recorded (outside the recorded runs)",
                 [r.path for r in self.unrecorded], limit)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "target": str(self.target), "runs": self.runs,
                "narrowed": self.narrowed, "ok": self.ok, "warnings": self.warnings,
                "identical": len(self.identical), "identical_empty": self.identical_empty,
                "differing": [{**vars(d), "index": list(d.index) if d.index else None}
                              for d in self.differing],
                "not_reproduced": [r.path for r in self.not_reproduced],
                "unrecorded": [r.path for r in self.unrecorded], "failed": self.failed}


def default_target(source: Path) -> Path:
    """A fresh sibling: ``OUT.reproduced-<UTC time>`` (``OUT.reproduced-<time>.tif`` for a file)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    n = 1
    while True:
        tag = f"reproduced-{stamp}" + (f"-{n}" if n > 1 else "")
        target = (source.with_name(f"{source.stem}.{tag}{source.suffix}") if records_beside(source)
                  else source.with_name(f"{source.name}.{tag}"))
        if not target.exists() and not provenance_dir(target).exists():
            return target
        n += 1


def _check_target(source: Path, target: Path) -> None:
    if target == source or source in target.parents:
        raise ProvenanceError(f"reproduce writes into a new folder, not into the original {source} "
                              f"(got --to {target})")
    if records_beside(source) != records_beside(target):
        what, kind = ("a single file", "a .tif path") if records_beside(source) else ("a tile directory",
                                                                                      "a folder")
        raise ProvenanceError(f"{source} is {what}; --to must be {kind}, got {target}")
    if records_beside(target) and (target.exists() or provenance_dir(target).exists()):
        raise ProvenanceError(f"{target} exists; reproduce never overwrites: choose a new path")
    if target.is_dir() and any(target.iterdir()):
        raise ProvenanceError(f"{target} exists and is not empty; reproduce needs a new or empty folder")


def _runs_to_replay(source: Path, records: dict[str, TileRecord], warnings: list[str]
                    ) -> list[dict[str, Any]]:
    runs = list_runs(source)
    owners = {r.run for r in records.values()}
    known = {m.get("run") for m in runs}
    for run in sorted(o for o in owners - known if o):
        warnings.append(f"tiles recorded by run {run} cannot be reproduced: its manifest is missing")
    replay = [m for m in runs if m.get("run") in owners]
    return replay or [read_manifest(source)]


def _check_environment(manifests: list[dict[str, Any]], warnings: list[str]) -> None:
    """Warn about library versions and input fingerprints that differ from the recorded ones."""
    now = library_versions()
    seen: set[tuple[str, Any]] = set()
    for manifest in manifests:
        for name, was in (manifest.get("versions") or {}).items():
            if now.get(name) != was and (name, was) not in seen:
                seen.add((name, was))
                warnings.append(f"{name} version differs: {was} recorded, {now.get(name)} now")
    checked: set[str] = set()
    for manifest in manifests:
        entries = {**(manifest.get("inputs") or {}), **(manifest.get("files") or {})}
        for name, info in entries.items():
            path = info.get("path")
            if not path or path in checked:
                continue
            checked.add(path)
            try:
                current = fingerprint_input(path)
            except FileNotFoundError:
                warnings.append(f"input {name!r} ({path}) no longer exists")
                continue
            except OSError as exc:
                warnings.append(f"input {name!r} ({path}) cannot be fingerprinted: {exc}")
                continue
            why = compare_fingerprints(info.get("fingerprint") or {}, current)
            if why:
                warnings.append(f"input {name!r} ({path}) differs from the recorded fingerprint: {why}")


def _saved_file(folder: Path, rel: str | None, sha: str | None, what: str) -> Path:
    if not rel:
        raise ProvenanceError(f"{folder}: no saved {what} was recorded; this run cannot be reproduced")
    path = folder / rel
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProvenanceError(f"cannot read the saved {what} {path}: {exc}") from exc
    if sha and hashlib.sha256(data).hexdigest() != sha:
        raise ProvenanceError(f"the saved {what} {path} was modified after the run (SHA-256 differs)")
    return path


def saved_recipe(source: str | os.PathLike[str], manifest: dict[str, Any], target: str | os.PathLike[str]
                 ) -> Recipe:
    """A run's saved resolved recipe, with its saved process copy, writing into `target`.

    Relative paths still in it resolve against the original recipe folder in the manifest.
    """
    folder = provenance_dir(source)
    rec, proc = manifest.get("recipe") or {}, manifest.get("process") or {}
    recipe_path = _saved_file(folder, rec.get("resolved"), rec.get("resolved_sha256"), "recipe")
    process_path = _saved_file(folder, proc.get("source"), proc.get("sha256"), "process source")
    data = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
    data["process"] = str(process_path.resolve())  # the saved copy, loaded as a .py file
    data["output"] = {**data["output"], "path": str(target)}
    try:
        return load_recipe(data, base_dir=rec.get("base_dir") or folder)
    except ZigguratError as exc:
        raise ProvenanceError(f"the saved recipe of run {manifest.get('run')} ({recipe_path}) cannot be "
                              f"loaded here: {exc}") from exc


def _compare(result: ReproduceResult, old: dict[str, TileRecord], new: dict[str, TileRecord]) -> None:
    if records_beside(result.source):  # one record each, named after each file
        old = {"file": list(old.values())[-1]} if old else {}
        new = {"file": list(new.values())[-1]} if new else {}
    for path, rec in sorted(new.items()):
        was = old.get(path)
        if was is None:
            if rec.sha256 is not None:
                result.unrecorded.append(rec)
        elif was.sha256 == rec.sha256:
            if rec.sha256 is None:
                result.identical_empty += 1
            else:
                result.identical.append(rec.path)
        else:
            result.differing.append(TileDiff(rec.path, rec.index, was.sha256, rec.sha256))
    if not result.narrowed:
        result.not_reproduced = [r for p, r in sorted(old.items()) if p not in new and r.sha256]


def reproduce_local(output: str | os.PathLike[str], to: str | os.PathLike[str] | None = None,
              selection: Selection | None = None, *, executor: str | None = None, workers: int | None = None,
              progress: ProgressCallback | None = None, **narrowing: Any) -> ReproduceResult:
    """Rerun OUTPUT from its saved recipe and process source into `to` and compare the tiles.

    Without a selection every recorded run is replayed with its own options; with one (zoom
    and bounds), the latest run's recipe runs once over it and only what it covers is compared.
    """
    sel = Selection.of(selection, **narrowing)
    start = time.perf_counter()
    source = Path(os.path.abspath(output))
    latest = read_manifest(source)
    target = Path(os.path.abspath(to)) if to is not None else default_target(source)
    _check_target(source, target)
    records = read_tile_records(source)
    narrowed = sel != Selection()
    result = ReproduceResult(source, target, narrowed=narrowed)
    manifests = [latest] if narrowed else _runs_to_replay(source, records, result.warnings)
    recipes = [saved_recipe(source, m, target) for m in manifests]  # fail before any tile runs
    _check_environment(manifests, result.warnings)
    for message in result.warnings:
        log.info("reproduce: %s", message)
    for manifest, recipe in zip(manifests, recipes):
        options = manifest.get("options") or {}
        run_sel = sel if narrowed else Selection.from_options(options)
        overwrite = False if narrowed else bool(options.get("overwrite"))
        log.info("reproduce: run %s into %s", manifest.get("run"), target)
        summary = execute(recipe, run_sel, overwrite=overwrite, executor=executor, workers=workers,
                          keep_going=True, progress=progress)
        result.runs.append(str(manifest.get("run")))
        result.failed += [f"tile {' '.join(map(str, o.index))}: {o.error}" for o in summary.failed]
    _compare(result, records, read_tile_records(target))
    result.seconds = time.perf_counter() - start
    report = provenance_dir(target) / "reproduce.json"
    try:
        report.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        log.warning("cannot write %s: %s", report, exc)
    return result


__all__ = ["ReproduceResult", "TileDiff", "VerifyResult", "default_target", "reproduce_local", "saved_recipe",
           "verify_local"]
