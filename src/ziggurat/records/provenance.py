"""Provenance kept with every output: what ran, on what, with what, and what it wrote.

Layout, in ``OUT/.ziggurat/`` for a tile directory ``OUT`` (``OUT.tif.ziggurat/`` beside a
single-file output ``OUT.tif``)::

    recipe.yaml            the latest run's recipe as given (a YAML dump for a mapping recipe)
    recipe.resolved.yaml   the same, resolved: absolute paths, defaults, bounds in the grid CRS
    process.py             the latest run's process source
    manifest.json          the latest run's manifest (a copy of its runs/<run id>.json)
    runs/<run id>.json     one manifest per run; the run id is its UTC start time, so they sort
    sources/               content-addressed copies the run manifests point to:
                           recipe-<sha12>.yaml, recipe-resolved-<sha12>.yaml, process_<sha12>.py
    ledger.sqlite          the tile ledger: process tile outcomes and output tile checksums
                           (see `ziggurat.records.ledger`; `ziggurat.records.tile_records` reads it)

Workers hash each tile right after writing it (`TileOutcome.checksums`); the engine hands
every outcome to a `RunRecorder`, which writes the process tile's outcome and its output
tiles' checksums to the ledger in one transaction (batched commits) and, at the end of the
run (also a failed or interrupted one), records the tiles in flight that reached the disk,
commits and completes the manifest. Tiles a run skips keep their older records.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from ziggurat.errors import OutputError, ProvenanceError
from ziggurat.grid import Tile, TileIndex
from ziggurat.io import Output
from ziggurat.io.atomic import write_bytes_atomic
from ziggurat.io.checksum import fingerprint_input, sha256_or_none
from ziggurat.io.common import int_names
from ziggurat.process import ProcessRef, load_process
from ziggurat.recipe import Recipe
from ziggurat.recipe.dump import given_text, plain, resolved_text
from ziggurat.records.ledger import Ledger, ledger_path
from ziggurat.records.tile_records import (
    FOLDER,
    TILES_FILE,
    TileRecord,
    append_tile_records,
    compact_tile_records,
    has_tile_records,
    import_legacy_records,
    is_single_file,
    output_root,
    provenance_dir,
    read_tile_records,
)
from ziggurat.tasks import EMPTY, FAILED, WRITTEN, TileOutcome

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
FORMAT = "ziggurat-provenance/1"
_SALVAGE_SLACK_NS = 2_000_000_000   # file system clocks may lag time.time_ns() a little
LIBRARIES = ("numpy", "rasterio", "fiona", "shapely", "morecantile", "pyyaml", "pystac")


# -- manifests ------------------------------------------------------------------------------------
def library_versions() -> dict[str, str | None]:
    """Versions that can change output bytes; reproduce warns when one differs."""
    from importlib.metadata import PackageNotFoundError, version

    import rasterio

    from ziggurat import __version__

    out: dict[str, str | None] = {"ziggurat": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["gdal"] = rasterio.__gdal_version__
    out["proj"] = getattr(rasterio, "__proj_version__", None)
    return out


def platform_info() -> dict[str, str]:
    return {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
            "platform": platform.platform(), "python": sys.version.split()[0],
            "implementation": platform.python_implementation()}


def read_manifest(output_path: str | os.PathLike[str], run: str | None = None) -> dict[str, Any]:
    """The latest run's manifest, or the manifest of run id `run`."""
    folder = provenance_dir(output_path)
    path = folder / MANIFEST_FILE if run is None else folder / "runs" / f"{run}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProvenanceError(f"{output_path}: no provenance found ({path} is missing); was it "
                              "written by ziggurat >= 0.1?") from exc
    except (OSError, ValueError) as exc:
        raise ProvenanceError(f"cannot read {path}: {exc}") from exc


