"""A `stac` input: the items of a STAC catalog read per tile as a time series.

Per tile only the items whose geometry meets the tile are opened (an STRtree of the items'
footprints in the grid CRS, then the exact geometry); each asset file is read as a raster input
(warped to the tile with the asset's resampling) and kept open in a per-thread LRU. `read()`
returns a `TimeStack`: a masked array (time, band, y, x), bands in the order of `assets`, with
the items' `datetimes` and `ids` alongside; `items()` yields one item at a time for low memory;
`read_xarray()` gives an xarray DataArray when xarray is installed. With `group_by: solar_day`
the items of one solar day (the date at the scene centre's longitude) are merged, first valid
pixel wins, so same-day overlapping scenes count once.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import shapely
from rasterio.crs import CRS

from ziggurat.core.bounds import Bounds
from ziggurat.core.errors import InputError
from ziggurat.core.grid import Grid, Tile
from ziggurat.io.common import transform_bounds_safe
from ziggurat.io.inputs.raster import OpenRasters, RasterInput
from ziggurat.io.inputs.stac_items import StacRecord, listing_sha256, records
from ziggurat.recipe import InputConfig

#: Open asset files kept per thread.
OPEN_ASSETS = 64
_WGS84 = CRS.from_epsg(4326)


class TimeStack(np.ma.MaskedArray):
    """(time, band, y, x) with `datetimes`, `item_ids` (one per time step) and `bands` (asset keys)."""

    datetimes: list[dt.datetime]
    item_ids: list[str]
    bands: list[str]

    @classmethod
    def wrap(cls, array: np.ma.MaskedArray, datetimes: list[dt.datetime], ids: list[str],
             bands: list[str]) -> "TimeStack":
        out = array.view(cls)
        out.datetimes, out.item_ids, out.bands = datetimes, ids, bands
        return out


def solar_day(record: StacRecord) -> dt.date:
    """The local solar date at the centre of the item (longitude / 15 hours from UTC)."""
    when = dt.datetime.fromisoformat(record.datetime)
    lon = (record.bbox[0] + record.bbox[2]) / 2
    return (when + dt.timedelta(hours=lon / 15)).date()


class StacInput:
    """The driver of `format: stac` inputs (see ziggurat.recipe.stac_input for the recipe side)."""

    tile_sources = True   # a tile's key covers the items it reads (their `updated`), not the whole catalog

    @staticmethod
    def fingerprint(config: InputConfig) -> dict[str, Any]:
        """The one search of the run (cached for the workers): the items found, as a hash."""
        found = records(config.name, config.options, config.cache_dir, refresh=True)
        return {"kind": "stac", "catalog": str(config.options["stac"]), "items": len(found),
                "sha256": listing_sha256(found)}

    def __init__(self, config: InputConfig, grid: Grid) -> None:
        self.name = config.name
        self.grid = grid
        self.options = dict(config.options)
        self.assets: list[str] = list(self.options["assets"])
        self.group_by = str(self.options.get("group_by", "none"))
        self.resampling = str(self.options.get("resampling", "nearest"))
        self.asset_resampling = dict(self.options.get("asset_resampling") or {})
        self.records = records(config.name, self.options, config.cache_dir)
        self._open = OpenRasters(OPEN_ASSETS)
        self._lock = threading.Lock()
        #: asset files this process opened (a tile opens only the items meeting it)
        self.opened: set[str] = set()
        gb = grid.bounds()
        same = grid.crs == _WGS84 or grid.crs.to_authority() in (("OGC", "CRS84"), ("EPSG", "4326"))
        self._boxes: list[Bounds | None] = []
        for r in self.records:
            b = Bounds(*r.bbox) if same else transform_bounds_safe(_WGS84, grid.crs, Bounds(*r.bbox))
            self._boxes.append(None if b is None else b.intersection(gb))
        present = [i for i, b in enumerate(self._boxes) if b is not None]
        self._tree_items = np.array(present, dtype=np.int64)
        self._tree = shapely.STRtree([shapely.box(*self._boxes[i]) for i in present])  # type: ignore[misc]
        self._geoms = [shapely.geometry.shape(r.geometry) for r in self.records]
        self._same = same
        self.bounds: Bounds | None = Bounds.union_all(b for b in self._boxes if b is not None)
        self.count = len(self.assets)
        self.dtype = ""   # known once an asset is open (`_describe`)
        self.nodata: float | int | None = None

    # -- items ---------------------------------------------------------------------------------
    def candidates(self, tile: Tile) -> list[int]:
        """Items whose geometry meets the buffered tile, oldest first."""
        if not len(self._tree_items):
            return []
        box = tile.buffered_bounds
        hits = self._tree_items[self._tree.query(shapely.box(*box), predicate="intersects")]
        if not len(hits):
            return []
        if self._same:
            footprint = shapely.box(*box)
        else:
            lonlat = transform_bounds_safe(self.grid.crs, _WGS84, box)
            footprint = shapely.box(*lonlat) if lonlat is not None else None
        # interiors must meet: a scene whose edge runs along the tile's has nothing in it
        out = [int(i) for i in hits if footprint is None
               or (self._geoms[int(i)].intersects(footprint) and not self._geoms[int(i)].touches(footprint))]
        return sorted(out)

    def _asset(self, href: str, asset: str) -> RasterInput:
        def opener() -> RasterInput:
            resampling = self.asset_resampling.get(asset, self.resampling)
            try:
                got = RasterInput(InputConfig(f"{self.name} ({asset} of {Path(href).name})", href, "raster",
                                              {"resampling": resampling}), self.grid)
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"input {self.name!r}: cannot open asset {asset} at {href}: {exc}") from exc
            with self._lock:
                self.opened.add(href)
            return got

        return self._open.get(href, opener)

    def _read_item(self, i: int, tile: Tile, assets: Sequence[str]) -> np.ma.MaskedArray:
        """One item's assets on the tile, (band, y, x), float32 so assets of any dtype stack (integers
        up to 2**24 exactly: 16-bit reflectances and classes)."""
        rec = self.records[i]
        out = np.ma.masked_all((len(assets), *tile.buffered_shape), dtype="float32")
        for b, asset in enumerate(assets):
            data = self._asset(rec.assets[asset], asset).read(tile, 1)
            out[b] = data.astype("float32")
        return out

    def _groups(self, indices: list[int]) -> list[list[int]]:
        if self.group_by != "solar_day":
            return [[i] for i in indices]
        by_day: dict[dt.date, list[int]] = {}
        for i in indices:
            by_day.setdefault(solar_day(self.records[i]), []).append(i)
        return [by_day[d] for d in sorted(by_day)]

    def items(self, tile: Tile, assets: Sequence[str] | None = None
              ) -> Iterator[tuple[dt.datetime, str, np.ma.MaskedArray]]:
        """One time step at a time: (datetime, id, (band, y, x)); merged groups join their ids with '+'."""
        wanted = self._check_assets(assets)
        for group in self._groups(self.candidates(tile)):
            merged: np.ma.MaskedArray | None = None
            for i in group:
                data = self._read_item(i, tile, wanted)
                if merged is None:
                    merged = data
                else:   # first valid pixel wins
                    take = np.ma.getmaskarray(merged) & ~np.ma.getmaskarray(data)
                    merged.data[take] = data.data[take]
                    merged.mask = np.ma.getmaskarray(merged) & ~take
            assert merged is not None
            first = self.records[group[0]]
            yield dt.datetime.fromisoformat(first.datetime), "+".join(self.records[i].id for i in group), merged

    def _check_assets(self, assets: Sequence[str] | None) -> list[str]:
        if assets is None:
            return list(self.assets)
        if isinstance(assets, str):
            assets = [assets]
        unknown = [a for a in assets if a not in self.assets]
        if unknown:
            raise InputError(f"input {self.name!r}: asset(s) {', '.join(unknown)} not among {', '.join(self.assets)}")
        return list(assets)

    def read(self, tile: Tile, assets: Sequence[str] | None = None) -> TimeStack:
        wanted = self._check_assets(assets)
        steps = list(self.items(tile, wanted))
        if steps:
            stack = np.ma.stack([s[2] for s in steps])
        else:
            stack = np.ma.masked_all((0, len(wanted), *tile.buffered_shape), dtype="float32")
        return TimeStack.wrap(stack, [s[0] for s in steps], [s[1] for s in steps], wanted)

    def read_xarray(self, tile: Tile, assets: Sequence[str] | None = None) -> Any:
        try:
            import xarray as xr
        except ImportError as exc:
            raise InputError("read_xarray() needs xarray: pip install xarray") from exc
        stack = self.read(tile, assets)
        a = tile.buffered_affine
        h, w = tile.buffered_shape
        data = np.ma.filled(stack.astype("float64"), np.nan)
        times = np.array([d.replace(tzinfo=None) for d in stack.datetimes], dtype="datetime64[ns]")
        return xr.DataArray(data, dims=("time", "band", "y", "x"),
                            coords={"time": times, "band": stack.bands, "id": ("time", stack.item_ids),
                                    "y": a.f + (np.arange(h) + 0.5) * a.e, "x": a.c + (np.arange(w) + 0.5) * a.a},
                            name=self.name)

    # -- the Input protocol --------------------------------------------------------------------
    def for_tile(self, tile: Tile) -> "StacTileInput":
        return StacTileInput(self, tile)

    def is_empty(self, tile: Tile) -> bool:
        return not self.candidates(tile)

    def sources(self, tile: Tile) -> list[tuple[str | Path, str | None]]:
        """Every asset file the tile reads, versioned by its item (`updated`, else id and time)."""
        out: list[tuple[str | Path, str | None]] = []
        for i in self.candidates(tile):
            rec = self.records[i]
            out += [(rec.assets[a], rec.version) for a in self.assets]
        return out

    def close(self) -> None:
        self._open.close()

    def __repr__(self) -> str:
        return f"StacInput(name={self.name!r}, items={len(self.records)})"


class StacTileInput:
    """A `stac` input bound to one tile (what a process receives)."""

    kind: Literal["raster", "vector"] = "raster"

    def __init__(self, source: StacInput, tile: Tile) -> None:
        self.source, self.tile = source, tile

    def is_empty(self) -> bool:
        return self.source.is_empty(self.tile)

    @property
    def assets(self) -> list[str]:
        return list(self.source.assets)

    @property
    def item_ids(self) -> list[str]:
        return [self.source.records[i].id for i in self.source.candidates(self.tile)]

    def read(self, assets: Sequence[str] | None = None) -> TimeStack:
        return self.source.read(self.tile, assets)

    def items(self, assets: Sequence[str] | None = None) -> Iterator[tuple[dt.datetime, str, np.ma.MaskedArray]]:
        return self.source.items(self.tile, assets)

    def read_xarray(self, assets: Sequence[str] | None = None) -> Any:
        return self.source.read_xarray(self.tile, assets)

    def __repr__(self) -> str:
        return f"StacTileInput({self.source.name!r}, {self.tile})"


__all__ = ["OPEN_ASSETS", "StacInput", "StacTileInput", "TimeStack", "solar_day"]
