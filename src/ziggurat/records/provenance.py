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
import sys
from pathlib import Path
from typing import Any

from ziggurat.core.errors import InputError, OutputError, ProvenanceError, ZigguratError
from ziggurat.io import Output, input_driver, open_input
from ziggurat.io.checksum import compare_fingerprints, fingerprint_input
from ziggurat.io.storage.atomic import write_bytes_atomic
from ziggurat.process.load import ProcessRef, load_process
from ziggurat.recipe import Recipe
from ziggurat.recipe.dump import given_text, plain, resolved_text
from ziggurat.records.keys import RunKeys, code_digest
from ziggurat.records.recorder import MANIFEST_FILE, RunExtent, RunRecorder, write_manifest
from ziggurat.records.tile_records import (
    FOLDER,
    TILES_FILE,
    TileRecord,
    append_tile_records,
    compact_tile_records,
    has_tile_records,
    output_root,
    provenance_dir,
    read_tile_records,
)

log = logging.getLogger(__name__)

FORMAT = "ziggurat-provenance/1"
LIBRARIES = ("numpy", "rasterio", "fiona", "shapely", "morecantile", "pyyaml", "pystac")


# -- manifests ------------------------------------------------------------------------------------
def library_versions() -> dict[str, str | None]:
    """Versions that can change output bytes; reproduce warns when one differs."""
    from importlib.metadata import PackageNotFoundError, version

    import rasterio

    from ziggurat.core.version import __version__

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


def process_source(recipe: Recipe) -> tuple[Any, bytes | None]:
    """The loaded process and its source bytes (None for a compiled module: nothing to keep)."""
    loaded = load_process(ProcessRef.of(recipe))
    try:
        return loaded, loaded.source().encode("utf-8")
    except (OSError, TypeError) as exc:
        log.warning("process %r: no source to save (%s); it cannot be reproduced", recipe.process, exc)
        return loaded, None


def input_fingerprints(recipe: Recipe) -> dict[str, Any]:
    """What each input is now (for keys and provenance); an input that cannot be read is one
    error naming it (a special file, an I/O error, a file removed meanwhile), not a traceback."""
    out = {}
    for name, cfg in recipe.inputs.items():
        try:
            out[name] = input_driver(cfg).fingerprint(cfg)
        except ZigguratError:
            raise
        except OSError as exc:
            raise InputError(f"{recipe.describe_key('input')}: input {name!r} ({cfg.path}) cannot be read to "
                             f"fingerprint it: {exc.strerror or exc}") from exc
    return out


def changed_inputs(recipe: Recipe, manifest: dict[str, Any]) -> list[str]:
    """Inputs whose fingerprint differs from the one the run started with (cheap when nothing
    changed: fingerprints are cached by size, time and inode)."""
    try:
        now = input_fingerprints(recipe)
    except InputError as exc:   # removed or unreadable since the run began: that is a change too
        return [str(exc)]
    out = []
    for name, recorded in (manifest.get("inputs") or {}).items():
        why = compare_fingerprints(recorded.get("fingerprint") or {}, now.get(name) or {})
        if why is not None:
            out.append(f"{name} ({why})")
    return out


def run_keys(recipe: Recipe, process_sha: str | None = None, fingerprints: dict[str, Any] | None = None
             ) -> RunKeys:
    """The tile keys a run of `recipe` gives its tiles now (hashes the process source and inputs)."""
    if process_sha is None:
        source = process_source(recipe)[1]
        process_sha = None if source is None else code_digest(source)
    if fingerprints is None:
        fingerprints = input_fingerprints(recipe)
    per_tile = {name: open_input(cfg, recipe.grid) for name, cfg in recipe.inputs.items()
                if input_driver(cfg).tile_sources}  # their tiles' keys cover just what they read
    return RunKeys(recipe, process_sha, fingerprints, per_tile)


def begin_run(recipe: Recipe, output: Output, *, executor: str, workers: int,
              options: dict[str, Any] | None = None, extent: RunExtent | None = None,
              replaced: bool = False, records: Path | None = None) -> RunRecorder:
    """Save recipe, process source and a manifest (status "running") before any tile runs.
    `replaced`: the output's earlier pyramid was removed (its tile records go too); `records`:
    a stand-in output path whose records folder holds them instead of the output's (a part's)."""
    started = _now()
    path = Path(output.path)
    folder = provenance_dir(records or path)
    try:
        (folder / "runs").mkdir(parents=True, exist_ok=True)
        (folder / "sources").mkdir(exist_ok=True)
        given = given_text(recipe).encode("utf-8")
        resolved = resolved_text(recipe).encode("utf-8")
        loaded, source = process_source(recipe)
        given_rel, given_sha = _save_source(folder, "recipe-", ".yaml", given)
        resolved_rel, resolved_sha = _save_source(folder, "recipe-resolved-", ".yaml", resolved)
        write_bytes_atomic(folder / "recipe.yaml", given)
        write_bytes_atomic(folder / "recipe.resolved.yaml", resolved)
        process: dict[str, Any] = {"spec": recipe.process, "module": loaded.module.__name__,
                                   "origin": str(loaded.source_path) if loaded.source_path else None,
                                   "source": None, "sha256": None}
        if source is not None:
            process["source"], process["sha256"] = _save_source(folder, "process_", ".py", source)
            process["code_sha256"] = code_digest(source)   # what tile keys hold: the code, not its comments
            write_bytes_atomic(folder / "process.py", source)
        fingerprints = input_fingerprints(recipe)
        inputs = {name: {"path": str(cfg.path), "format": cfg.format, "fingerprint": fingerprints[name]}
                  for name, cfg in recipe.inputs.items()}
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
        keys = run_keys(recipe, process.get("code_sha256"), fingerprints)
        recorder = RunRecorder(recipe, output, manifest, bool(options.get("overwrite")), keys, extent, records)
        if replaced:
            recorder.ledger.clear()
        write_manifest(folder, manifest)
    except ZigguratError:  # an input's own error (InputError is an OSError too)
        raise
    except OSError as exc:
        raise OutputError(f"cannot record provenance in {folder}: {exc}") from exc
    return recorder


__all__ = ["FOLDER", "MANIFEST_FILE", "TILES_FILE", "RunExtent", "RunRecorder", "TileRecord", "append_tile_records",
           "begin_run", "compact_tile_records", "has_tile_records", "library_versions",
           "list_runs", "output_root", "recipe_files", "platform_info", "provenance_dir", "provenance_links",
           "read_manifest", "read_tile_records"]