def list_runs(output_path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every run's manifest, oldest first."""
    runs = provenance_dir(output_path) / "runs"
    out = []
    for path in sorted(runs.glob("*.json")) if runs.is_dir() else []:
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable run manifest %s: %s", path, exc)
    return out


def provenance_links(output_path: str | os.PathLike[str],
                     relative_to: str | os.PathLike[str] | None = None) -> list[dict[str, str]]:
    """STAC links to the saved recipe, resolved recipe, process source and manifest.

    Hrefs are relative to `relative_to` (the STAC item's folder; default the output folder);
    only files that exist are listed.
    """
    folder = provenance_dir(output_path)
    base = Path(relative_to) if relative_to is not None else output_root(output_path)
    links = []
    for name, rel, media, title in (
            ("recipe.yaml", "ziggurat:recipe", "application/yaml", "Recipe as given"),
            ("recipe.resolved.yaml", "ziggurat:recipe-resolved", "application/yaml",
             "Recipe as resolved (absolute paths, defaults)"),
            ("process.py", "ziggurat:process", "text/x-python", "Process source"),
            (MANIFEST_FILE, "ziggurat:manifest", "application/json",
             "Run manifest (versions, inputs, command line)")):
        if (folder / name).is_file():
            href = Path(os.path.relpath(folder / name, base)).as_posix()
            links.append({"rel": rel, "href": href, "type": media, "title": title})
    return links


def _save_source(folder: Path, stem: str, ext: str, data: bytes) -> tuple[str, str]:
    """Store content-addressed; returns (path relative to the provenance folder, sha256)."""
    sha = hashlib.sha256(data).hexdigest()
    rel = f"sources/{stem}{sha[:12]}{ext}"
    if not (folder / rel).exists():
        write_bytes_atomic(folder / rel, data)
    return rel, sha


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _new_run_id(runs: Path, when: dt.datetime) -> str:
    base = when.strftime("%Y%m%dT%H%M%S.%fZ")
    run, n = base, 1
    while (runs / f"{run}.json").exists():
        n += 1
        run = f"{base}-{n}"
    return run


def _as_file(value: Any, base: Path) -> Path | None:
    """The absolute path `value` names if it is an existing file (not WKT or GeoJSON text)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip() or value.lstrip().startswith(("{", "/vsi")):
        return None
    path = Path(os.path.abspath(base / os.path.expanduser(value.strip())))
    with contextlib.suppress(OSError, ValueError):  # e.g. WKT longer than a file name may be
        if path.is_file():
            return path
    return None


def recipe_files(recipe: Recipe, options: dict[str, Any] | None = None) -> dict[str, Path]:
    """Files besides the inputs that shape the output: an `area` file, a custom TMS JSON, and
    an area file given at run time (relative to the working directory)."""
    found = {"area": _as_file(recipe.raw.get("area"), recipe.base_dir),
             "pyramid.grid": _as_file(recipe.grid.name, recipe.base_dir),
             "run area": _as_file((options or {}).get("area"), Path.cwd())}
    return {key: path for key, path in found.items() if path is not None}


def _jsonable_option(value: Any) -> Any:
    if isinstance(getattr(value, "wkt", None), str):  # a shapely geometry (run-time area)
        return value.wkt
    try:
        return json.loads(json.dumps(plain(value)))
    except (TypeError, ValueError):
        return str(value)


# -- recording a run ------------------------------------------------------------------------------
class RunRecorder:
    """The engine's hook: `begin_run` at the start, `add` per outcome, `finish` at the end."""

    def __init__(self, recipe: Recipe, output: Output, manifest: dict[str, Any], overwrite: bool) -> None:
        self.recipe, self.output, self.manifest, self.overwrite = recipe, output, manifest, overwrite
        self.run: str = manifest["run"]
        self.path = Path(output.path)
        self.folder = provenance_dir(self.path)
        self.root = output_root(self.path)
        self.single = not output.capabilities.tile_files  # one file: one record at the end
        self.start_ns = time.time_ns()
        self._buffer: list[TileRecord] = []
        fresh = not ledger_path(self.path).is_file()
        import_legacy_records(self.path)
        #: no ledger but tiles on disk (written by an older ziggurat): continue mode falls back
        #: to "the tile files exist" and adopts such tiles into the ledger (see `adopt`)
        self.legacy = fresh and not self.single and bool(int_names(self.root))
        self.ledger = Ledger(self.path)
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
        """Continue mode: the ledger says written or empty (a legacy output: the files exist)."""
        if self.single:
            return False
        return self.ledger.is_done(process_tile.index) or (self.legacy and self.output.exists(process_tile))

    def skipped(self, process_tile: Tile) -> None:
        """A tile continue mode skipped: one of a legacy output enters the ledger."""
        if self.legacy and not self.ledger.is_done(process_tile.index):
            self.adopt(process_tile)

    def adopt(self, process_tile: Tile) -> None:
        """Record an existing tile of an output without a ledger as written (hashing its files)."""
        for tile in self.output.output_tiles(process_tile):
            self._buffer.append(TileRecord(self._rel(tile.index), sha256_or_none(self.output.tile_path(tile)),
                                           tile.index, None))
        self.ledger.record_process(process_tile.index, WRITTEN, None)
        self.flush()

    def add(self, outcome: TileOutcome) -> None:
        index = TileIndex(*outcome.index)
        self._pending.discard(index)
        if self.single:
            return
        if outcome.status == FAILED:
            self._failed.add(index)
            self.ledger.record_process(index, FAILED, self.run)
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
            unwritten = [t.index for t in self.output.output_tiles(self.recipe.grid.tile(*index))
                         if t.index not in wrote]
        for i in unwritten:
            rel = self._rel(i)
            # without --overwrite an older tile that is still there keeps its record
            if self.overwrite or not os.path.exists(self._base + rel):
                self._buffer.append(TileRecord(rel, None, i, self.run))
        self.ledger.record_process(index, outcome.status, self.run)  # same transaction as its tiles
        self.flush()

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
            self.ledger.close()

    def _finish(self, summary: Any, error: BaseException | None) -> None:
        if self.single:
            if error is None and not summary.failed and self.path.is_file():
                self._buffer.append(TileRecord(self.path.name, sha256_or_none(self.path), None, self.run))
        else:
            self._salvage()
        self.flush()
        self.ledger.commit()
        failed = [{"tile": list(o.index), "error": o.error} for o in summary.failed[:100]]
        status = ("interrupted" if isinstance(error, KeyboardInterrupt)
                  else "failed" if error is not None or summary.failed else "succeeded")
        ended = _now()
        self.manifest.update({
            "status": status, "ended": ended.isoformat(), "seconds": round(summary.seconds, 3),
            "error": None if error is None else f"{type(error).__name__}: {error}",
            "summary": {"total": summary.total, "process_tiles_written": summary.written,
                        "output_tiles_written": summary.output_tiles, "empty": summary.empty,
                        "skipped": summary.skipped, "failed": len(summary.failed)},
            "failed_tiles": failed, "tile_records": self.records})
        self._write_manifest()

    def _write_manifest(self) -> None:
        data = (json.dumps(self.manifest, indent=2, allow_nan=False) + "\n").encode()
        write_bytes_atomic(self.folder / "runs" / f"{self.run}.json", data)
        write_bytes_atomic(self.folder / MANIFEST_FILE, data)


def begin_run(recipe: Recipe, output: Output, *, executor: str, workers: int,
              options: dict[str, Any] | None = None) -> RunRecorder:
    """Save recipe, process source and a manifest (status "running") before any tile runs."""
    started = _now()
    path = Path(output.path)
    folder = provenance_dir(path)
    try:
        (folder / "runs").mkdir(parents=True, exist_ok=True)
        (folder / "sources").mkdir(exist_ok=True)
        given = given_text(recipe).encode("utf-8")
        resolved = resolved_text(recipe).encode("utf-8")
        loaded = load_process(ProcessRef(recipe.process, str(recipe.base_dir)))
        try:
            source: bytes | None = loaded.source().encode("utf-8")
        except (OSError, TypeError) as exc:  # compiled module: no source to keep
            log.warning("process %r: no source to save (%s); it cannot be reproduced", recipe.process, exc)
            source = None
        given_rel, given_sha = _save_source(folder, "recipe-", ".yaml", given)
        resolved_rel, resolved_sha = _save_source(folder, "recipe-resolved-", ".yaml", resolved)
        write_bytes_atomic(folder / "recipe.yaml", given)
        write_bytes_atomic(folder / "recipe.resolved.yaml", resolved)
        process: dict[str, Any] = {"spec": recipe.process, "module": loaded.module.__name__,
                                   "origin": str(loaded.source_path) if loaded.source_path else None,
                                   "source": None, "sha256": None}
        if source is not None:
            process["source"], process["sha256"] = _save_source(folder, "process_", ".py", source)
            write_bytes_atomic(folder / "process.py", source)
        inputs = {}
        for name, cfg in recipe.inputs.items():
            inputs[name] = {"path": str(cfg.path), "format": cfg.format,
                            "fingerprint": fingerprint_input(cfg.path)}
        options = dict(options or {})
        found = recipe_files(recipe, options)
        if "run area" in found:  # replayed from another working directory
            options["area"] = str(found["run area"])
        files = {key: {"path": str(p), "fingerprint": fingerprint_input(p)} for key, p in found.items()}
        manifest: dict[str, Any] = {
            "format": FORMAT, "run": _new_run_id(folder / "runs", started), "status": "running",
            "started": started.isoformat(), "ended": None,
            "output": str(path), "command": list(sys.argv), "cwd": os.getcwd(),
            "executor": executor, "workers": workers,
            "options": {k: _jsonable_option(v) for k, v in options.items()},
            "recipe": {"path": str(recipe.path) if recipe.path else None, "base_dir": str(recipe.base_dir),
                       "given": given_rel, "given_sha256": given_sha,
                       "resolved": resolved_rel, "resolved_sha256": resolved_sha},
            "process": process, "inputs": inputs, "files": files,
            "versions": library_versions(), "platform": platform_info(),
        }
        recorder = RunRecorder(recipe, output, manifest, bool(options.get("overwrite")))
        recorder._write_manifest()
    except OSError as exc:
        raise OutputError(f"cannot record provenance in {folder}: {exc}") from exc
    return recorder


__all__ = ["FOLDER", "MANIFEST_FILE", "TILES_FILE", "RunRecorder", "TileRecord", "append_tile_records",
           "begin_run", "compact_tile_records", "has_tile_records", "is_single_file", "library_versions",
           "list_runs", "output_root", "recipe_files", "platform_info", "provenance_dir", "provenance_links",
           "read_manifest", "read_tile_records"]
