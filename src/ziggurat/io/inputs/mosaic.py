"""A mosaic input: many rasters (globs, lists, VRTs, GTI or vector indexes) read as one.

Per tile only the members whose footprint meets the tile are opened (an STRtree over the
footprints in the grid CRS); each thread keeps a bounded LRU of open members. A pixel is taken
from the first member, in priority order, that has valid data there (nodata, masks and alpha
honoured; `nodata` of a source marks more values invalid), so the result does not depend on the
number of workers. `priority: first` (the default) lets earlier sources win, as yirgacheffe's
GroupLayer does; `priority: last` lets later ones win, as in a GDAL VRT or GTI index.
Members may differ in CRS, resolution and dtype; each is reprojected to the tile with its
source's `resampling` (default: the mosaic's, else nearest).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import shapely
from rasterio.crs import CRS

from ziggurat.core.bounds import Bounds
from ziggurat.core.errors import InputError
from ziggurat.core.grid import Grid, Tile
from ziggurat.core.location import is_url
from ziggurat.io.checksum import fingerprint_input, hash_many
from ziggurat.io.common import crs_equal, empty_masked, normalize_indexes, transform_bounds_safe
from ziggurat.io.inputs.mosaic_index import Member, MosaicIndex, member_bounds
from ziggurat.io.inputs.raster import OpenRasters, RasterInput
from ziggurat.recipe import InputConfig

#: Open members kept per thread (file handles, one GDAL dataset each).
OPEN_MEMBERS = 32


class MosaicInput:
    """The driver of `format: mosaic` inputs (see ziggurat.recipe.mosaic for the recipe side)."""

    tile_sources = True  # a tile's key covers the members it reads, so a changed file stales only those

    @staticmethod
    def fingerprint(config: InputConfig) -> dict[str, Any]:
        """Every member's size and SHA-256 (kept in the index cache, so reruns only stat them)."""
        index = MosaicIndex.build(config.name, config.options["mosaic"], config.cache_dir)
        # an object in a bucket is versioned by its ETag (in `mtime`, see mosaic_index._stat): not downloaded
        index.members = [m._replace(sha256=f"etag:{m.mtime:x}") if m.sha256 is None and is_url(m.path) else m
                         for m in index.members]
        todo = [m for m in index.members if m.sha256 is None]
        if todo:
            sums = dict(hash_many([m.path for m in todo], hasher=lambda p: fingerprint_input(p)["sha256"]))
            index.members = [m if m.sha256 else m._replace(sha256=sums[m.path]) for m in index.members]
            index.save()
        elif not index.saved:
            index.save()  # the cache the workers read
        listing = [(m.path, m.size, m.sha256) for m in index.members]
        return {"kind": "mosaic", "members": len(listing),
                "sha256": hashlib.sha256(json.dumps(listing).encode()).hexdigest()}

    def __init__(self, config: InputConfig, grid: Grid) -> None:
        self.name = config.name
        self.grid = grid
        self.options = dict(config.options)
        self.specs = list(self.options["mosaic"])
        self.priority = str(self.options.get("priority", "first"))
        self._open = OpenRasters(OPEN_MEMBERS)
        self.index = MosaicIndex.build(config.name, self.specs, config.cache_dir)
        self.members: list[Member] = self.index.members
        self._grid_bounds = grid.bounds()
        self._crss: dict[str, tuple[CRS, bool]] = {}   # member WKT -> (CRS, same as the grid's)
        self._footprints: list[Bounds | None] = [self._footprint(m) for m in self.members]
        present = [i for i, b in enumerate(self._footprints) if b is not None]
        self._tree_members = np.array(present, dtype=np.int64)
        self._tree = shapely.STRtree([shapely.box(*self._footprints[i]) for i in present])  # type: ignore[misc]
        self.bounds: Bounds | None = Bounds.union_all(b for b in self._footprints if b is not None)
        i, count, dtype, nodata = self._describe()
        self.count: int = count
        dtypes = [m.dtype for m in self.members if m.dtype] or [dtype]
        self.dtype: str = str(self.options.get("dtype") or np.result_type(*dtypes).name)
        self.nodata: float | int | None = self.specs[self.members[i].source].get("nodata", nodata)

    def _describe(self) -> tuple[int, int, str, float | None]:
        """(member, bands, dtype, nodata) of the first member that can be read: members of a
        vector index are opened only now, and an unreadable one fails only the tiles it meets."""
        for i, m in enumerate(self.members):
            if m.bands is not None and m.dtype is not None:
                return i, m.bands, m.dtype, m.nodata
        error: Exception | None = None
        for i in range(len(self.members)):
            try:
                inp = self._member_input(i)
            except InputError as exc:
                error = error or exc
                continue
            return i, inp.count, inp.dtype, inp.nodata
        raise InputError(f"input {self.name!r}: no member of the mosaic can be read") from error

    def _footprint(self, member: Member) -> Bounds | None:
        b = member_bounds(member)
        if b is None or member.crs is None:
            return None
        known = self._crss.get(member.crs)
        if known is None:  # members mostly share a CRS: parse and compare it once
            crs = CRS.from_wkt(member.crs)
            known = self._crss[member.crs] = (crs, crs_equal(crs, self.grid.crs))
        out = b if known[1] else transform_bounds_safe(known[0], self.grid.crs, b)
        return None if out is None else out.intersection(self._grid_bounds)

    # -- members -------------------------------------------------------------------------------
    def _member_input(self, i: int) -> RasterInput:
        """Member `i` opened (per thread, least recently used closed beyond OPEN_MEMBERS)."""
        def opener() -> RasterInput:
            member, spec = self.members[i], self.specs[self.members[i].source]
            resampling = spec.get("resampling") or self.options.get("resampling") or "nearest"
            return RasterInput(InputConfig(f"{self.name} ({Path(member.path).name})", member.path, "raster",
                                           {"resampling": resampling}), self.grid)

        return self._open.get(i, opener)

    def candidates(self, tile: Tile) -> list[int]:
        """Members meeting the buffered tile (interiors, not just edges), in priority order."""
        if self.bounds is None or not len(self._tree_members):
            return []
        box = tile.buffered_bounds
        hits = self._tree_members[self._tree.query(shapely.box(*box), predicate="intersects")]
        found = sorted(int(i) for i in hits if self._footprints[int(i)].intersects(box))  # type: ignore[union-attr]
        return found if self.priority == "first" else found[::-1]

    # -- the Input protocol --------------------------------------------------------------------
    def for_tile(self, tile: Tile) -> MosaicTileInput:
        return MosaicTileInput(self, tile)

    def is_empty(self, tile: Tile) -> bool:
        return not self.candidates(tile)

    def sources(self, tile: Tile) -> list[tuple[str | Path, str | None]]:
        # a member in a bucket keeps its URL (pathlib would fold s3:// to s3:/)
        return [(m.path if is_url(m.path) else Path(m.path), m.version)
                for m in (self.members[i] for i in self.candidates(tile))]

    def read_sources(self, tile: Tile, indexes: int | Sequence[int] | None = None,
                     resampling: str | None = None) -> tuple[np.ma.MaskedArray, np.ndarray]:
        """The mosaic and, per pixel, the member (index into `members`) it came from (-1: none)."""
        idx, squeeze = normalize_indexes(indexes, self.count, self.name)
        out = empty_masked(len(idx), tile.buffered_shape, self.dtype, self.nodata)
        winner = np.full(tile.buffered_shape, -1, dtype=np.int32)
        open_ = np.ma.getmaskarray(out).copy()
        for i in self.candidates(tile):
            if not open_.any():
                break
            data = self._member_input(i).read(tile, idx, resampling)
            valid = ~np.ma.getmaskarray(data)
            nodata = self.specs[self.members[i].source].get("nodata")
            if nodata is not None:
                raw = np.ma.getdata(data)
                valid &= ~(np.isnan(raw) if np.isnan(nodata) else raw == nodata)
            take = open_ & valid
            if not take.any():
                continue
            out.data[take] = np.ma.getdata(data)[take].astype(self.dtype, copy=False)
            open_ &= ~take
            winner[take.any(axis=0) & (winner < 0)] = i
        out.mask = open_
        return (out[0] if squeeze else out), winner

    def read(self, tile: Tile, indexes: int | Sequence[int] | None = None,
             resampling: str | None = None) -> np.ma.MaskedArray:
        return self.read_sources(tile, indexes, resampling)[0]

    def close(self) -> None:
        self._open.close()


class MosaicTileInput:
    """A mosaic bound to one tile: `read()` as for any raster input, `read_sources()` with the
    winning member per pixel (for a provenance band), `members` the files that meet the tile."""

    kind: Literal["raster", "vector"] = "raster"

    def __init__(self, mosaic: MosaicInput, tile: Tile) -> None:
        self.mosaic, self.tile = mosaic, tile

    def is_empty(self) -> bool:
        return self.mosaic.is_empty(self.tile)

    def read(self, indexes: int | Sequence[int] | None = None, resampling: str | None = None
             ) -> np.ma.MaskedArray:
        return self.mosaic.read(self.tile, indexes, resampling)

    def read_sources(self, indexes: int | Sequence[int] | None = None, resampling: str | None = None
                     ) -> tuple[np.ma.MaskedArray, np.ndarray]:
        return self.mosaic.read_sources(self.tile, indexes, resampling)

    @property
    def members(self) -> list[str]:
        return [self.mosaic.members[i].path for i in self.mosaic.candidates(self.tile)]


__all__ = ["MosaicInput", "MosaicTileInput", "OPEN_MEMBERS"]
