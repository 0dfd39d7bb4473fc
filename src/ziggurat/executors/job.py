"""The per-tile unit of work, as run inside a worker.

The parent sends a small picklable `RunSpec` once per worker; the worker builds a `TileJob`
from it (process module, opened inputs, output writer) and then runs tiles by `TileIndex`.
Failures come back as data (`TileOutcome` with the error text and traceback), never as
exceptions that might not survive pickling.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.errors import RasterioIOError

from ziggurat.core.errors import Empty
from ziggurat.core.grid import Tile, TileIndex
from ziggurat.core.tasks import EMPTY, WRITTEN, OverviewTask, TileOutcome, failed_outcome, task_index
from ziggurat.core.timesteps import TimeSteps
from ziggurat.executors.overview import build_overview
from ziggurat.io import Input, Output, open_input, open_output
from ziggurat.io.common import paste, rasterio_env
from ziggurat.io.outputs.rasterarrays import TaggedArray, fold_series
from ziggurat.io.outputs.vectordir import as_features
from ziggurat.io.storage.store import STATS
from ziggurat.process.call import call, call_kwargs, steps_independent
from ziggurat.process.compat import MapcheteTile
from ziggurat.process.load import LoadedProcess, ProcessRef, load_process
from ziggurat.recipe import Recipe
from ziggurat.recipe.area import AreaMask

READ_RETRIES = 3        # transient read errors (network storage, busy NFS) are retried ...
READ_BACKOFF = 0.2      # ... after 0.2, 0.4, 0.8 s
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to run tiles; sent once per worker, not per tile."""

    recipe: Recipe
    overwrite: bool = False
    #: steps the output's time series held before this run appends to it (Output.series_extends)
    extends: int = 0
    #: the process module's source, read by the client, for workers that cannot see its file
    #: (a cluster's workers in their own folders or pods): they run this text, not the file
    process_source: str | None = None

    @property
    def process_ref(self) -> ProcessRef:
        ref = ProcessRef.of(self.recipe)
        if self.process_source is not None and ref.is_file:
            return ProcessRef(ref.spec, ref.base_dir, self.process_source, str(Path(ref.base_dir) / ref.spec))
        return ref

    def shipped(self) -> "RunSpec":
        """This spec carrying its process file's source: workers need not share the client's disk."""
        ref = ProcessRef.of(self.recipe)
        if not ref.is_file or self.process_source is not None:
            return self
        return replace(self, process_source=load_process(ref).source())


def with_earlier_steps(output: Output, tile: Tile, new: np.ndarray, kept: int) -> np.ma.MaskedArray:
    """The stored steps of a process tile's output tiles, then the new ones: (bands, buffered h, w)."""
    count = kept * new.shape[0] // (len(output.time or ()) - kept)
    earlier = np.ma.masked_all((count, *tile.buffered_shape), dtype=new.dtype)
    top, left = tile.buffered_bounds.top, tile.buffered_bounds.left
    xres, yres = tile.resolution
    for out_tile in output.output_tiles(tile):
        data = output.read_earlier(out_tile, kept)
        if data is not None:
            paste(earlier, data, round((top - out_tile.bounds.top) / yres), round((out_tile.bounds.left - left) / xres))
    return np.ma.concatenate([earlier, np.ma.asarray(new)], axis=0)


def write_prepared(sink: Output, tile: Tile, array: np.ndarray, outcome: TileOutcome) -> TileOutcome:
    """The parent-side half of a tile: write an array from `TileJob.compute`, hash what was written."""
    try:
        with rasterio_env():
            written = tuple(sink.write_prepared(tile, array))
            checksums = sink.checksums(written)
    except Exception as exc:
        return failed_outcome(outcome.index, exc)
    return replace(outcome, status=WRITTEN if written else EMPTY, written=written, checksums=checksums)


