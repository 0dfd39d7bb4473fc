"""`ziggurat status OUTPUT`: what an output's ledger holds, per zoom, against its saved recipe.

Counts come from the ledger (grouped queries, never a scan of the tiles): written, empty and
failed process tiles per zoom, and which of the written or empty ones are stale against the
latest run's saved recipe and process source as they would run now (inputs fingerprinted
again), with the reason. Failed tiles are listed with the run that saw them and its error.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ziggurat.audit.reproduce import saved_recipe
from ziggurat.core.grid import TileIndex
from ziggurat.core.tasks import EMPTY, FAILED, WRITTEN
from ziggurat.recipe.area import run_area
from ziggurat.records.keys import reason_for_key, stale_lines
from ziggurat.records.ledger import DONE, Ledger, ledger_path
from ziggurat.records.provenance import list_runs, read_manifest, run_keys


@dataclass
class ZoomStatus:
    zoom: int
    written: int = 0
    empty: int = 0
    failed: int = 0
    stale: dict[str, int] = field(default_factory=dict)   # reason -> written/empty tiles made otherwise


@dataclass
class FailedTile:
    tile: TileIndex
    run: str | None
    error: str | None


@dataclass
class StatusReport:
    output: Path
    run: str | None                       # the latest run, whose saved recipe `stale` is against
    zooms: list[ZoomStatus] = field(default_factory=list)
    failed: list[FailedTile] = field(default_factory=list)

    @property
    def stale(self) -> int:
        return sum(sum(z.stale.values()) for z in self.zooms)

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "run": self.run, "zooms": [asdict(z) for z in self.zooms],
                "failed": [{"tile": list(f.tile), "run": f.run, "error": f.error} for f in self.failed]}

    def describe(self, list_failed: bool = False, limit: int = 50) -> str:
        lines = [f"{'zoom':>4} {'written':>10} {'empty':>10} {'failed':>8} {'stale':>8}"]
        for z in self.zooms:
            lines.append(f"{z.zoom:>4} {z.written:>10,} {z.empty:>10,} {z.failed:>8,} {sum(z.stale.values()):>8,}")
        lines += stale_lines(z.stale for z in self.zooms)
        if list_failed and self.failed:
            lines.append(f"failed tiles ({len(self.failed)}):")
            shown = self.failed if not limit else self.failed[:limit]
            lines += [f"  tile {' '.join(map(str, f.tile))} (run {f.run}): {f.error or 'see the run manifest'}"
                      for f in shown]
            if len(shown) < len(self.failed):
                lines.append(f"  ... and {len(self.failed) - len(shown)} more")
        lines.append(f"{self.output} (against the recipe of run {self.run})")
        return "\n".join(lines)


def status_local(output: str | os.PathLike[str]) -> StatusReport:
    """The ledger's counts per zoom; stale against the latest run's saved recipe."""
    source = Path(os.path.abspath(output))
    manifest = read_manifest(source)  # a clear error for an output without provenance
    report = StatusReport(source, manifest.get("run"))
    recipe = saved_recipe(source, manifest, source)
    options = manifest.get("options") or {}
    if options.get("area"):
        recipe = replace(recipe, area=run_area(recipe.area, options["area"], options.get("area_crs"),
                                               recipe.grid))
    if not ledger_path(source).is_file():
        return report
    keys = run_keys(recipe)
    errors = _errors(source)
    try:
        with Ledger(source, create=False) as ledger:
            by_zoom: dict[int, ZoomStatus] = {}
            for zoom, status_, key, n in ledger.count_by_key():
                z = by_zoom.setdefault(zoom, ZoomStatus(zoom))
                if status_ == FAILED:
                    z.failed += n
                    continue
                if status_ == WRITTEN:
                    z.written += n
                elif status_ == EMPTY:
                    z.empty += n
                if status_ in DONE and key != keys.key(zoom):
                    why = reason_for_key(ledger, key, keys.parts(zoom))
                    z.stale[why] = z.stale.get(why, 0) + n
            report.zooms = [by_zoom[z] for z in sorted(by_zoom)]
            report.failed = [FailedTile(tile, run, errors.get((run, tuple(tile))))
                             for tile, run in ledger.failed_tiles()]
    finally:
        keys.close()
    return report


def _errors(source: Path) -> dict[tuple[str | None, tuple[int, ...]], str]:
    """(run, tile) -> error, from the run manifests (each keeps its first 100 failures)."""
    out: dict[tuple[str | None, tuple[int, ...]], str] = {}
    for manifest in list_runs(source):
        for failure in manifest.get("failed_tiles") or []:
            out[(manifest.get("run"), tuple(failure.get("tile") or ()))] = str(failure.get("error"))
    return out


__all__ = ["FailedTile", "StatusReport", "ZoomStatus", "status_local"]
