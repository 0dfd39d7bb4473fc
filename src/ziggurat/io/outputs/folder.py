"""What raster and vector tile-directory outputs share: `metadata.json`, tile paths, existence.

`metadata.json` records the output grid and settings, so a folder can be read back as an
input and a later run with other settings is refused instead of mixing tiles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Bounds, Grid, Tile, TileIndex
from ziggurat.core.mapchete_grid import grid_from_mapchete, mapchete_pyramid
from ziggurat.core.tilelayout import DEFAULT_SCHEMA, TileLayout
from ziggurat.core.timesteps import TimeSteps
from ziggurat.io.checksum import sha256_file
from ziggurat.io.common import int_names
from ziggurat.io.outputs.base import OutputBase
from ziggurat.io.outputs.stored import METADATA_FILE, StoredOutput, read_metadata, stored_from_metadata
from ziggurat.io.storage.atomic import staged, tmp_folder, tmp_in, write_all, write_json_atomic
from ziggurat.io.storage.store import DELETE_BATCH
from ziggurat.recipe import OutputConfig

logger = logging.getLogger(__name__)



def describe_folder(meta: dict[str, Any]) -> tuple[Grid, dict[str, Any]]:
    """(grid of the stored tiles, output settings) of a ziggurat or a mapchete metadata.json."""
    if "grid" in meta and "output" in meta:
        return Grid.from_dict(meta["grid"]), meta["output"]
    if "pyramid" in meta and "driver" in meta:   # written by mapchete
        driver = dict(meta["driver"])
        settings = {"format": driver.get("format", "GTiff"), "dtype": driver.get("dtype", "uint8"),
                    "bands": driver.get("bands", driver.get("count", 1)), "nodata": driver.get("nodata"),
                    "tile_path_schema": driver.get("tile_path_schema", DEFAULT_SCHEMA)}
        if str(settings["format"]).lower() == "png":   # mapchete's PNG tiles are RGBA
            settings.update(format="PNG_RGBA", dtype="uint8", bands=4, nodata=driver.get("nodata", 0))
        return grid_from_mapchete(meta["pyramid"]), settings
    raise ValueError("neither a ziggurat ('grid', 'output') nor a mapchete ('pyramid', 'driver') description")


#: the longest stale tiles of an object store wait for their bulk delete (and the ledger with them)
REMOVAL_SECONDS = 5.0


class TileFolder(OutputBase):
    """Base of tile-directory outputs (one file per output tile); `grid` is the process grid,
    tiles use the output grid. Implements the tile-file half of the `Output` protocol."""

    suffix = ".tif"

    def __init__(self, config: OutputConfig, grid: Grid) -> None:
        super().__init__(config, grid)
        #: where each tile's file goes (mapchete's `tile_path_schema`; validated with the recipe)
        self.layout = TileLayout.parse(config.options.get("tile_path_schema"))
        #: SHA-256 of tiles written from bytes (`put_tile`), until `checksums` hands them to the ledger
        self._sums: dict[TileIndex, str] = {}
        self._sums_lock = threading.Lock()
        #: keys of stale tiles waiting for one bulk delete (object stores, --overwrite)
        self._removals: list[str] = []
        self._removals_since = 0.0

    # -- what subclasses describe ----------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The `output` part of metadata.json."""
        raise NotImplementedError

    def strict_settings(self) -> tuple[tuple[str, Any], ...]:
        """Settings a later run must share with the tiles on disk (name, value now)."""
        raise NotImplementedError

    def same_setting(self, key: str, on_disk: Any, now: Any) -> bool:
        """Whether a strict setting on disk equals the one now (JSON on disk)."""
        return bool(on_disk == now)

    # -- metadata ---------------------------------------------------------------------------------
    @property
    def stored(self) -> StoredOutput:
        """What metadata.json says of the output, without reading it back (JSON round trip, so
        the run describes its output exactly as a reader of the folder would)."""
        return stored_from_metadata(self.path, json.loads(json.dumps(self.metadata())))

    def metadata(self) -> dict[str, Any]:
        """ziggurat's description, plus mapchete's `driver` and `pyramid` where mapchete can
        describe the grid, so mapchete reads the folder as a TileDirectory input too."""
        from ziggurat.core.version import __version__

        settings = self.settings()
        if not self.layout.is_default:
            settings["tile_path_schema"] = self.layout.schema
        meta: dict[str, Any] = {"ziggurat": {"version": __version__}, "grid": self.output_grid.to_dict(),
                                "process_grid": self.grid.to_dict(), "output": settings}
        pyramid = mapchete_pyramid(self.output_grid)
        if pyramid is not None:
            meta["driver"] = {k: v for k, v in settings.items() if v is not None and k != "band_specs"}
            meta["pyramid"] = pyramid
        return meta

    def _differences(self, existing: Any) -> list[str]:
        if not isinstance(existing, dict) or not isinstance(existing.get("output"), dict):
            return ["metadata.json is not a ziggurat tile directory description"]
        diffs: list[str] = []
        try:
            same_grid = Grid.from_dict(existing["grid"]) == self.output_grid
        except Exception:
            same_grid = False
        if not same_grid:
            diffs.append(f"grid: {existing.get('grid')!r} on disk, {self.output_grid.to_dict()!r} now")
        out = existing["output"]
        schema = out.get("tile_path_schema", DEFAULT_SCHEMA)
        if schema != self.layout.schema:
            diffs.append(f"tile_path_schema: {schema!r} on disk, {self.layout.schema!r} now")
        for key, now in self.strict_settings():
            if key not in out or not self.same_setting(key, out.get(key), now):
                diffs.append(f"{key}: {out.get(key)!r} on disk, {now!r} now")
        return diffs

    def prepare(self, overwrite: bool, narrowed: bool = False) -> bool:
        """Create the folder and write or check metadata.json.

        Tiles of two settings never mix in one output: other settings than those of the tiles on
        disk are refused, unless `overwrite` covers the whole recipe (not `narrowed`), which
        removes the earlier tiles first. True when it did (the tile records must go too).
        """
        meta_path = self.path / METADATA_FILE
        replaced = False
        on_store = self.store.get(METADATA_FILE) if self.store is not None else None
        if meta_path.exists() or on_store is not None:
            try:
                existing: Any = read_metadata(self.path) if on_store is None else json.loads(on_store)
            except (OSError, ValueError) as exc:
                existing = None
                logger.debug("cannot read %s: %s", meta_path, exc)
            diffs = self._differences(existing)
            self.series_extends = 0 if overwrite else self._extension(existing, diffs, narrowed)
            if not diffs:
                return False
            if self.series_extends:
                logger.info("output %s: %d time step(s) appended to its %d", self.where,
                            len(self.time or ()) - self.series_extends, self.series_extends)
            elif not overwrite or narrowed:
                how = ("an --overwrite run over the whole recipe (no -z, -b, -t, -p or -a) replaces them"
                       if overwrite else "use a new output path, or --overwrite over the whole recipe to "
                                         "replace all its tiles")
                raise OutputError(f"output {self.where} was written with other settings ({'; '.join(diffs)}); "
                                  f"tiles of both would mix: {how}")
            else:
                logger.warning("output %s: removing the tiles written with other settings (%s)", self.where,
                               "; ".join(diffs))
                self._remove_tiles()
                replaced = True
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {self.path}: {exc}") from exc
        try:
            write_json_atomic(meta_path, self.metadata())
        except OSError as exc:
            raise OutputError(f"cannot write {meta_path}: {exc}") from exc
        if self.store is not None:
            self.store.put(METADATA_FILE, meta_path.read_bytes())
        return replaced

    def _extension(self, existing: Any, diffs: list[str], narrowed: bool) -> int:
        """The stored steps, when the only difference is steps appended to the stored time series
        (they are kept, the new ones added); else 0."""
        if self.time is None or not diffs or any(not d.startswith("time:") for d in diffs):
            return 0
        try:
            old = TimeSteps.from_json(existing["output"]["time"])
        except (KeyError, TypeError, ValueError):
            return 0
        n = len(old)
        if not (0 < n < len(self.time) and self.time.steps[:n] == old.steps):
            return 0
        if narrowed:
            raise OutputError(f"output {self.where}: appending time steps rewrites every tile; run the whole "
                              "recipe (no -z, -b, -t, -p or -a)")
        return n

    def _remove_tiles(self) -> None:
        """Every zoom folder of the earlier pyramid."""
        if self.store is not None:
            for rel, _ in list(self.store.list_all("")):
                if rel.split("/", 1)[0].isdigit():
                    self.store.delete(rel)
        for zoom in int_names(self.path):
            try:
                shutil.rmtree(self.path / str(zoom))
            except OSError as exc:
                raise OutputError(f"cannot remove the earlier tiles in {self.path / str(zoom)}: {exc}") from exc

    # -- tiles ------------------------------------------------------------------------------------
    def output_tiles(self, process_tile: Tile) -> list[Tile]:
        rows, cols = self.output_grid.tile_range(process_tile.bounds, process_tile.zoom)
        return [Tile(self.output_grid, process_tile.zoom, r, c) for r in rows for c in cols]

    def tile_path(self, tile: Tile | TileIndex) -> Path:
        """Where the tile is (a remote output: where it would be in the state folder; see `tile_key`)."""
        return self.path / self.tile_key(tile)

    def tile_key(self, tile: Tile | TileIndex) -> str:
        """The tile's path relative to the output (its object key below a remote output)."""
        return self.layout.rel(tile.zoom, tile.row, tile.col, self.suffix)

    def exists(self, process_tile: Tile) -> bool:
        if self.store is not None:
            return all(self.store.head(self.tile_key(t)) is not None for t in self.output_tiles(process_tile))
        return all(self.tile_path(t).exists() for t in self.output_tiles(process_tile))

    def tile_bytes_of(self, tile: Tile | TileIndex) -> bytes | None:
        """A stored tile's bytes (one GET on a remote output), or None when it is not there."""
        if self.store is not None:
            return self.store.get(self.tile_key(tile))
        try:
            return self.tile_path(tile).read_bytes()
        except FileNotFoundError:
            return None

    def check_run(self, zooms: Sequence[int], bounds: Bounds | None) -> None:
        """Any zooms and area: every tile is its own file."""

    def start_run(self, zooms: Sequence[int], bounds: Bounds | None) -> None:
        """Nothing to set up: every tile is its own file."""

    def finish_run(self, success: bool) -> None:
        """Nothing to finish: every tile was renamed into place when it was written."""

    def checksums(self, written: Sequence[TileIndex]) -> tuple[str, ...]:
        """A tile written from bytes (`put_tile`, every remote tile) was hashed from them, so it
        is never read back; one a driver wrote to its file itself is hashed right after, while its
        bytes are still in the page cache."""
        with self._sums_lock:
            sums = [self._sums.pop(TileIndex(*index[:3]), None) for index in written]
        return tuple(sha256_file(self.tile_path(index)) if digest is None else digest
                     for index, digest in zip(written, sums))

    def put_tile(self, tile: Tile, data: bytes) -> None:
        """Store an encoded tile whole: locally a checked write and an atomic rename, remotely one
        PUT (no temporary file); its checksum is taken from `data`."""
        if self.store is None:
            with self.staged(tile) as tmp:
                write_all(tmp, data)
        else:
            key = self.tile_key(tile)
            try:
                self.store.put(key, data)
            except OutputError as exc:
                raise type(exc)(f"tile {tile}: {exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        with self._sums_lock:
            self._sums[tile.index] = digest

    def remove_stale(self, process_tile: Tile, written: Sequence[TileIndex]) -> None:
        """Local files go at once; objects are queued and deleted in bulk (1,000 a request)."""
        keep = set(written)
        for tile in self.output_tiles(process_tile):
            if tile.index not in keep:
                if self.store is not None:
                    if not self._removals:
                        self._removals_since = time.monotonic()
                    self._removals.append(self.tile_key(tile))
                else:
                    self.tile_path(tile).unlink(missing_ok=True)
        if len(self._removals) >= DELETE_BATCH:
            self.flush_removals()

    def removals_waiting(self) -> bool:
        return bool(self._removals) and time.monotonic() - self._removals_since < REMOVAL_SECONDS

    def flush_removals(self) -> None:
        keys, self._removals = self._removals, []
        if keys and self.store is not None:
            self.store.delete_many(keys)

    @contextmanager
    def staged(self, tile: Tile) -> Iterator[Path]:
        """Yield a temporary path to write a tile to; it replaces the tile only if the write
        succeeds, so a crash never leaves a half-written tile (temporaries: .ziggurat/tmp)."""
        if self.store is not None:
            yield from self._staged_remote(tile)
            return
        final = self.tile_path(tile)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"tile {tile}: cannot create {final.parent}: {exc}") from exc
        try:
            with staged(final, tmp_in(tmp_folder(self.path), self.suffix)) as tmp:
                yield tmp
        except Exception as exc:
            raise OutputError(f"tile {tile}: cannot write {final}: {exc}") from exc

    def _staged_remote(self, tile: Tile) -> Iterator[Path]:
        """For drivers that write files: encode locally, then `put_tile` (one PUT)."""
        assert self.store is not None
        key = self.tile_key(tile)
        try:
            tmp = tmp_in(tmp_folder(self.path), self.suffix)
        except OSError as exc:
            raise OutputError(f"tile {tile}: cannot create a temporary file under {self.path}: {exc}") from exc
        try:
            try:
                yield tmp
                data = tmp.read_bytes()
            except Exception as exc:
                raise OutputError(f"tile {tile}: cannot write {self.store.url(key)}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        self.put_tile(tile, data)
