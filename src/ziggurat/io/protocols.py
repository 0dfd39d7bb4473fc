"""The seams between the engine and the drivers: `Input`, `TileInput` and `Output`.

Drivers implement these protocols; the engine, the executors and the records only ever call
what is declared here and decide by an output's declared `OutputCapabilities`, never by
probing attributes or testing a driver's class. A new format is a new driver plus one line in
`ziggurat.io`'s format tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from ziggurat.core.grid import Bounds, Grid, Tile, TileIndex
from ziggurat.core.timesteps import TimeSteps
from ziggurat.io.outputs.stored import StoredOutput
from ziggurat.recipe import InputConfig


@runtime_checkable
class TileInput(Protocol):
    """One input bound to one tile: what a process receives under the input's name."""

    #: what `read` returns: "raster" (a masked array) or "vector" (a list of features)
    kind: Literal["raster", "vector"]
    tile: Tile

    def is_empty(self) -> bool:
        """Cheap: True when the input has nothing in the tile (a bounds test, no pixels read)."""
        ...

    def read(self, *args: Any, **kwargs: Any) -> Any:
        """The tile's data plus its pixel buffer, on the tile's grid (raster: a masked array;
        vector: a list of features)."""
        ...


@runtime_checkable
class Input(Protocol):
    """An opened input, built once per worker and shared by the tiles it runs."""

    name: str
    #: footprint in the grid CRS (None: nothing inside the grid); bounds a recipe without `bounds`
    bounds: Bounds | None
    #: `sources(tile)` names the files a tile reads (tile directories): a tile's key then covers
    #: just those, so changing one upstream tile makes only its dependants stale
    tile_sources: bool

    def for_tile(self, tile: Tile) -> TileInput: ...

    def sources(self, tile: Tile) -> Sequence[tuple[str | Path, str | None]]:
        """The files a read of `tile` uses, each with what identifies its content (None: look it
        up: the upstream ledger's checksum, or size and time); [] without `tile_sources`."""
        ...

    def close(self) -> None:
        """Release dataset handles; safe to call twice."""
        ...


class InputDriver(Protocol):
    """An input driver class: opens a config on a grid; its declared attributes are readable
    without opening anything."""

    tile_sources: bool

    def __call__(self, config: InputConfig, grid: Grid) -> Input: ...

    def fingerprint(self, config: InputConfig) -> dict[str, Any]:
        """What identifies the input's content now (kept in the run manifest, part of tile keys)."""
        ...


@dataclass(frozen=True)
class OutputCapabilities:
    """What an output can do; every decision about an output is made from these."""

    #: what a process returns for it: arrays ("raster") or lists of features ("vector")
    kind: Literal["raster", "vector"]
    #: every output tile is its own file: checksums per tile, continue mode, stale tiles removed
    #: with --overwrite, a tile index and a STAC item describe it
    tile_files: bool
    #: stored tiles read back as rasters (`read`): overview zooms can be built from them
    overviews: bool
    #: only the parent process may write (one file): workers compute, the parent writes
    writes_in_parent: bool
    #: results can be handed to the parent as prepared arrays (`prepare_array`/`write_prepared`)
    parent_writes: bool
    #: several parent threads may call `write_prepared` at once
    threadsafe_writes: bool



