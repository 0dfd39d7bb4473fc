"""`ziggurat plan`: what a run would do, per zoom, by index arithmetic only."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ziggurat.io import Output
from ziggurat.plan.schedule import PROCESS, Schedule, baselevel_range
from ziggurat.plan.tiles import Plan
from ziggurat.recipe import Recipe
from ziggurat.records.ledger import Ledger, ledger_path
from ziggurat.records.tile_records import output_root


@dataclass
class ZoomPlan:
    zoom: int
    kind: str                 # "process", "lower" or "higher" (an overview zoom)
    process_tiles: int
    output_tiles: int
    recorded: int             # process tiles the ledger already has (written or empty)
    estimated_bytes: int
    estimate_basis: str       # "mean of N written tiles" or "uncompressed"


@dataclass
class PlanReport:
    output: str
    zooms: list[ZoomPlan] = field(default_factory=list)

    @property
    def process_tiles(self) -> int:
        return sum(z.process_tiles for z in self.zooms)

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "process_tiles": self.process_tiles,
                "zooms": [asdict(z) for z in self.zooms]}

    def describe(self) -> str:
        lines = [f"{'zoom':>4} {'kind':<8} {'process':>12} {'output':>12} {'recorded':>10} "
                 f"{'est. size':>10}  basis"]
        for z in self.zooms:
            lines.append(f"{z.zoom:>4} {z.kind:<8} {z.process_tiles:>12,} {z.output_tiles:>12,} "
                         f"{z.recorded:>10,} {_human(z.estimated_bytes):>10}  {z.estimate_basis} (estimate)")
        lines.append(f"{self.process_tiles:,} process tiles -> {self.output}")
        return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


_SIZE_SAMPLE = 64


def plan_report(recipe: Recipe, plan: Plan, output: Output) -> PlanReport:
    """Tile counts per zoom (never enumerating tiles), what the ledger has, estimated size."""
    levels = baselevel_range(recipe) or (min(plan.zooms), max(plan.zooms))
    kinds = Schedule(plan, levels) if plan.zooms else None
    ledger = Ledger(output.path, create=False) if ledger_path(output.path).is_file() else None
    report = PlanReport(str(output.path))
    try:
        for zoom in sorted(plan.zooms):
            count = plan.count(zoom)
            ratio = (plan.grid.metatiling // recipe.output.metatiling) ** 2
            if plan.only or plan.bounds is None:
                out_count = count * ratio
            elif plan.geometry is None:
                out_count = recipe.output_grid.count_tiles(plan.bounds, zoom)
            else:
                out_count = count * ratio  # an upper bound: edge metatiles may be clipped
            recorded = 0
            if ledger is not None and plan.bounds is not None and not plan.only:
                rows, cols = plan.grid.tile_range(plan.bounds, zoom)
                recorded = min(count, ledger.count_done_in(zoom, rows, cols))
            size, basis = _estimate(ledger, output, zoom, output_root(output.path))
            report.zooms.append(ZoomPlan(zoom, kinds.kind(zoom) if kinds else PROCESS, count, out_count,
                                         recorded, int(size * out_count), basis))
    finally:
        if ledger is not None:
            ledger.close()
    return report


def _estimate(ledger: Ledger | None, output: Output, zoom: int, root: Any) -> tuple[float, str]:
    """Bytes per output tile: the mean of written tiles of the zoom, else uncompressed."""
    if ledger is not None:
        sizes = []
        for p in ledger.written_paths(zoom, _SIZE_SAMPLE):
            try:
                sizes.append(os.path.getsize(os.path.join(root, p)))
            except OSError:
                pass
        if sizes:
            return sum(sizes) / len(sizes), f"mean of {len(sizes)} written tiles"
    return float(output.tile_bytes(zoom)), "uncompressed"


__all__ = ["PlanReport", "ZoomPlan", "plan_report"]
