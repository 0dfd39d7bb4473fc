"""The per-tile unit of work, as run inside a worker.

The parent sends a small picklable `RunSpec` once per worker; the worker builds a `TileJob`
from it (process module, opened inputs, output writer) and then runs tiles by `TileIndex`.
Failures come back as data (`TileOutcome` with the error text and traceback), never as
exceptions that might not survive pickling.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ziggurat.errors import Empty, ProcessError
from ziggurat.grid import TileIndex
from ziggurat.io import open_input, open_output
from ziggurat.process import LoadedProcess, ProcessRef, call_kwargs, load_process
from ziggurat.recipe import Recipe

WRITTEN, EMPTY, SKIPPED, FAILED = "written", "empty", "skipped", "failed"


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to run tiles; sent once per worker, not per tile."""

    recipe: Recipe
    overwrite: bool = False

    @property
    def process_ref(self) -> ProcessRef:
        return ProcessRef(self.recipe.process, str(self.recipe.base_dir))


@dataclass(frozen=True)
class TileOutcome:
    index: TileIndex
    status: str
    written: tuple[TileIndex, ...] = ()
    seconds: float = 0.0
    error: str | None = None          # "ExcType: message"
    exc_type: str | None = None
    traceback: str | None = None

    def to_error(self, recipe: Recipe) -> ProcessError:
        where = recipe.path or "<recipe>"
        return ProcessError(f"{where}: process {recipe.process!r} failed on tile {self.index}: {self.error}",
                            tile=tuple(self.index), traceback=self.traceback, exc_type=self.exc_type)


@dataclass
class TileJob:
    """Worker-side state, built once: the loaded process, opened inputs and output writer."""

    spec: RunSpec
    process: LoadedProcess = field(init=False)
    inputs: dict[str, Any] = field(init=False)
    output: Any = field(init=False)
    _params: dict[int, dict[str, Any]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        recipe = self.spec.recipe
        self.process = load_process(self.spec.process_ref)
        self.inputs = {name: open_input(cfg, recipe.grid) for name, cfg in recipe.inputs.items()}
        self.output = open_output(recipe.output, recipe.grid)

    def parameters(self, zoom: int) -> dict[str, Any]:
        params = self._params.get(zoom)
        if params is None:
            params = self._params[zoom] = self.spec.recipe.parameters_at(zoom)
        return params

    def run(self, index: TileIndex) -> TileOutcome:
        """Run one tile; every exception becomes a FAILED outcome naming the tile."""
        start = time.perf_counter()
        index = TileIndex(*index)
        try:
            tile = self.spec.recipe.grid.tile(*index)
            result = self._execute(tile)
            if result is None:
                return TileOutcome(index, EMPTY, seconds=time.perf_counter() - start)
            written = tuple(self.output.write(tile, result))
        except Empty:
            return TileOutcome(index, EMPTY, seconds=time.perf_counter() - start)
        except Exception as exc:  # reported with the tile; the engine decides whether to stop
            return TileOutcome(index, FAILED, seconds=time.perf_counter() - start,
                               error=f"{type(exc).__name__}: {exc}", exc_type=type(exc).__name__,
                               traceback=traceback.format_exc())
        status = WRITTEN if written else EMPTY
        return TileOutcome(index, status, written, seconds=time.perf_counter() - start)

    def _execute(self, tile: Any) -> Any:
        inputs = {name: inp.for_tile(tile) for name, inp in self.inputs.items()}
        kwargs = call_kwargs(self.process, inputs, self.parameters(tile.zoom), tile)
        result = self.process.func(**kwargs)
        if result is None:
            return None
        if isinstance(result, np.ndarray):
            if result.ndim not in (2, 3):
                raise TypeError(f"execute() returned a {result.ndim}D array; expected 2D (rows, cols) "
                                "or 3D (bands, rows, cols)")
            return result
        raise TypeError(f"execute() returned {type(result).__name__}; expected a numpy (masked) array, "
                        "None, or `raise ziggurat.Empty`")

    def close(self) -> None:
        for inp in self.inputs.values():
            close = getattr(inp, "close", None)
            if close is not None:
                close()
