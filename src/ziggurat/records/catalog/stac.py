"""A STAC Item (tiled-assets extension) describing a tile directory, that GDAL opens as one mosaic.

The item lives at `<output>/<output folder name>.json`. GDAL's STACTA driver reads it as a single
raster: the finest zoom is the full-resolution level, the coarser zooms are overviews. What GDAL
needs (checked against GDAL 3.10, see docs/stac.md):

- only zooms that hold data in `tiles:tile_matrix_sets` (embedding z0-24 makes a 2^30-pixel raster),
  with tileWidth/Height = the output metatile size in pixels and strictly decreasing scale
  denominators (GDAL derives the pixel size from them, not from cellSize);
- `tiles:tile_matrix_links` (this spelling) with all four limits per zoom;
- `raster:bands` (data_type, nodata) on the asset template, so no prototype tile is opened;
- sparse outputs need the open option `SKIP_MISSING_METATILE=YES` (missing tiles then read as nodata).

Runs update the item with the extent of the tiles they wrote (merged with what the item already
lists); `build_item()` rebuilds it from the tiles on disk.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pystac
import shapely
from rasterio.warp import transform_geom
from shapely.geometry import shape

from ziggurat.core.errors import OutputError
from ziggurat.core.formats import Storage
from ziggurat.core.grid import Bounds, Grid, Tile, TileIndex
from ziggurat.core.limits import ZoomLimits
from ziggurat.core.tasks import SKIPPED, TileOutcome
from ziggurat.io import Output
from ziggurat.io.outputs.stored import METADATA_FILE, StoredOutput, open_stored
from ziggurat.io.storage.atomic import write_json_atomic
from ziggurat.recipe import Recipe
from ziggurat.recipe.stac_settings import COMPUTED_PROPERTIES, StacSettings, parse_datetime, settings_from_recipe
from ziggurat.records.catalog.collection import update_collection
from ziggurat.records.catalog.file_item import build_file_item, write_file_item
from ziggurat.records.catalog.index import write_vrts
from ziggurat.records.catalog.parts import (
    EO_SCHEMA,
    PROJECTION_SCHEMA,
    RASTER_SCHEMA,
    band_extensions,
    crs_properties,
    encoded_matrix,
    item_path,
    kept_settings,
    limits_from_item,
    limits_json,
    locked,
    raster_bands,
    read_item,
    tile_matrix,
    tile_matrix_set,
    tms_key,
)
from ziggurat.records.catalog.zarr_item import store_item_path, write_store_item
from ziggurat.records.provenance import provenance_links

log = logging.getLogger(__name__)

TILED_ASSETS_SCHEMA = "https://stac-extensions.github.io/tiled-assets/v1.0.0/schema.json"
EXTENSIONS = (TILED_ASSETS_SCHEMA, PROJECTION_SCHEMA, RASTER_SCHEMA)
ASSET_KEY = "data"
_COORD_DIGITS = 9  # ~0.1 mm in degrees


# -- footprint --------------------------------------------------------------------------------
def data_extent(grid: Grid, limits: ZoomLimits, extent: Bounds | None = None) -> shapely.Geometry:
    """Where the output holds data, in the grid CRS: the tiles of each zoom clipped to the runs'
    area (a coarse tile reaches far past the data; the area is where inputs and bounds are)."""
    boxes = [shapely.box(*limits.bounds(grid, z)) for z in limits.zooms]
    union = shapely.union_all(boxes)
    if extent is not None:
        clipped = union.intersection(shapely.box(*extent))
        union = clipped if not clipped.is_empty and clipped.area > 0 else union
    return union.simplify(0)  # drop the collinear corners of merged boxes


def footprint(grid: Grid, limits: ZoomLimits, extent: Bounds | None = None) -> shapely.Geometry:
    """`data_extent` in WGS84 lon/lat (edges densified before reprojecting), rings
    counter-clockwise as RFC 7946 asks."""
    union = data_extent(grid, limits, extent)
    if grid.crs.to_authority() not in (("OGC", "CRS84"),):
        left, bottom, right, top = union.bounds
        dense = shapely.segmentize(union, max(right - left, top - bottom) / 128)
        union = shape(transform_geom(grid.crs, "EPSG:4326", dense.__geo_interface__))
    return shapely.orient_polygons(shapely.set_precision(union, 10 ** -_COORD_DIGITS), exterior_cw=False)


# -- the item ---------------------------------------------------------------------------------
def item_dict(tiles: StoredOutput, limits: ZoomLimits, settings: StacSettings | None = None,
              existing: Mapping[str, Any] | None = None, now: dt.datetime | None = None,
              extent: Bounds | None = None) -> dict[str, Any]:
    """The item as JSON; `existing` contributes what a user or an earlier run put there;
    `extent` (grid CRS) is the area the runs covered, which clips the tile extents."""
    if not limits:
        raise OutputError(f"output {tiles.path}: no tiles to describe")
    settings = settings or StacSettings()
    existing = existing or {}
    old_props = dict(existing.get("properties") or {})
    now = now or dt.datetime.now(dt.timezone.utc)
    grid, key = tiles.grid, tms_key(tiles.grid)
    tms, dropped = tile_matrix_set(grid, limits)
    if dropped:
        log.warning("output %s: zoom(s) %s left out of the STAC item: their edge metatiles are clipped "
                    "(matrix size not a multiple of metatiling %d), which GDAL cannot read",
                    tiles.path, ", ".join(map(str, dropped)), grid.metatiling)
    if not (tms.get("tileMatrix") or tms.get("tileMatrices")):
        raise OutputError(f"output {tiles.path}: no zoom level can be described for GDAL")
    kept = [z for z in limits.zooms if z not in dropped]
    geom = footprint(grid, limits, extent)
    proj_bbox = data_extent(grid, limits, extent).bounds

    props = _properties(old_props, settings, grid, proj_bbox, extent, now)
    props["tiles:tile_matrix_sets"] = {key: tms}
    url = tms.get("uri") or f"#/properties/tiles:tile_matrix_sets/{key}"
    props["tiles:tile_matrix_links"] = {key: {"url": url, "limits": limits_json(limits, kept)}}

    when = None if settings.datetime_null else (settings.datetime or now)
    item = pystac.Item(settings.id or existing.get("id") or tiles.path.name, geom.__geo_interface__,
                       list(geom.bounds), when, props, stac_extensions=[])
    out = item.to_dict(include_self_link=False, transform_hrefs=False)
    ours = EXTENSIONS + ((EO_SCHEMA,) if settings.eo_bands else ()) + band_extensions(tiles.band_specs)
    extensions = list(ours) + [e for e in existing.get("stac_extensions") or [] if e not in ours]
    templates = dict(existing.get("asset_templates") or {})
    templates.pop(ASSET_KEY, None)
    template = {"href": tiles.layout.stac_href(tiles.ext),
                "type": tiles.info.media_type, "title": "Tiles", "roles": ["data"],
                "raster:bands": raster_bands(tiles.dtype, tiles.nodata, tiles.bands, tiles.band_specs)}
    if settings.eo_bands:
        template["eo:bands"] = [dict(b) for b in settings.eo_bands]
    links = [link for link in existing.get("links") or []
             if not str(link.get("rel", "")).startswith("ziggurat:")]
    links += provenance_links(tiles.path)  # saved recipe, process source and run manifest
    # GDAL finds the tiled-assets schema in the first 32 KiB and opens the first template;
    # GDAL < 3.8 looks for a literal "tiled-assets" there instead: properties go before the
    # (possibly long) geometry and start with one
    properties = {"ziggurat:layout": "tiled-assets", **out["properties"]}
    return {"type": "Feature", "stac_version": out["stac_version"], "stac_extensions": extensions,
            "id": out["id"], "bbox": out["bbox"], "properties": properties,
            "asset_templates": {ASSET_KEY: template, **templates},
            "geometry": out["geometry"], "links": links,
            "assets": dict(existing.get("assets") or {})}


def _properties(old_props: Mapping[str, Any], settings: StacSettings, grid: Grid, proj_bbox: Any,
                extent: Bounds | None, now: dt.datetime) -> dict[str, Any]:
    """The item's properties but its tile matrices: the recipe's settings over what a user or an
    earlier run put there, the projection and the times."""
    props = {k: v for k, v in old_props.items() if k not in COMPUTED_PROPERTIES and k != "proj:epsg"}
    props.update(settings.properties)
    for name in ("title", "description", "license"):
        value = getattr(settings, name)
        if value is not None:
            props[name] = value
    if settings.eo_bands:
        props["eo:bands"] = [dict(b) for b in settings.eo_bands]
    props.update(crs_properties(grid))
    props["proj:bbox"] = [round(v, _COORD_DIGITS) for v in proj_bbox]
    if extent is not None:   # what later runs merge their areas with
        props["ziggurat:extent"] = [round(v, _COORD_DIGITS) for v in extent]
    else:
        props.pop("ziggurat:extent", None)
    props.setdefault("license", "other")   # STAC 1.1: "other" = see the license link, if any
    props["created"] = old_props.get("created") or pystac.utils.datetime_to_str(now)
    props["updated"] = pystac.utils.datetime_to_str(now)
    return props


def _consistent(item: Mapping[str, Any], tiles: StoredOutput) -> bool:
    """Does an existing item describe this tile directory's grid and format (not an older one)?"""
    key = tms_key(tiles.grid)
    tms = ((item.get("properties") or {}).get("tiles:tile_matrix_sets") or {}).get(key)
    template = (item.get("asset_templates") or {}).get(ASSET_KEY) or {}
    if not isinstance(tms, dict) or not template.get("href", "").endswith(f".{tiles.ext}"):
        return False
    stored = {m.get("identifier", m.get("id")): m for m in tms.get("tileMatrix") or tms.get("tileMatrices") or []}
    return all(stored.get(str(zoom)) == encoded_matrix(tiles.grid, zoom, lim)
               for zoom, lim in limits_from_item(item, key).items())