@dataclass
class TileJob:
    """Worker-side state, built once: the loaded process, opened inputs and output writer."""

    spec: RunSpec
    process: LoadedProcess = field(init=False)
    inputs: dict[str, Input] = field(init=False)
    output: Output = field(init=False)
    _params: dict[int, dict[str, Any]] = field(init=False, default_factory=dict)
    mapchete: bool = field(init=False, default=False)   # called by mapchete's rules (ziggurat.process.load)
    empty_types: tuple[type[BaseException], ...] = field(init=False, default=(Empty,))
    area_mask: AreaMask | None = field(init=False, default=None)  # results are cut to `area`

    def __post_init__(self) -> None:
        recipe = self.spec.recipe
        os.environ.update(recipe.worker_environment)  # dask_specs.worker_environment, inputs' gdal_options
        self.process = load_process(self.spec.process_ref)
        self.mapchete = self.process.mapchete_style(recipe)
        self.empty_types = (Empty, *self.process.empty_types)
        self.inputs = {name: open_input(cfg, recipe.grid) for name, cfg in recipe.inputs.items()}
        self.output = open_output(recipe.output, recipe.grid)
        self.time_steps = recipe.output.time_steps
        if recipe.area is not None:
            self.area_mask = AreaMask(recipe.area)

    def parameters(self, zoom: int) -> dict[str, Any]:
        params = self._params.get(zoom)
        if params is None:
            params = self._params[zoom] = self.spec.recipe.parameters_at(zoom)
        return params

    def run(self, task: TileIndex | OverviewTask) -> TileOutcome:
        """Run one tile; every exception becomes a FAILED outcome naming the tile. The object-store
        requests it made travel with it (counted where the tile ran, summed by the engine)."""
        with rasterio_env():
            return self._noted(self._run(task))

    def _noted(self, outcome: TileOutcome) -> TileOutcome:
        """The outcome with the requests and cast notes of its tile."""
        counted, notes = STATS.take(), self.output.take_notes()
        if counted:
            outcome = replace(outcome, requests=tuple(counted.items()))
        return replace(outcome, notes=notes) if notes else outcome

    def _run(self, task: TileIndex | OverviewTask) -> TileOutcome:
        start = time.perf_counter()
        index = task_index(task)
        try:
            tile = self.spec.recipe.grid.tile(*index)
            result = self._result(task, tile)
            if result is None:
                return TileOutcome(index, EMPTY, seconds=time.perf_counter() - start)
            written = tuple(self.output.write(tile, result))
            checksums = self.output.checksums(written)
        except self.empty_types:
            return TileOutcome(index, EMPTY, seconds=time.perf_counter() - start)
        except Exception as exc:  # reported with the tile; the engine decides whether to stop
            return failed_outcome(index, exc, start)
        status = WRITTEN if written else EMPTY
        return TileOutcome(index, status, written, seconds=time.perf_counter() - start,
                           checksums=checksums)

    def compute(self, task: TileIndex | OverviewTask) -> tuple[TileOutcome, np.ndarray | None]:
        """Run the process and prepare its array for a parent-side writer; writes nothing.

        The outcome's status is provisional (WRITTEN means "has data"); the parent fills in
        the written output tiles once it has written them.
        """
        start = time.perf_counter()
        index = task_index(task)
        try:
            tile = self.spec.recipe.grid.tile(*index)
            with rasterio_env():
                result = self._result(task, tile)
                array = None if result is None else self.output.prepare_array(tile, result)
        except self.empty_types:
            array = None
        except Exception as exc:
            self.output.take_notes()
            return failed_outcome(index, exc, start), None
        status = EMPTY if array is None else WRITTEN
        return replace(TileOutcome(index, status, seconds=time.perf_counter() - start),
                       notes=self.output.take_notes()), array

    def _result(self, task: Any, tile: Any) -> Any:
        """A process tile runs the process; an overview tile resamples output tiles."""
        if isinstance(task, OverviewTask):
            resampling = (self.spec.recipe.baselevels or {}).get(task.source, "nearest")
            return build_overview(self.output, self.spec.recipe.grid, task, resampling)
        return self._execute(tile)

    def _execute(self, tile: Any) -> Any:
        """Call the process; transient read errors (GDAL I/O) are retried with backoff."""
        for attempt in range(READ_RETRIES + 1):
            try:
                return self._call(tile)
            except RasterioIOError:
                if attempt == READ_RETRIES:
                    raise
                log.warning("tile %s: read error, retrying (%d/%d)", tile, attempt + 1, READ_RETRIES)
                time.sleep(READ_BACKOFF * 2 ** attempt)
        raise AssertionError("unreachable")

    def _call(self, tile: Any) -> Any:
        configs = self.spec.recipe.inputs
        inputs = {configs[key].argument: inp.for_tile(tile) for key, inp in self.inputs.items()
                  if configs[key].active(tile.zoom)}
        steps, kept = self._series_steps(tile.zoom)
        kwargs = call_kwargs(self.process, inputs, self.parameters(tile.zoom), tile, mapchete=self.mapchete,
                             output_params=self.output_params, time_steps=steps)
        result = self._called(kwargs, tile, len(steps) if steps is not None else 0, kept)
        if result is None:
            return None
        if self.mapchete and isinstance(result, str) and result == "empty":
            return None   # mapchete's "empty"
        tags = None
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict) \
                and isinstance(result[0], np.ndarray):
            result, tags = result   # (array, tags), as mapchete's: GeoTIFF tags, {band: {...}} per band
        if self.mapchete and isinstance(result, np.ndarray):
            result = MapcheteTile(tile).unclip(result)   # mapchete's tiles stop at the poles
        if self.output.capabilities.kind == "vector":  # GeoJSON/FlatGeobuf: a list of features
            feats = as_features(result, self.output.format)
            return feats if self.area_mask is None else self.area_mask.clip_features(tile, feats)
        if isinstance(result, np.ndarray) and steps is not None:
            result = fold_series(result, len(steps))
            if kept:
                result = with_earlier_steps(self.output, tile, result, kept)
        if isinstance(result, np.ndarray):
            if result.ndim not in (2, 3):
                raise TypeError(f"execute() returned a {result.ndim}D array; expected 2D (rows, cols) "
                                "or 3D (bands, rows, cols)")
            result = result if self.area_mask is None else self.area_mask.apply(tile, result)
            return result if tags is None else TaggedArray.wrap(result, tags)
        hint = (" (a list of features needs output format GeoJSON or FlatGeobuf)"
                if isinstance(result, (list, tuple)) else "")
        raise TypeError(f"execute() returned {type(result).__name__}; expected a numpy (masked) array, "
                        f"None, or `raise ziggurat.Empty`{hint}")

    def _called(self, kwargs: dict[str, Any], tile: Tile, steps: int, kept: int) -> Any:
        """The process's result; when a series grows, new steps without data still keep the
        tile's stored ones (masked new steps instead of an empty tile in the old layout)."""
        try:
            result = call(self.process, kwargs)
        except self.empty_types:
            if not kept:
                raise
            result = None
        if result is None and kept:
            stored = self.output.stored
            result = np.ma.masked_all((steps, stored.bands // len(self.output.time or (1,)), *tile.buffered_shape),
                                      dtype=stored.dtype)
        return result

    def _series_steps(self, zoom: int) -> tuple[TimeSteps | None, int]:
        """The steps a call computes, and how many stored ones the tile keeps: all steps, unless
        the run appends steps to a series and the process computes each step on its own."""
        steps, extends = self.time_steps, self.spec.extends
        if steps is None or not extends or not steps_independent(self.process, self.parameters(zoom)):
            return steps, 0
        return TimeSteps(steps.steps[extends:]), extends

    @functools.cached_property
    def output_params(self) -> dict[str, Any]:
        """mapchete's `mp.output_params`: the output's settings (built once per worker)."""
        out = self.spec.recipe.output
        return {**out.options, "path": out.url, "format": out.format, "dtype": out.dtype, "bands": out.bands,
                "nodata": out.nodata, "metatiling": out.metatiling}

    def close(self) -> None:
        for inp in self.inputs.values():
            inp.close()
