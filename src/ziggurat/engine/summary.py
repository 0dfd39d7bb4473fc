"""What a run reports: `RunSummary` (counts, where the records are, the line the CLI prints) and
the `ProgressEvent`s a progress callback receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ziggurat.core.tasks import TileOutcome
from ziggurat.recipe import Recipe


@dataclass(frozen=True)
class ProgressEvent:
    done: int
    total: int
    outcome: TileOutcome


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class RunSummary:
    recipe: Recipe
    output_path: Path
    executor: str
    workers: int
    total: int = 0
    written: int = 0                 # process tiles that wrote data
    output_tiles: int = 0            # output tiles written (a metatile writes several)
    empty: int = 0
    skipped: int = 0
    stale: dict[str, int] = field(default_factory=dict)   # tiles rebuilt because what made them changed
    failed: list[TileOutcome] = field(default_factory=list)
    seconds: float = 0.0
    stac_item: Path | None = None    # the STAC item describing the output, if any
    stac_collection: Path | None = None   # the collection holding it (`stac.collection`)
    quicklook: Path | None = None    # .ziggurat/quicklook.png of a raster output
    vrts: list[Path] = field(default_factory=list)
    #: object-store requests by store: GET/PUT/HEAD/LIST/DELETE, bytes_in, bytes_out, retries
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    #: pixels the cast to the output dtype changed: "clipped" (out of range), "nodata" (valid
    #: values equal to nodata, read back as nodata)
    cast: dict[str, int] = field(default_factory=dict)

    def cast_warnings(self) -> list[str]:
        """One line per kind of change the cast made in this run (the CLI prints them)."""
        out, cfg = [], self.recipe.output
        if self.cast.get("clipped"):
            out.append(f"{self.cast['clipped']:,} pixel(s) were outside the range of {cfg.dtype} and were "
                       f"clipped to it (output {cfg.url}); scale the data or choose a wider output.dtype")
        if self.cast.get("nodata"):
            out.append(f"{self.cast['nodata']:,} valid pixel(s) equal the nodata value {cfg.nodata} after the cast "
                       f"to {cfg.dtype} and read back as nodata (output {cfg.url}); choose another output.nodata")
        return out

    @property
    def ok(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        """The summary the CLI prints: one line, then where the STAC item (and VRTs) are."""
        # one unit, process tiles; output tiles in brackets where a process tile writes several
        written = f"{self.written} tiles written"
        if self.output_tiles != self.written:
            written = f"{self.written} process tiles written ({self.output_tiles} output tiles)"
        parts = [written, f"{self.empty} empty", f"{self.skipped} skipped"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        text = f"{', '.join(parts)} in {self.seconds:.2f} s -> {self.recipe.output.url}"
        for store, counts in sorted(self.requests.items()):
            kinds = ", ".join(f"{counts[k]} {k}" for k in ("GET", "PUT", "HEAD", "LIST", "DELETE") if counts.get(k))
            text += (f"\n{store}: {kinds or 'no requests'}; {counts.get('bytes_in', 0):,} bytes in, "
                     f"{counts.get('bytes_out', 0):,} out, {counts.get('retries', 0)} retries")
        if self.stale:
            why = "; ".join(f"{n} {r}" for r, n in sorted(self.stale.items(), key=lambda kv: -kv[1]))
            text += f"\n{sum(self.stale.values())} rebuilt: {why}"
        if self.stac_item is not None:
            where = self.recipe.output
            text += f"\nSTAC item: {where.url + '/' + self.stac_item.name if where.remote else self.stac_item}"
        if self.stac_collection is not None:
            text += f"\nSTAC collection: {self.stac_collection}"
        if self.vrts:
            text += f"\nVRTs: {', '.join(str(p) for p in self.vrts)}"
        return text


__all__ = ["ProgressCallback", "ProgressEvent", "RunSummary"]