def _item_extent(item: Mapping[str, Any] | None) -> Bounds | None:
    """The area earlier runs covered (grid CRS), as an item records it in `ziggurat:extent` (items
    written before it existed have none: their `proj:bbox` was the tiles' extent)."""
    box = ((item or {}).get("properties") or {}).get("ziggurat:extent")
    if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
        return Bounds(*map(float, box))
    return None


def _union(a: Bounds | None, b: Bounds | None) -> Bounds | None:
    return a if b is None else b if a is None else Bounds.union_all([a, b])


def write_item(tiles: StoredOutput, limits: ZoomLimits | None = None, settings: StacSettings | None = None,
               *, merge: bool = True, force: bool = True, extent: Bounds | None = None) -> Path | None:
    """Create or update the item; `limits` None means scan the disk. Returns its path.

    With `merge`, limits already in the item are kept (later runs only grow it); an item that
    does not match the grid or format on disk is rebuilt from a scan. Without `force` nothing is
    written when the item already covers `limits`.
    """
    path = item_path(tiles.path)
    with locked(tiles.path):
        existing = read_item(path)
        if limits is None:
            limits = tiles.limits()
        merged = ZoomLimits()
        merged.merge(limits)
        if existing is None and merge and path.exists():  # unreadable: trust the disk instead
            merged.merge(tiles.limits())
        elif existing is not None and merge:
            if _consistent(existing, tiles):
                before = limits_from_item(existing, tms_key(tiles.grid))
                merged.merge(before)
                if not force and merged == before:
                    return path
                if extent is not None:  # earlier runs' areas stay described
                    extent = _union(extent, _item_extent(existing))
            else:
                log.info("STAC item %s does not match %s; rebuilding it from the tiles on disk",
                         path, tiles.path)
                merged = tiles.limits()
                merged.merge(limits)
        if not merged:
            return path if existing is not None else None
        payload = item_dict(tiles, merged, settings, existing, extent=extent)
        try:
            write_json_atomic(path, payload)
        except OSError as exc:
            raise OutputError(f"cannot write STAC item {path}: {exc}") from exc
    log.info("STAC item %s: zooms %s", path, ", ".join(map(str, merged.zooms)))
    return path


