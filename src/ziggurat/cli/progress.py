"""Progress of a run on the command line: a bar on a terminal, elsewhere (nohup, SLURM, CI) a line
every N seconds, or JSON lines for schedulers and notebooks.

The periodic lines come from a timer thread, so a run whose tiles are slow still reports (the
same numbers again, with the time since the last tile): it does not look hung.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Callable, TextIO

from ziggurat.core.tasks import FAILED

MODES = ("auto", "bar", "log", "json", "none")
#: the first line away from a terminal comes this early (at most), then one every interval: a
#: scheduler's log shows within seconds that the run started, not after the first 30 s
FIRST_LINE_SECONDS = 5.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Reporter:
    """Takes the engine's progress events; prints a line (text or JSON) every `interval` s."""

    def __init__(self, mode: str, interval: float, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mode, self.interval, self.stream, self.clock = mode, interval, stream or sys.stderr, clock
        self.start = clock()
        self.done = self.total = self.failed = 0
        self.last_tile = self.start
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="ziggurat-progress", daemon=True)
        self._thread.start()

    def update(self, event: Any) -> None:
        with self._lock:
            self.done, self.total = event.done, event.total
            if event.outcome.status == FAILED:
                self.failed += 1
            self.last_tile = self.clock()

    def snapshot(self, final: bool = False) -> dict[str, Any]:
        with self._lock:
            now = self.clock()
            elapsed = now - self.start
            rate = self.done / elapsed if elapsed > 0 else 0.0
            left = max(self.total - self.done, 0)
            return {"done": self.done, "total": self.total, "failed": self.failed,
                    "percent": round(100.0 * self.done / self.total, 1) if self.total else None,
                    "rate": round(rate, 3), "eta_s": round(left / rate, 1) if rate > 0 and left else None,
                    "elapsed_s": round(elapsed, 1), "since_last_tile_s": round(now - self.last_tile, 1),
                    "final": final}

    def line(self, snap: dict[str, Any]) -> str:
        if self.mode == "json":
            return json.dumps(snap)
        pct = f" ({snap['percent']:.0f}%)" if snap["percent"] is not None else ""
        eta = f", ETA {_duration(snap['eta_s'])}" if snap["eta_s"] is not None else ""
        quiet = f", last tile {_duration(snap['since_last_tile_s'])} ago" if snap["since_last_tile_s"] >= \
            max(self.interval, 1) and not snap["final"] else ""
        return (f"progress: {snap['done']}/{snap['total']} tiles{pct}, {snap['rate']:.2f} tiles/s{eta}, "
                f"{snap['failed']} failed, {_duration(snap['elapsed_s'])} elapsed{quiet}")

    def emit(self, final: bool = False) -> None:
        self.stream.write(self.line(self.snapshot(final)) + "\n")
        self.stream.flush()

    def _tick(self) -> None:
        wait = min(self.interval, FIRST_LINE_SECONDS)
        while not self._stop.wait(wait):
            if self.total:
                self.emit()
                wait = self.interval
            else:   # nothing known yet: look again soon rather than a whole interval later
                wait = min(self.interval, FIRST_LINE_SECONDS)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.total:   # a run that never started (a recipe error) reports nothing
            self.emit(final=True)


def progress_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--progress, --progress-interval and --no-progress, handed on as `progress_mode` and
    `progress_interval` (--no-progress is --progress none)."""
    import functools

    import click

    @click.option("--progress", "progress_mode", type=click.Choice(MODES), default="auto", show_default=True,
                  help="auto: a bar on a terminal, else a line every --progress-interval; json: JSON lines.")
    @click.option("--progress-interval", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
                  metavar="SECONDS", help="Seconds between progress lines (log and json).")
    @click.option("--no-progress", is_flag=True, help="No progress output (--progress none).")
    @functools.wraps(func)
    def wrapper(*args: Any, progress_mode: str, progress_interval: float, no_progress: bool, **kwargs: Any) -> Any:
        return func(*args, progress_mode="none" if no_progress else progress_mode,
                    progress_interval=progress_interval, **kwargs)

    return wrapper


def _columns() -> int:
    """The terminal's width; 0 where it reports none (a bar there would print nothing at all)."""
    import os

    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0


def progress_reporter(mode: str, interval: float) -> tuple[Callable[[Any], None] | None, Callable[[], None]]:
    """(callback for `execute`, close) for a --progress mode; "auto": a bar on a terminal, else lines."""
    if mode == "none":
        return None, lambda: None
    if mode == "bar" or (mode == "auto" and sys.stderr.isatty() and _columns() > 0):
        from tqdm import tqdm

        bar = tqdm(unit="tile", dynamic_ncols=True, file=sys.stderr)

        def update(event: Any) -> None:
            if bar.total != event.total:
                bar.total = event.total
            bar.update(event.done - bar.n)

        return update, bar.close
    reporter = Reporter("json" if mode == "json" else "log", interval)
    return reporter.update, reporter.close


__all__ = ["MODES", "Reporter", "progress_options", "progress_reporter"]