@runtime_checkable
class Output(Protocol):
    """An output store. Its life in a run: `prepare` (before any tile; creates or checks the
    store), `start_run`, one `write` (workers) or `write_prepared` (parent) per process tile,
    `finish_run`. `grid` is the process grid, `output_grid` the grid of the stored tiles."""

    path: Path
    format: str
    grid: Grid
    output_grid: Grid
    capabilities: OutputCapabilities
    #: a time series' steps (`output.time`), None for one image per tile
    time: TimeSteps | None
    #: steps the stored series held when `prepare` found the recipe appending steps to it (0: none)
    series_extends: int

    @property
    def stored(self) -> StoredOutput:
        """What the output holds once written: the object the records, the catalog and every
        check after the run ask (the same `open_stored` reads back)."""
        ...

    def check_run(self, zooms: Sequence[int], bounds: Bounds | None) -> None:
        """Refuse a run this output cannot hold (OutputError), before anything is written."""
        ...

    def set_extent(self, zooms: Sequence[int], bounds: Bounds | None) -> None:
        """The recipe's whole zooms and area (grid CRS), before `prepare`, whatever narrows the run:
        a store whose arrays are sized when it is created (Zarr) is sized from them; others ignore it."""
        ...

    def prepare(self, overwrite: bool, narrowed: bool = False) -> bool:
        """Create or check the store before the first tile. Settings that differ from what the
        store holds are refused unless `overwrite` covers the whole recipe (not `narrowed`),
        which replaces the earlier content: True then (its tile records are void)."""
        ...

    def start_run(self, zooms: Sequence[int], bounds: Bounds | None) -> None:
        """The run's zooms and area (grid CRS) before its first tile."""
        ...

    def finish_run(self, success: bool) -> None:
        """After the last tile (also after a failure): make the result final, or drop it."""
        ...

    def output_tiles(self, process_tile: Tile) -> list[Tile]:
        """The stored tiles a process tile writes."""
        ...

    def tile_path(self, tile: Tile | TileIndex) -> Path: ...

    def tile_bytes_of(self, tile: Tile | TileIndex) -> bytes | None:
        """A stored tile file's bytes (one GET on object storage), None when it is not there."""
        ...

    def exists(self, process_tile: Tile) -> bool:
        """All stored tiles of a process tile are there (continue mode without a ledger)."""
        ...

    def write(self, process_tile: Tile, data: Any) -> list[TileIndex]:
        """Write a process result; returns the stored tiles written (none: nothing valid)."""
        ...

    def prepare_array(self, process_tile: Tile, data: Any) -> np.ndarray | None:
        """The compact array a worker hands to a parent-side writer (None: nothing to write)."""
        ...

    def write_prepared(self, process_tile: Tile, array: np.ndarray) -> list[TileIndex]: ...

    def result_bytes(self, zoom: int) -> int:
        """Largest prepared array of one process tile at a zoom (sizes shared-memory slots)."""
        ...

    def tile_bytes(self, zoom: int) -> int:
        """Uncompressed size of one stored tile at a zoom (what `plan` estimates with)."""
        ...

    def take_notes(self) -> tuple[tuple[str, int], ...]:
        """Counts of values the casts since the last call changed ("clipped": out of the dtype's
        range, "nodata": valid values equal to nodata), summed by the engine into one warning."""
        ...

    def checksums(self, written: Sequence[TileIndex]) -> tuple[str, ...]:
        """SHA-256 of tiles just written (empty when the bytes are final only at the end)."""
        ...

    def remove_stale(self, process_tile: Tile, written: Sequence[TileIndex]) -> None:
        """--overwrite: stored tiles of `process_tile` this run left empty lose earlier data."""
        ...

    def read_earlier(self, tile: Tile, steps: int) -> Any:
        """A stored tile of a series being extended, as the run found it (its first `steps` steps)."""
        ...

    def preview(self) -> np.ma.MaskedArray | None:
        """The run's quicklook pixels the output gathered while writing (a single file: reading it
        back would decode all of it), None when the quicklook is read from what is stored."""
        ...

    def removals_waiting(self) -> bool:
        """Stale tiles wait for a bulk delete (object stores): the ledger holds its commit, which
        would record them as gone, until `flush_removals` (at most `REMOVAL_SECONDS` or a full batch)."""
        ...

    def flush_removals(self) -> None:
        """Delete the waiting stale tiles (the ledger calls it before each commit)."""
        ...

    def read(self, tile: Tile | TileIndex) -> Any:
        """One stored tile's data, or None if it was never written (raster arrays with `capabilities.overviews`)."""
        ...


__all__ = ["Input", "InputDriver", "Output", "OutputCapabilities", "TileInput"]