def build_item(output_dir: str | os.PathLike[str]) -> Path:
    """(Re)build the item from the tiles on disk (or the single file), keeping id, datetime and
    extra properties."""
    tiles = open_stored(output_dir)
    if tiles.storage is Storage.FILE:
        return build_file_item(output_dir)
    if tiles.storage is Storage.STORE:   # one item pointing at the store
        return write_store_item(Path(output_dir), kept_settings(read_item(store_item_path(Path(output_dir))) or {}))
    if not tiles.is_raster:
        raise OutputError(f"{tiles.path} holds {tiles.format} tiles; a STAC item is written for raster tiles")
    limits = tiles.limits()
    if not limits:
        raise OutputError(f"{tiles.path} holds no {tiles.ext} tiles")
    existing = read_item(item_path(tiles.path)) or {}
    settings = kept_settings(existing)
    extent = _item_extent(existing) if existing and _consistent(existing, tiles) else None
    path = write_item(tiles, limits, settings, merge=False, extent=extent)
    assert path is not None
    return path


def add_thumbnail(item: Path, image: Path) -> None:
    """The quicklook as the item's `thumbnail` asset (kept when later runs rewrite the item)."""
    data = read_item(item)
    if data is None:
        return
    href = Path(os.path.relpath(image, item.parent)).as_posix()
    asset = {"href": href, "type": "image/png", "title": "Quicklook", "roles": ["thumbnail"]}
    if (data.get("assets") or {}).get("thumbnail") == asset:
        return   # an unchanged item is not rewritten
    data.setdefault("assets", {})["thumbnail"] = asset
    write_json_atomic(item, data)


