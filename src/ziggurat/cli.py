"""Command line: each command parses options and calls one library function.

The only module that prints or configures logging. User errors (any `ZigguratError`) print
one clear message and exit 1; `--debug` shows the full traceback instead.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable

import click

from ziggurat import __version__
from ziggurat.errors import ProcessError, ZigguratError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


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


@main.command("execute")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("-z", "--zoom", help="Zoom level or range: 5 or 3,8 (must be inside zoom_levels).")
@click.option("-b", "--bounds", nargs=4, type=float, metavar="W S E N", help="Limit the area.")
@click.option("--bounds-crs", help="CRS of --bounds (default: the grid CRS).")
@click.option("-t", "--tile", nargs=3, type=int, metavar="Z R C", help="Process one tile only.")
@click.option("-p", "--point", nargs=2, type=float, metavar="X Y", help="Process the tiles at a point.")
@click.option("--point-crs", help="CRS of --point (default: the grid CRS).")
@click.option("-o", "--overwrite", is_flag=True, help="Reprocess tiles that already exist.")
@click.option("-e", "--executor", default="sequential", show_default=True,
              help="sequential or threads.")
@click.option("-w", "--workers", type=click.IntRange(min=1), help="Parallel workers (default: CPU count).")
@click.option("--keep-going", is_flag=True, help="Process all other tiles when one fails; exit 1 at the end.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_debug_option
def execute_cmd(recipe: str, zoom: str | None, bounds: tuple[float, ...] | None, bounds_crs: str | None,
                tile: tuple[int, int, int] | None, point: tuple[float, float] | None,
                point_crs: str | None, overwrite: bool, executor: str, workers: int | None,
                keep_going: bool, no_progress: bool) -> None:
    """Run RECIPE: process every tile of its zoom levels and area."""
    from ziggurat.engine import execute

    update, close = _progress_bar(not no_progress)
    try:
        summary = execute(recipe, zoom=zoom, bounds=bounds or None, bounds_crs=bounds_crs,
                          tile=tile or None, point=point or None, point_crs=point_crs,
                          overwrite=overwrite, executor=executor, workers=workers,
                          keep_going=keep_going, progress=update)
    finally:
        close()
    click.echo(summary.describe())
    if summary.failed:
        click.echo(f"{len(summary.failed)} tile(s) failed:", err=True)
        for outcome in summary.failed:
            click.echo(f"  tile {outcome.index}: {outcome.error}", err=True)
        sys.exit(EXIT_ERROR)


@main.command("processes")
@_debug_option
def processes_cmd() -> None:
    """List the ready-made processes."""
    from ziggurat.process import list_processes

    for name, summary in list_processes():
        click.echo(f"{name:<16} {summary}")


if __name__ == "__main__":  # pragma: no cover
    main()
