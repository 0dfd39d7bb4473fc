"""What every output driver sets up the same way: its config, path, and process and output grids."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Bounds, Grid, Tile
from ziggurat.core.timesteps import TimeSteps
from ziggurat.io.outputs.stored import StoredOutput
from ziggurat.io.protocols import OutputCapabilities
from ziggurat.io.storage.store import ObjectStore, open_store
from ziggurat.recipe import OutputConfig


class OutputBase:
    """`grid` is the process grid; stored tiles use `output_grid` (output metatiling, no buffer)."""

    capabilities: OutputCapabilities
    #: a time series' steps (`output.time`; raster outputs that hold series set it)
    time: TimeSteps | None = None
    #: steps a time series held before this run appends steps to it (`prepare` found the recipe's
    #: steps starting with the stored ones): tiles then keep those and gain the new ones
    series_extends: int = 0

    def __init__(self, config: OutputConfig, grid: Grid) -> None:
        self.config = config
        self.grid = grid
        self.path = Path(config.path)   # a remote output's local state folder
        #: the bucket of a remote output (tiles and the published records live there)
        self.store: ObjectStore | None = None
        if config.location is not None:
            self.store = open_store(config.location, config.storage_options)
        self.where = config.url
        self.format: str = config.format
        if grid.metatiling % config.metatiling:
            raise OutputError(f"output {self.where}: output metatiling {config.metatiling} does not "
                              f"divide the process metatiling {grid.metatiling}")
        self.output_grid = grid.with_options(metatiling=config.metatiling, pixelbuffer=0)
        self.notes: dict[str, int] = {}

    @property
    def stored(self) -> StoredOutput:
        """What this output holds once written, from its own settings (no metadata read back)."""
        cfg = self.config
        return StoredOutput(self.path, cfg.format_info, cfg.storage, self.output_grid, cfg.dtype, cfg.bands,
                            cfg.nodata)

    def set_extent(self, zooms: Sequence[int], bounds: Bounds | None) -> None:
        """Tile files and single files need no size up front."""

    def read_earlier(self, tile: Tile, steps: int) -> np.ma.MaskedArray | None:
        """A stored tile as the run found it: the first `steps` steps of a series being extended."""
        raise OutputError(f"output {self.where}: format {self.format} holds no time series")

    def preview(self) -> np.ma.MaskedArray | None:
        """Only a single file, which is never read back during a run, gathers one."""
        return None

    def removals_waiting(self) -> bool:
        """Stale tiles are queued for one bulk delete (see `TileFolder.remove_stale`)."""
        return False

    def flush_removals(self) -> None:
        """Delete the queued stale tiles now (before the ledger records them as gone)."""

    def take_notes(self) -> tuple[tuple[str, int], ...]:
        """What writing changed in the data since the last call (raster casts fill `notes`);
        travels with the tile's outcome."""
        out = tuple(sorted(self.notes.items()))
        self.notes.clear()
        return out