class RunItem:
    """The engine's hook: tracks the extent of what a run writes (O(zooms)), then updates the item.

    The recipe's `stac` settings were validated when it loaded.
    """

    def __init__(self, recipe: Recipe, output: Output, replaced: bool = False,
                 extent: Bounds | None = None) -> None:
        self.output = output
        self.extent = extent              # the run's area (grid CRS): clips the tile extents
        self.replaced = replaced  # the earlier pyramid was removed: the item describes only this run
        #: what the output holds: the item's kind is chosen from it
        self.stored = output.stored
        #: raster tiles: a tiled-assets item
        self.enabled = self.stored.is_raster and isinstance(output.path, Path)
        #: a local single file: its item is written once the file is in place (a remote one is
        #: uploaded whole and has no item yet)
        self.file = self.stored.storage is Storage.FILE and not recipe.output.remote
        #: a local store of many objects (Zarr): one item pointing at the store
        self.store = self.stored.storage is Storage.STORE and not recipe.output.remote
        self.settings: StacSettings | None = recipe.stac if self.enabled or self.file or self.store else None
        self.cog = bool(recipe.output.options.get("cog"))
        self.remote = recipe.output.remote
        self.with_quicklook = True
        self.band_specs = tuple(recipe.output.band_specs)
        self.limits = ZoomLimits()        # written by this run, and skipped because they exist
        self.wrote = False

    def outcome(self, outcome: TileOutcome) -> None:
        """A subscriber of the run's outcomes: the tiles written, and those skipped because they exist."""
        if outcome.status == SKIPPED:
            self.skipped(self.output.grid.tile(*outcome.index))
        else:
            self.written(outcome.written)

    def written(self, indices: Iterable[TileIndex]) -> None:
        for zoom, row, col in indices:
            self.limits.add(zoom, row, col)
            self.wrote = True

    def skipped(self, process_tile: Tile) -> None:
        """A process tile skipped because all its output tiles exist: they belong in the item
        (heals an item that an interrupted run never got to write)."""
        if self.enabled:
            self.limits.update(t.index for t in self.output.output_tiles(process_tile))

    @property
    def zooms(self) -> list[int]:
        return self.limits.zooms

    def _tiles(self) -> StoredOutput | None:
        if not self.enabled or not (Path(self.output.path) / METADATA_FILE).is_file():
            return None
        return self.stored

    def finish(self) -> Path | None:
        """Write/update the item (and its collection); returns its path (None if nothing
        describes the output yet)."""
        if self.store:
            return self._finish_store()
        tiles = self._tiles()
        if tiles is None:
            return None
        if not self.limits:
            path: Path | None = item_path(tiles.path)
            return self._collect(path) if path is not None and path.exists() else None
        item = write_item(tiles, self.limits, self.settings, force=self.wrote or self.replaced,
                          merge=not self.replaced, extent=self.extent)
        if item is not None and tiles.time is not None:   # a time series: a folder and an item per step
            from ziggurat.records.catalog.series import write_series_catalog

            self.collection = write_series_catalog(tiles, item)
        return self._collect(item)

    #: the collection the item was added to (`stac.collection`), once written
    collection: Path | None = None

    def _collect(self, item: Path | None) -> Path | None:
        wanted = None if self.settings is None else self.settings.collection
        if item is not None and wanted is not None:
            self.collection = update_collection(item, wanted, self.output.path)
        return item

    def _finish_store(self) -> Path | None:
        if not (self.wrote or self.replaced) and store_item_path(self.output.path).is_file():
            return self._collect(store_item_path(self.output.path))
        if not (Path(self.output.path) / METADATA_FILE).is_file():
            return None
        return self._collect(write_store_item(self.output.path, self.settings))

    def finish_file(self) -> Path | None:
        """The item of a single-file output, after the run renamed the file into place."""
        if not self.file or not Path(self.output.path).is_file():
            return None
        return self._collect(write_file_item(self.output.path, self.settings, cog=self.cog,
                                             band_specs=self.band_specs))

    def quicklook(self, item: Path | None) -> Path | None:
        """`.ziggurat/quicklook.png` of a local raster output, added to its item as the
        `thumbnail` asset. A quicklook that cannot be made is a warning, never a failed run."""
        if item is None or self.remote or not self.with_quicklook or not item.is_file():
            return None
        from ziggurat.records.catalog.quicklook import RUN_MAX_TILES, RUN_SIZE, make_quicklook, quicklook_path

        try:
            path = quicklook_path(self.output.path)
            if self.wrote or self.replaced or not path.is_file():   # nothing new: the one there is current
                path = make_quicklook(self.output.path, size=RUN_SIZE, max_tiles=RUN_MAX_TILES,
                                      data=self.output.preview())
            add_thumbnail(item, path)
        except (OutputError, OSError, ValueError) as exc:
            log.info("no quicklook for %s: %s", self.output.path, exc)
            return None
        return path

    def write_vrts(self) -> list[Path]:
        """`<zoom>.vrt` for the zooms this run touched (all tiles on disk at those zooms)."""
        tiles = self._tiles()
        return [] if tiles is None or not self.limits else write_vrts(tiles, self.zooms)


__all__ = ["ASSET_KEY", "EXTENSIONS", "RunItem", "StacSettings", "TILED_ASSETS_SCHEMA",
           "build_item", "footprint", "item_dict", "item_path", "parse_datetime", "read_item",
           "settings_from_recipe", "tile_matrix", "tile_matrix_set", "write_item"]
