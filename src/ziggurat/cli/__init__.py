"""Command line: each command parses options and calls one library function.

The only module that prints or configures logging. User errors (any `ZigguratError`) print
one clear message and exit 1; `--debug` shows the full traceback instead.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from typing import Any, Callable

import click

from ziggurat import __version__
from ziggurat.errors import ProcessError, ZigguratError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM cancels like Ctrl-C: workers stop, nothing half-written stays, exit 130."""
    raise KeyboardInterrupt


def _setup_logging(verbose: int, debug: bool) -> None:
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _debug_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Adds -v/--debug and turns user errors into one line on stderr and exit code 1."""

    @click.option("-v", "--verbose", count=True, help="More log output (-vv for debug logs).")
    @click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
    @functools.wraps(func)
    def wrapper(*args: Any, verbose: int, debug: bool, **kwargs: Any) -> Any:
        _setup_logging(verbose, debug)
        try:
            return func(*args, **kwargs)
        except ZigguratError as exc:
            if debug:
                if isinstance(exc, ProcessError) and exc.traceback:
                    click.echo(exc.traceback, err=True)
                raise
            click.echo(f"Error: {exc}", err=True)
            if isinstance(exc, ProcessError):
                click.echo("(run with --debug for the process traceback)", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("Interrupted. Tiles written so far are complete; rerun the same command "
                       "without --overwrite to resume.", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="ziggurat")
def main() -> None:
    """ziggurat: tile-pyramid processing for geospatial rasters and vectors."""


def _progress_bar(enabled: bool) -> tuple[Callable[[Any], None] | None, Callable[[], None]]:
    if not enabled or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(unit="tile", dynamic_ncols=True, file=sys.stderr)

    def update(event: Any) -> None:
        if bar.total != event.total:
            bar.total = event.total
        bar.update(event.done - bar.n)

    return update, bar.close


def _dask_executor(executor: str | None, scheduler: str | None, workers: int | None, retries: int) -> Any:
    """Built here, not in the engine, so the dashboard link is printed before the run starts."""

    if scheduler is not None and executor not in (None, "dask"):
        raise click.UsageError("--dask-scheduler needs --executor dask")
    if scheduler is None and (executor or os.environ.get("ZIGGURAT_EXECUTOR")) != "dask":
        return None
    from ziggurat.executors import get_executor

    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # distributed logs at INFO otherwise
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # read when dask is imported
    pool = get_executor("dask", workers, retries=retries, scheduler=scheduler)
    click.echo(f"Dask dashboard: {pool.dashboard_link or 'not available (pip install bokeh)'}", err=True)
    return pool


@main.command("execute")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("-z", "--zoom", help="Zoom level or range: 5 or 3,8 (must be inside zoom_levels).")
@click.option("-b", "--bounds", nargs=4, type=float, metavar="W S E N", help="Limit the area.")
@click.option("--bounds-crs", help="CRS of --bounds (default: the grid CRS).")
@click.option("-t", "--tile", nargs=3, type=int, metavar="Z R C", help="Process one tile only.")
@click.option("-p", "--point", nargs=2, type=float, metavar="X Y", help="Process the tiles at a point.")
@click.option("--point-crs", help="CRS of --point (default: the grid CRS).")
@click.option("-a", "--area", metavar="WKT|GEOJSON|PATH",
              help="Process only tiles meeting this polygon (narrows the recipe's area); "
                   "raster outputs are masked to it.")
@click.option("--area-crs", help="CRS of a WKT/GeoJSON --area (default: the grid CRS).")
@click.option("-o", "--overwrite", is_flag=True, help="Reprocess tiles that already exist.")
@click.option("-e", "--executor", type=click.Choice(["processes", "threads", "sequential", "dask"]),
              help="How tiles run (default: $ZIGGURAT_EXECUTOR or processes).")
@click.option("-w", "--workers", type=click.IntRange(min=1), help="Parallel workers (default: CPU count).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Reruns of a tile whose worker process died (segfault, OOM kill).")
@click.option("--write-in", type=click.Choice(["workers", "parent"]),
              help="processes executor: who encodes tiles (default: workers, see bench/).")
@click.option("--dask-scheduler", metavar="tcp://HOST:PORT",
              help="dask executor: use this running cluster (default: a local cluster of --workers).")
@click.option("--keep-going", is_flag=True, help="Process all other tiles when one fails; exit 1 at the end.")
@click.option("--vrt", is_flag=True, help="Also write a GDAL VRT per zoom (<zoom>.vrt) into the output.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_debug_option
def execute_cmd(recipe: Any, zoom: str | None, bounds: tuple[float, ...] | None, bounds_crs: str | None,
                tile: tuple[int, int, int] | None, point: tuple[float, float] | None,
                point_crs: str | None, area: str | None, area_crs: str | None, overwrite: bool, executor: str | None, workers: int | None,
                retries: int, write_in: str | None, dask_scheduler: str | None, keep_going: bool, vrt: bool,
                no_progress: bool) -> None:
    """Run RECIPE: process every tile of its zoom levels and area."""
    from ziggurat.engine import execute, load, prepare

    if dask_scheduler is not None or (executor or os.environ.get("ZIGGURAT_EXECUTOR")) == "dask":
        recipe = load(recipe)  # a recipe error shows before a cluster is started or reached
        prepare(recipe)
    pool = _dask_executor(executor, dask_scheduler, workers, retries)  # None unless dask
    update, close = _progress_bar(not no_progress)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = execute(recipe, zoom=zoom, bounds=bounds or None, bounds_crs=bounds_crs,
                          tile=tile or None, point=point or None, point_crs=point_crs,
                          area=area, area_crs=area_crs,
                          overwrite=overwrite, executor=pool or executor, workers=workers,
                          retries=retries, write_in=write_in, keep_going=keep_going,
                          progress=update, vrt=vrt)
    finally:
        signal.signal(signal.SIGTERM, previous)
        close()
        if pool is not None:
            pool.close()
    click.echo(summary.describe())
    if summary.failed:
        click.echo(f"{len(summary.failed)} tile(s) failed:", err=True)
        for outcome in summary.failed:
            click.echo(f"  tile {outcome.index}: {outcome.error}", err=True)
        sys.exit(EXIT_ERROR)


@main.command("plan")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("-z", "--zoom", help="Zoom level or range: 5 or 3,8 (must be inside zoom_levels).")
@click.option("-b", "--bounds", nargs=4, type=float, metavar="W S E N", help="Limit the area.")
@click.option("--bounds-crs", help="CRS of --bounds (default: the grid CRS).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_debug_option
def plan_cmd(recipe: str, zoom: str | None, bounds: tuple[float, ...] | None, bounds_crs: str | None,
             as_json: bool) -> None:
    """Dry run: tiles per zoom (process and output), how many the ledger has, estimated size."""
    import json

    from ziggurat.engine import dry_run

    report = dry_run(recipe, zoom=zoom, bounds=bounds or None, bounds_crs=bounds_crs)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.describe())


@main.command("processes")
@_debug_option
def processes_cmd() -> None:
    """List the ready-made processes."""
    from ziggurat.process import list_processes

    for name, summary in list_processes():
        click.echo(f"{name:<16} {summary}")


@main.command("stac")
@click.argument("output_dir", type=click.Path(exists=True, file_okay=False))
@_debug_option
def stac_cmd(output_dir: str) -> None:
    """(Re)build OUTPUT_DIR's STAC item (<folder>/<folder>.json) from the tiles on disk."""
    from ziggurat.records.stac import build_item

    click.echo(build_item(output_dir))


