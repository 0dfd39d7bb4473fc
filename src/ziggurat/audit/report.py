"""`ziggurat plan`: what a run would do, per zoom, by index arithmetic only."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ziggurat.core.tasks import EMPTY, FAILED, RUN_END, WAIT, task_index
from ziggurat.engine.run import load, plan
from ziggurat.io import Output, open_output
from ziggurat.plan import Selection
from ziggurat.plan.schedule import PROCESS, Schedule, baselevel_range, make_source
from ziggurat.plan.tiles import Plan
from ziggurat.process.load import ProcessRef, probe_import
from ziggurat.recipe import Recipe
from ziggurat.records.keys import RunKeys, reason_for_key, stale_lines
from ziggurat.records.ledger import DONE, Ledger, ledger_path
from ziggurat.records.provenance import run_keys
from ziggurat.records.recorder import OVERWRITE_STATE, RunExtent
from ziggurat.records.remote import pulled
from ziggurat.records.shards import BLOCK, Shard
from ziggurat.records.staleness import Staleness
from ziggurat.records.tile_records import output_root


@dataclass
class ZoomPlan:
    zoom: int
    kind: str                 # "process", "lower" or "higher" (an overview zoom)
    process_tiles: int
    output_tiles: int
    recorded: int             # process tiles continue mode skips: written or empty, made as now
    estimated_bytes: int
    estimate_basis: str       # "mean of N written tiles" or "uncompressed"
    done: int = 0             # written, made by the recipe as it is now
    empty: int = 0            # processed, nothing there, made as now
    stale: dict[str, int] = field(default_factory=dict)   # written/empty by another recipe: reason -> n
    failed: int = 0           # failed last time: run again
    todo: int = 0             # what a continue-mode run processes: new, stale and failed tiles


#: PUTs of a run's records besides its tiles (measured on moto: lock, ledger segments and their
#: compaction, metadata.json, manifest, recipe and process sources, STAC item, quicklook); a first
#: run also writes the sources and folders' first files
RECORD_PUTS, FIRST_RECORD_PUTS = 8, 11
#: LIST and HEAD requests of a run: the bucket check, the records pull, the lock
RUN_LISTS, RUN_HEADS = 5, 3


@dataclass
class PlanReport:
    output: str
    zooms: list[ZoomPlan] = field(default_factory=list)
    #: an object-store output: the requests and bytes a continue-mode run would spend (estimate)
    requests: dict[str, int] | None = None

    @property
    def process_tiles(self) -> int:
        return sum(z.process_tiles for z in self.zooms)

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "process_tiles": self.process_tiles,
                "zooms": [asdict(z) for z in self.zooms], "requests": self.requests}

    def describe(self) -> str:
        lines = [f"{'zoom':>4} {'kind':<8} {'process':>12} {'output':>12} {'to do':>10} {'done':>10} "
                 f"{'empty':>8} {'stale':>8} {'failed':>7} {'est. size':>10}  basis"]
        for z in self.zooms:
            lines.append(f"{z.zoom:>4} {z.kind:<8} {z.process_tiles:>12,} {z.output_tiles:>12,} {z.todo:>10,} "
                         f"{z.done:>10,} {z.empty:>8,} {sum(z.stale.values()):>8,} {z.failed:>7,} "
                         f"{_human(z.estimated_bytes):>10}  {z.estimate_basis} (estimate)")
        lines += stale_lines(z.stale for z in self.zooms)
        lines.append(f"{self.process_tiles:,} process tiles -> {self.output}")
        if self.requests is not None:
            r = self.requests
            lines.append(f"requests (estimate): {r['PUT']:,} PUT, {r['GET']:,} GET, {r['LIST']} LIST, {r['HEAD']} "
                         f"HEAD, {r['DELETE']} DELETE; {_human(r['bytes_out'])} out")
        return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


_SIZE_SAMPLE = 64


def plan_report(recipe: Recipe, plan: Plan, output: Output, keys: RunKeys | None = None) -> PlanReport:
    """Tile counts per zoom (never enumerating tiles), what the ledger has, estimated size.

    With `keys` (what a run would make now), recorded tiles made otherwise count as stale, with
    the reason; tiles whose upstream tile-directory tiles changed are found only when a run
    looks at them (that needs the tiles themselves, not counts)."""
    if recipe.output.remote:  # the bucket's records, in a private copy (a run may use the state folder)
        with pulled(recipe.output.url, recipe.output.storage_options, must_exist=False,
                    want=_shards_wanted(recipe, plan)) as root:   # a window's shards only
            report = _report(recipe, plan, output, keys, root)
            report.requests = _requests(report, root)
            return report
    return _report(recipe, plan, output, keys, output.path)


def _shards_wanted(recipe: Recipe, plan: Plan) -> Callable[[Shard], bool] | None:
    """The ledger shards a plan of a window reads (its process tiles' and output tiles' blocks)."""
    if plan.bounds is None or plan.only:
        return None
    blocks: dict[int, list[tuple[range, range]]] = {}
    for zoom in plan.zooms:
        for grid in (plan.grid, recipe.output_grid):
            rows, cols = grid.tile_range(plan.bounds, zoom)
            if len(rows) and len(cols):
                blocks.setdefault(zoom, []).append((range(rows[0] // BLOCK, rows[-1] // BLOCK + 1),
                                                    range(cols[0] // BLOCK, cols[-1] // BLOCK + 1)))

    def want(shard: Shard) -> bool:
        assert not isinstance(shard, str)
        zoom, r, c = shard
        return any(r in rows and c in cols for rows, cols in blocks.get(zoom, ()))
    return want


def _requests(report: PlanReport, records: Path) -> dict[str, int]:
    """What a continue-mode run into a bucket spends: one PUT per output tile to do, its records,
    one GET per records object it pulls; bytes out by the size estimate."""
    tiles = bytes_out = 0
    for z in report.zooms:
        share = z.todo / z.process_tiles if z.process_tiles else 0.0
        tiles += round(z.output_tiles * share)
        bytes_out += round(z.estimated_bytes * share)
    pulled_files = sum(1 for p in records.rglob("*") if p.is_file() and not p.name.startswith("ledger.sqlite"))
    fresh = pulled_files == 0
    return {"PUT": tiles + (FIRST_RECORD_PUTS if fresh else RECORD_PUTS), "GET": pulled_files + 1,
            "LIST": RUN_LISTS, "HEAD": RUN_HEADS, "DELETE": 2, "bytes_out": bytes_out}


def _report(recipe: Recipe, plan: Plan, output: Output, keys: RunKeys | None, records: Path) -> PlanReport:
    levels = baselevel_range(recipe) or (min(plan.zooms), max(plan.zooms))
    kinds = Schedule(plan, levels) if plan.zooms else None
    ledger = Ledger(records, create=False) if ledger_path(records).is_file() else None
    report = PlanReport(recipe.output.url)
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
            size, basis = _estimate(ledger, output, zoom, output_root(records))
            zp = ZoomPlan(zoom, kinds.kind(zoom) if kinds else PROCESS, count, out_count, 0,
                          int(size * out_count), basis)
            if ledger is not None and plan.bounds is not None and not plan.only:
                rows, cols = plan.grid.tile_range(plan.bounds, zoom)
                _ledger_counts(zp, ledger, ledger.count_keys_in(zoom, rows, cols),
                               None if keys is None else keys.key(zoom), keys)
            zp.todo = max(count - zp.recorded, 0)
            report.zooms.append(zp)
        if ledger is not None and keys is not None and plan.zooms and plan.count() <= SIMULATE_TILES:
            _walk(recipe, plan, ledger, keys, report)
    finally:
        if ledger is not None:
            ledger.close()
    return report


#: plans up to this many tiles are walked with the run's own task source and staleness decision
#: (about 10 us a tile); bigger ones are counted by key (input files read per tile and overview
#: tiles above rebuilt ones are then not seen)
SIMULATE_TILES = 2_000_000


def _walk(recipe: Recipe, plan: Plan, ledger: Ledger, keys: RunKeys, report: PlanReport) -> None:
    """What a continue-mode run would hand out, zoom by zoom: the run's task source walked with the
    run's staleness decision, every task taken as done at once (so overview tiles above a rebuilt
    tile are counted, as the run rebuilds them)."""
    staleness = Staleness(ledger, keys, RunExtent.from_json(ledger.get_state(OVERWRITE_STATE)))
    source = make_source(recipe, plan, staleness.is_done, lambda tile: None)
    todo: dict[int, int] = {}
    stale: dict[int, dict[str, int]] = {}
    for task in source:
        if task is WAIT or task is RUN_END:
            continue
        index = task_index(task)
        todo[index.zoom] = todo.get(index.zoom, 0) + 1
        row = ledger.row(index)
        if row is not None and row.status in DONE:
            why = staleness.reason(plan.grid.tile(*index), row) or "a tile it is made from is rebuilt"
            stale.setdefault(index.zoom, {})[why] = stale.setdefault(index.zoom, {}).get(why, 0) + 1
        source.finished(index, True)
    for zp in report.zooms:
        zp.todo, zp.stale = todo.get(zp.zoom, 0), stale.get(zp.zoom, {})


def _ledger_counts(zp: ZoomPlan, ledger: Ledger, counts: dict[tuple[str, str | None], int], now: str | None,
                   keys: RunKeys | None) -> None:
    """Fill in done/empty/stale/failed from (status, key) counts of the zoom's window."""
    for (status, key), n in counts.items():
        if status == FAILED:
            zp.failed += n
        elif status in DONE and (now is None or key == now):
            if status == EMPTY:
                zp.empty += n
            else:
                zp.done += n
        elif status in DONE and keys is not None:
            why = reason_for_key(ledger, key, keys.parts(zp.zoom))
            zp.stale[why] = zp.stale.get(why, 0) + n
    zp.recorded = min(zp.process_tiles, zp.done + zp.empty)


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


def dry_run(recipe: Recipe | str | os.PathLike[str], selection: Selection | None = None,
            **narrowing: Any) -> PlanReport:
    """`ziggurat plan`: tiles per zoom, what the ledger has, estimated size; runs nothing."""
    recipe = load(recipe)
    probe_import(ProcessRef.of(recipe))   # a module that kills or hangs the interpreter: named, not fatal
    run_plan = plan(recipe, selection, **narrowing)
    keys = run_keys(recipe)
    try:
        return plan_report(recipe, run_plan, open_output(recipe.output, recipe.grid), keys)
    finally:
        keys.close()



__all__ = ["dry_run", "PlanReport", "ZoomPlan", "plan_report"]
