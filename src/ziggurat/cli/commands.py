"""The commands: each parses its options and calls one library function."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from ziggurat.cli.app import (
    EXIT_ERROR,
    LocationType,
    dask_executor,
    debug_option,
    interrupt,
    main,
    selection_options,
)
from ziggurat.cli.progress import progress_options, progress_reporter
from ziggurat.plan.selection import Selection

#: a local output (must exist) or an object-store URL (s3://bucket/out)
OUTPUT_ARG = LocationType()


@main.command("execute")
@click.argument("recipe", type=click.Path(dir_okay=False))
@selection_options()
@click.option("-o", "--overwrite", is_flag=True, help="Reprocess tiles that already exist.")
@click.option("-e", "--executor", type=click.Choice(["processes", "threads", "sequential", "dask"]),
              help="How tiles run (default: $ZIGGURAT_EXECUTOR or processes).")
@click.option("-w", "--workers", type=click.IntRange(min=1), help="Parallel workers (default: CPU count).")
@click.option("--tile-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="processes or dask executor: stop a tile running longer, retry it, then fail it.")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Reruns of a tile whose worker process died (segfault, OOM kill).")
@click.option("--write-in", type=click.Choice(["workers", "parent"]),
              help="processes executor: who encodes tiles (default: workers, see bench/).")
@click.option("--dask-scheduler", metavar="tcp://HOST:PORT",
              help="dask executor: use this running cluster (default: a local cluster of --workers).")
@click.option("--keep-going", is_flag=True, help="Process all other tiles when one fails; exit 1 at the end.")
@click.option("--retry-failed", is_flag=True,
              help="Run exactly the tiles the ledger records as failed (of the selected zooms).")
@click.option("--vrt", is_flag=True, help="Also write a GDAL VRT per zoom (<zoom>.vrt) into the output.")
@click.option("--allow-empty", is_flag=True, help="Exit 0 when every tile was empty (by default: exit 1).")
@click.option("--accept-process-change", is_flag=True,
              help="Tiles made by an earlier version of the process count as done: the change is declared "
                   "harmless (recorded with who and when). Comment-only edits need no flag.")
@progress_options
@debug_option
def execute_cmd(recipe: Any, selection: Selection, overwrite: bool, executor: str | None, workers: int | None,
                tile_timeout: float | None, retries: int, write_in: str | None, dask_scheduler: str | None,
                keep_going: bool, retry_failed: bool, vrt: bool, allow_empty: bool, accept_process_change: bool,
                progress_mode: str, progress_interval: float) -> None:
    """Run RECIPE: process every tile of its zoom levels and area."""
    from ziggurat.engine.run import execute, load, prepare

    dask_timeout = tile_timeout
    if dask_scheduler is not None or (executor or os.environ.get("ZIGGURAT_EXECUTOR")) == "dask":
        loaded = load(recipe)  # a recipe error shows before a cluster is started or reached
        prepare(loaded)
        recipe, dask_timeout = loaded, tile_timeout if tile_timeout is not None else loaded.tile_timeout
    pool = dask_executor(executor, dask_scheduler, workers, retries, dask_timeout)  # None unless dask
    update, close = progress_reporter(progress_mode, progress_interval)
    previous = signal.signal(signal.SIGTERM, interrupt)
    previous_int = signal.signal(signal.SIGINT, interrupt)
    try:
        summary = execute(recipe, selection, overwrite=overwrite, executor=pool or executor, workers=workers,
                          retries=retries, write_in=write_in, keep_going=keep_going,
                          retry_failed=retry_failed, tile_timeout=tile_timeout, progress=update, vrt=vrt,
                          accept_process_change=accept_process_change)
    finally:
        if signal.getsignal(signal.SIGINT) is interrupt:  # not interrupted: as before the run
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
        # interrupted: a late second Ctrl-C still exits quietly (interrupt_again) until the exit
        close()
        if pool is not None:
            pool.close()
    click.echo(summary.describe())
    if summary.failed:
        click.echo(f"{len(summary.failed)} tile(s) failed:", err=True)
        for outcome in summary.failed:
            click.echo(f"  tile {outcome.index}: {outcome.error}", err=True)
        sys.exit(EXIT_ERROR)
    if summary.empty and not (summary.written or summary.skipped) and not allow_empty:
        click.echo(f"no tile had data: all {summary.empty} were empty (bounds or an area outside every input?); "
                   "--allow-empty accepts such a run", err=True)
        sys.exit(EXIT_ERROR)


@main.command("plan")
@click.argument("recipe", type=click.Path(dir_okay=False))
@selection_options()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@debug_option
def plan_cmd(recipe: str, selection: Selection, as_json: bool) -> None:
    """Dry run: tiles per zoom (process and output), how many the ledger has, estimated size."""
    import json

    from ziggurat.audit.report import dry_run

    report = dry_run(recipe, selection)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.describe())


@main.command("processes")
@click.argument("name", required=False)
@debug_option
def processes_cmd(name: str | None) -> None:
    """List the ready-made processes; with NAME (or a .py file), its parameters and docstring."""
    if name is not None:
        from ziggurat.cli.scaffold import describe_process

        click.echo(describe_process(name).describe())
        return
    from ziggurat.process.load import list_processes

    for process, summary in list_processes():
        click.echo(f"{process:<16} {summary}")


@main.command("create")
@click.argument("name")
@click.option("-d", "--dir", "folder", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder to write NAME.py and NAME.yaml into.")
@debug_option
def create_cmd(name: str, folder: str) -> None:
    """Start a new process: NAME.py and a recipe NAME.yaml that run as they are."""
    from ziggurat.cli.scaffold import create_project

    for path in create_project(name, folder):
        click.echo(path)
    click.echo(f"Next: ziggurat execute {Path(folder) / (name + '.yaml')}")


@main.command("formats")
@debug_option
def formats_cmd() -> None:
    """List the input and output formats."""
    from ziggurat.cli.scaffold import formats

    for kind, entries in formats().items():
        click.echo(f"{kind}:")
        for name, desc in entries:
            click.echo(f"  {name:<20} {desc}")


@main.command("stac")
@click.argument("output_dir", metavar="OUTPUT", type=click.Path(exists=True))
@debug_option
def stac_cmd(output_dir: str) -> None:
    """(Re)build OUTPUT's STAC item from what is on disk: <folder>/<folder>.json for a tile
    directory, <name>.stac.json beside a single GeoTIFF."""
    from ziggurat.records.catalog.stac import build_item

    click.echo(build_item(output_dir))


@main.command("quicklook")
@click.argument("output", type=click.Path(exists=True))
@click.option("-o", "--out", "dest", type=click.Path(dir_okay=False), help="PNG to write (default: "
              "OUTPUT/.ziggurat/quicklook.png).")
@click.option("--size", type=click.IntRange(min=16), default=1024, show_default=True,
              help="Pixels on the long side.")
@click.option("--colormap", default="viridis", show_default=True, help="For one band: a rio-tiler colormap name.")
@debug_option
def quicklook_cmd(output: str, dest: str | None, size: int, colormap: str) -> None:
    """Write a small PNG overview of OUTPUT (a tile directory or a single GeoTIFF)."""
    from ziggurat.records.catalog.quicklook import make_quicklook

    click.echo(make_quicklook(output, dest, size=size, colormap=colormap))


@main.command("pmtiles")
@click.argument("output", metavar="OUTPUT", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--to", "dest", type=click.Path(dir_okay=False), help="The archive (default: OUTPUT.pmtiles).")
@click.option("-z", "--zoom", help="Zoom level or range to pack: 5 or 3,8 (default: all).")
@click.option("--colormap", default="viridis", show_default=True,
              help="GeoTIFF tiles of one band: the rio-tiler colormap they are drawn with.")
@click.option("--band", type=click.IntRange(min=1), default=1, show_default=True, help="The band drawn (1-based).")
@click.option("--attribution", help="Attribution shown by web maps.")
@debug_option
def pmtiles_cmd(output: str, dest: str | None, zoom: str | None, colormap: str, band: int,
                attribution: str | None) -> None:
    """Pack a mercator raster tile directory into one PMTiles v3 archive of PNG tiles."""
    from ziggurat.recipe import parse_zoom_levels
    from ziggurat.serve.pmtiles import pack_pmtiles
    from ziggurat.serve.render import Style

    zooms = None
    if zoom is not None:
        lo, hi = parse_zoom_levels(zoom)
        zooms = range(lo, hi + 1)
    click.echo(pack_pmtiles(output, dest, zooms=zooms, style=Style(colormap, band=band), attribution=attribution))


@main.command("serve")
@click.argument("target", metavar="RECIPE|OUTPUT", type=click.Path(exists=True))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (local only by default).")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@debug_option
def serve_cmd(target: str, host: str, port: int) -> None:
    """A web map of OUTPUT (or RECIPE's output: missing tiles are processed on demand)."""
    from ziggurat.serve import serve

    serve(target, host, port, ready=lambda url: click.echo(f"Serving {target} at {url} (Ctrl-C stops)"))


@main.command("index")
@click.argument("output_dir", metavar="OUTPUT", type=click.Path(exists=True))
@click.option("-z", "--zoom", help="Zoom level or range to index: 5 or 3,8 (default: all).")
@click.option("--gpkg", "formats", flag_value="gpkg", multiple=True,
              help="Tile footprints as index.gpkg (the default).")
@click.option("--fgb", "formats", flag_value="fgb", multiple=True, help="Tile footprints as index.fgb.")
@click.option("--geojson", "formats", flag_value="geojson", multiple=True,
              help="Tile footprints as index.geojson.")
@click.option("--vrt", "formats", flag_value="vrt", multiple=True, help="A GDAL VRT per zoom: <zoom>.vrt.")
@click.option("--txt", "formats", flag_value="txt", multiple=True, help="Tile paths, one a line: index.txt.")
@click.option("--absolute-paths", is_flag=True, help="Absolute tile paths (default: relative to OUTPUT_DIR).")
@debug_option
def index_cmd(output_dir: str, zoom: str | None, formats: tuple[str, ...], absolute_paths: bool) -> None:
    """Write indexes of the tiles in OUTPUT_DIR; prints the files written."""
    from ziggurat.recipe import parse_zoom_levels
    from ziggurat.records.catalog.index import write_index

    zooms = None
    if zoom is not None:
        lo, hi = parse_zoom_levels(zoom)
        zooms = range(lo, hi + 1)
    for path in write_index(output_dir, zooms=zooms, formats=formats or ("gpkg",), absolute=absolute_paths):
        click.echo(path)


@main.command("status")
@click.argument("output", type=OUTPUT_ARG)
@click.option("--failed", "list_failed", is_flag=True, help="List the failed tiles with their errors.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Failed tiles listed (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@debug_option
def status_cmd(output: str, list_failed: bool, limit: int, as_json: bool) -> None:
    """Per zoom: written, empty, failed and stale tiles of OUTPUT (stale: against its saved recipe)."""
    import json

    from ziggurat.audit.checks import status

    report = status(output)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.describe(list_failed, limit))


@main.command("verify")
@click.argument("output", type=OUTPUT_ARG)
@click.option("-z", "--zoom", help="Zoom level or range to check: 5 or 3,8 (default: all; on a bucket only "
              "their ledger shards are fetched).")
@click.option("-w", "--workers", type=click.IntRange(min=1), help="Hashing threads (default: 2 x CPUs).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Tiles listed per problem kind (0: all).")
@debug_option
def verify_cmd(output: str, zoom: str | None, workers: int | None, limit: int) -> None:
    """Check OUTPUT's tiles against its recorded checksums: missing, changed, extra (exit 1)."""
    from ziggurat.audit.checks import verify
    from ziggurat.recipe import parse_zoom_levels

    zooms = None
    if zoom is not None:
        lo, hi = parse_zoom_levels(zoom)
        zooms = range(lo, hi + 1)
    result = verify(output, workers=workers, zooms=zooms)
    click.echo(result.describe(limit))
    if not result.ok:
        sys.exit(EXIT_ERROR)


@main.command("reproduce")
@click.argument("output", type=OUTPUT_ARG)
@click.option("--to", "to", type=click.Path(), help="New folder (default: OUTPUT.reproduced-<time>).")
@selection_options(full=False)
@click.option("-e", "--executor", type=click.Choice(["processes", "threads", "sequential"]),
              help="How tiles run (default: $ZIGGURAT_EXECUTOR or processes).")
@click.option("-w", "--workers", type=click.IntRange(min=1), help="Parallel workers (default: CPU count).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Tiles listed per difference kind (0: all).")
@progress_options
@debug_option
def reproduce_cmd(output: str, to: str | None, selection: Selection, executor: str | None,
                  workers: int | None, limit: int, progress_mode: str, progress_interval: float) -> None:
    """Rerun OUTPUT from its saved recipe and process source into a new folder and compare tiles.

    With -z/-b only that zoom/area is rerun from the latest run's recipe; without, every
    recorded run is replayed."""
    from ziggurat.audit.checks import reproduce

    update, close = progress_reporter(progress_mode, progress_interval)
    try:
        result = reproduce(output, to, selection, executor=executor, workers=workers, progress=update)
    finally:
        close()
    for message in result.warnings:
        click.echo(f"Warning: {message}", err=True)
    click.echo(result.describe(limit))
    if not result.ok:
        sys.exit(EXIT_ERROR)


def _zoom_range(zoom: str) -> range:
    from ziggurat.recipe import parse_zoom_levels

    lo, hi = parse_zoom_levels(zoom)
    return range(lo, hi + 1)


_TILE_WINDOW = [
    click.option("-z", "--zoom", required=True, help="Zoom level or range: 5 or 3,8."),
    click.option("-b", "--bounds", type=float, nargs=4, metavar="LEFT BOTTOM RIGHT TOP",
                 help="Only tiles meeting these bounds (in the tile grid's CRS; default: every tile of the zooms)."),
]


def _tile_window(func: Any) -> Any:
    for option in reversed(_TILE_WINDOW):
        func = option(func)
    return func


@main.command("cp")
@click.argument("source", metavar="SOURCE")
@click.argument("target", metavar="TARGET")
@_tile_window
@click.option("--overwrite", is_flag=True, help="Copy tiles the target has already (default: keep them).")
@click.option("-w", "--workers", type=click.IntRange(min=1), default=8, show_default=True,
              help="Tiles copied at once.")
@debug_option
def cp_cmd(source: str, target: str, zoom: str, bounds: tuple[float, ...] | None, overwrite: bool,
           workers: int) -> None:
    """Copy the tiles of tile directory SOURCE to TARGET (folders or bucket URLs), by zoom and bounds."""
    from ziggurat.audit.copy import copy_tiles
    from ziggurat.core.bounds import Bounds

    window = Bounds(*bounds) if bounds else None
    click.echo(copy_tiles(source, target, _zoom_range(zoom), window, overwrite=overwrite, workers=workers).describe())


@main.command("rm")
@click.argument("output", metavar="OUTPUT")
@_tile_window
@click.option("-f", "--force", is_flag=True, help="Do not ask (needed where there is no terminal to ask on).")
@debug_option
def rm_cmd(output: str, zoom: str, bounds: tuple[float, ...] | None, force: bool) -> None:
    """Remove the tiles of OUTPUT (a tile directory or bucket URL) by zoom and bounds, with their records."""
    from ziggurat.audit.remove import count_tiles, remove_tiles
    from ziggurat.core.bounds import Bounds

    window, zooms = (Bounds(*bounds) if bounds else None), _zoom_range(zoom)
    if not force:
        if not sys.stdin.isatty():
            raise click.UsageError("rm asks before it removes tiles: add --force (-f) where there is no terminal")
        n = count_tiles(output, zooms, window)
        click.confirm(f"Remove {n} tiles of zoom {zoom} from {output}?", abort=True)
    click.echo(remove_tiles(output, zooms, window).describe())
