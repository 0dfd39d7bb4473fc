"""The CLI's shared parts: the command group, error handling and the shared options.

The only place (with the commands) that prints or configures logging. User errors (any
`ZigguratError`) print one clear message and exit 1; `--debug` shows the full traceback,
with the whole chain of causes, instead.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from typing import Any, Callable

import click

from ziggurat.core import interrupts
from ziggurat.core.errors import ProcessError, ZigguratError
from ziggurat.core.location import is_url
from ziggurat.core.version import __version__
from ziggurat.executors import Executor
from ziggurat.plan.selection import Selection

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def interrupt(signum: int, frame: Any) -> None:
    """The first Ctrl-C or SIGTERM cancels: workers stop, nothing half-written stays, exit 130.
    A second one while that runs stops at once (`interrupt_again`)."""
    interrupts.mark()   # a real interrupt, not a process raising KeyboardInterrupt
    signal.signal(signal.SIGINT, interrupt_again)
    signal.signal(signal.SIGTERM, interrupt_again)
    interrupts.stop()   # now, or at the pool loop's next safe point


def interrupt_again(signum: int, frame: Any) -> None:
    """Stop now, without a traceback: this run's shared memory is unlinked; pool processes die
    with this one; committed ledger rows are kept and the next run sweeps temporary files."""
    from ziggurat.executors.shm import remove_own

    remove_own()
    os.write(2, b"Interrupted again: stopped at once. Rerun the same command to resume.\n")
    os._exit(EXIT_INTERRUPTED)


def _setup_logging(verbose: int, debug: bool) -> None:
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def debug_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Adds -v/--debug and turns user errors into one line on stderr and exit code 1."""

    @click.option("-v", "--verbose", count=True, help="More log output (-vv for debug logs).")
    @click.option("--debug", is_flag=True, help="Show full tracebacks (with their causes) for errors.")
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
            # the run is cleaned up; exiting now: a late Ctrl-C must not kill the interpreter while it
            # finalises (Python resets its own handlers to SIG_DFL then, not an ignored signal): rc 130
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            click.echo("Interrupted. Tiles written so far are complete; rerun the same command "
                       "without --overwrite to resume.", err=True)
            if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
                sys.stdout.flush()   # a tile still running in a thread (-e threads): the interpreter would
                sys.stderr.flush()   # wait for it at exit; everything of the run is already saved
                os._exit(EXIT_INTERRUPTED)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


_ZOOM = click.option("-z", "--zoom", help="Zoom level or range: 5 or 3,8 (must be inside zoom_levels).")
_BOUNDS = (click.option("-b", "--bounds", nargs=4, type=float, metavar="W S E N", help="Limit the area."),
           click.option("--bounds-crs", help="CRS of --bounds (default: the grid CRS)."))
_MORE = (click.option("-t", "--tile", nargs=3, type=int, metavar="Z R C", help="Process one tile only."),
         click.option("-p", "--point", nargs=2, type=float, metavar="X Y", help="Process the tiles at a point."),
         click.option("--point-crs", help="CRS of --point (default: the grid CRS)."),
         click.option("-a", "--area", metavar="WKT|GEOJSON|PATH",
                      help="Process only tiles meeting this polygon (narrows the recipe's area); "
                           "raster outputs are masked to it."),
         click.option("--area-crs", help="CRS of a WKT/GeoJSON --area (default: the grid CRS)."),
         click.option("--part", metavar="I/N",
                      help="Only part I of N (1 <= I <= N), for batch systems: parts run at once on other "
                           "machines; a plain run afterwards ends the job (docs/scale-out.md)."))


def selection_options(full: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The run-narrowing options (-z, -b, --bounds-crs; with `full` also -t, -p, --point-crs,
    -a, --area-crs, --part), handed to the command as one `selection` argument."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            narrowing = {name: kwargs.pop(name, None) for name in
                         ("zoom", "bounds", "bounds_crs", "tile", "point", "point_crs", "area", "area_crs",
                          "part")}
            return func(*args, selection=Selection(**narrowing), **kwargs)

        for option in reversed((_ZOOM, *_BOUNDS, *(_MORE if full else ()))):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def _versions() -> str:
    import rasterio

    return (f"ziggurat {__version__} (rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__}, "
            f"PROJ {rasterio.__proj_version__})")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="ziggurat", message=_versions())
def main() -> None:
    """ziggurat: tile-pyramid processing for geospatial rasters and vectors."""


def dask_executor(executor: str | None, scheduler: str | None, workers: int | None,
                  retries: int, tile_timeout: float | None = None) -> Executor | None:
    """Built here, not in the engine, so the dashboard link is printed before the run starts."""
    if scheduler is not None and executor not in (None, "dask"):
        raise click.UsageError("--dask-scheduler needs --executor dask")
    if scheduler is None and (executor or os.environ.get("ZIGGURAT_EXECUTOR")) != "dask":
        return None
    from ziggurat.executors import get_executor

    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # distributed logs at INFO otherwise
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # read when dask is imported
    pool = get_executor("dask", workers, retries=retries, scheduler=scheduler, tile_timeout=tile_timeout)
    if logging.getLogger().getEffectiveLevel() > logging.INFO:   # without -v: ziggurat's one message, not
        for name in list(logging.root.manager.loggerDict):       # distributed's ERROR lines (a lost scheduler)
            if name.split(".")[0] in ("distributed", "tornado"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
    click.echo(f"Dask dashboard: {pool.dashboard_link or 'not available (pip install bokeh)'}", err=True)
    return pool


class LocationType(click.ParamType):
    """A local path that must exist, or an object-store URL (checked when it is used)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = os.fspath(value)
        if is_url(text):
            return text
        return str(click.Path(exists=True).convert(text, param, ctx))