@main.command("index")
@click.argument("output_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-z", "--zoom", help="Zoom level or range to index: 5 or 3,8 (default: all).")
@click.option("--gpkg", "formats", flag_value="gpkg", multiple=True,
              help="Tile footprints as index.gpkg (the default).")
@click.option("--fgb", "formats", flag_value="fgb", multiple=True, help="Tile footprints as index.fgb.")
@click.option("--geojson", "formats", flag_value="geojson", multiple=True,
              help="Tile footprints as index.geojson.")
@click.option("--vrt", "formats", flag_value="vrt", multiple=True, help="A GDAL VRT per zoom: <zoom>.vrt.")
@click.option("--txt", "formats", flag_value="txt", multiple=True, help="Tile paths, one a line: index.txt.")
@click.option("--absolute-paths", is_flag=True, help="Absolute tile paths (default: relative to OUTPUT_DIR).")
@_debug_option
def index_cmd(output_dir: str, zoom: str | None, formats: tuple[str, ...], absolute_paths: bool) -> None:
    """Write indexes of the tiles in OUTPUT_DIR; prints the files written."""
    from ziggurat.records.index import write_index
    from ziggurat.recipe import parse_zoom_levels

    zooms = None
    if zoom is not None:
        lo, hi = parse_zoom_levels(zoom)
        zooms = range(lo, hi + 1)
    for path in write_index(output_dir, zooms=zooms, formats=formats or ("gpkg",), absolute=absolute_paths):
        click.echo(path)


@main.command("verify")
@click.argument("output", type=click.Path(exists=True))
@click.option("-w", "--workers", type=click.IntRange(min=1), help="Hashing threads (default: 2 x CPUs).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Tiles listed per problem kind (0: all).")
@_debug_option
def verify_cmd(output: str, workers: int | None, limit: int) -> None:
    """Check OUTPUT's tiles against its recorded checksums: missing, changed, extra (exit 1)."""
    from ziggurat.reproduce import verify

    result = verify(output, workers=workers)
    click.echo(result.describe(limit))
    if not result.ok:
        sys.exit(EXIT_ERROR)


@main.command("reproduce")
@click.argument("output", type=click.Path(exists=True))
@click.option("--to", "to", type=click.Path(), help="New folder (default: OUTPUT.reproduced-<time>).")
@click.option("-z", "--zoom", help="Only this zoom level or range (default: replay the recorded runs).")
@click.option("-b", "--bounds", nargs=4, type=float, metavar="W S E N", help="Only this area.")
@click.option("--bounds-crs", help="CRS of --bounds (default: the grid CRS).")
@click.option("-e", "--executor", type=click.Choice(["processes", "threads", "sequential"]),
              help="How tiles run (default: $ZIGGURAT_EXECUTOR or processes).")
@click.option("-w", "--workers", type=click.IntRange(min=1), help="Parallel workers (default: CPU count).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Tiles listed per difference kind (0: all).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_debug_option
def reproduce_cmd(output: str, to: str | None, zoom: str | None, bounds: tuple[float, ...] | None,
                  bounds_crs: str | None, executor: str | None, workers: int | None, limit: int,
                  no_progress: bool) -> None:
    """Rerun OUTPUT from its saved recipe and process source into a new folder and compare tiles."""
    from ziggurat.reproduce import reproduce

    update, close = _progress_bar(not no_progress)
    try:
        result = reproduce(output, to, zoom=zoom, bounds=bounds or None, bounds_crs=bounds_crs,
                           executor=executor, workers=workers, progress=update)
    finally:
        close()
    for message in result.warnings:
        click.echo(f"Warning: {message}", err=True)
    click.echo(result.describe(limit))
    if not result.ok:
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":  # pragma: no cover
    main()
