"""Parts of STAC items shared by the tiled-assets item (`stac`), the single-file item
(`stac_file`) and collections (`stac_collection`): tile matrix sets as GDAL's STACTA driver reads
them, `proj:` and `raster:bands` properties, extension schemas, reading and locking STAC JSON."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ziggurat.core.grid import Grid
from ziggurat.core.limits import ZoomLimits
from ziggurat.io.outputs.stored import METADATA_FILE
from ziggurat.recipe.bands import hex_color
from ziggurat.recipe.stac_settings import StacSettings, parse_datetime

log = logging.getLogger(__name__)

PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_SCHEMA = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
EO_SCHEMA = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
CLASSIFICATION_SCHEMA = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"


# -- STAC JSON on disk -------------------------------------------------------------------------
def read_json(path: Path, then: str) -> dict[str, Any] | None:
    """A STAC object on disk, or None if there is none or it is unreadable (warned, with what
    happens `then`)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cannot read STAC JSON %s (%s); %s", path, exc, then)
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Serialise read-merge-write of STAC JSON in `folder` between processes (flock on it)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def kept_settings(existing: Mapping[str, Any]) -> StacSettings:
    """What a rebuilt item keeps of the one it replaces: id and datetime."""
    props = existing.get("properties") or {}
    try:
        when = parse_datetime(props.get("datetime"))
    except ValueError:
        when = None
    return StacSettings(id=existing.get("id"), datetime=when, datetime_null=props.get("datetime", "") is None)


def stac_class(value: int, name: str, description: str | None = None,
               rgba: Sequence[int] | None = None) -> dict[str, Any]:
    """One entry of `classification:classes`."""
    out: dict[str, Any] = {"value": value, "name": name}
    if description:
        out["description"] = description
    if rgba:
        out["color_hint"] = hex_color(tuple(rgba))
    return out


# -- tile matrices ----------------------------------------------------------------------------
def tms_key(grid: Grid) -> str:
    return str(grid.tms.id)


def tile_matrix(grid: Grid, zoom: int, limits: tuple[int, int, int, int] | None = None
                ) -> dict[str, Any] | None:
    """One TMS 2.0 tile matrix as the output tiles are cut: metatiles, tile size, id = zoom.

    None if GDAL cannot read that zoom: STACTA wants every file exactly tileWidth x tileHeight,
    so a clipped metatile at the matrix edge (matrix size not a multiple of the metatiling,
    and larger than it) must lie outside the limits.
    """
    m = grid.matrix(zoom)
    px_h, px_w = grid.with_options(metatiling=1).tile_shape(zoom, 0, 0)
    cell = m.cellSize * m.tileWidth / px_w
    mt = grid.metatiling
    out = m.model_dump(mode="json", exclude_none=True)
    out.update(id=str(zoom), cellSize=cell, scaleDenominator=m.scaleDenominator * cell / m.cellSize)
    for size_key, count_key, px, n, lim in (("tileWidth", "matrixWidth", px_w, m.matrixWidth,
                                             None if limits is None else limits[3]),
                                            ("tileHeight", "matrixHeight", px_h, m.matrixHeight,
                                             None if limits is None else limits[1])):
        if n <= mt:  # one metatile spans the whole matrix: its real size is the tile size
            out[size_key], out[count_key] = n * px, 1
            continue
        out[size_key], out[count_key] = mt * px, -(-n // mt)
        if n % mt and (lim is None or lim >= n // mt):
            return None
    return out


def _uses_tms_v1(grid: Grid) -> bool:
    """OGC 17-083r2 (TMS 1.0) is what tiled-assets v1.0.0 specifies and what GDAL < 3.8 (QGIS on
    Debian 12, Ubuntu 22.04) reads; GDAL 3.8+ reads both. TMS 1.0 cannot say "bottomLeft"."""
    return grid.matrix(grid.minzoom).cornerOfOrigin != "bottomLeft"


def _v1_matrix(m: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "TileMatrixType", "identifier": m["id"], "scaleDenominator": m["scaleDenominator"],
            "topLeftCorner": list(m["pointOfOrigin"]), "tileWidth": m["tileWidth"],
            "tileHeight": m["tileHeight"], "matrixWidth": m["matrixWidth"], "matrixHeight": m["matrixHeight"]}


def _tms_v1(tms: Mapping[str, Any], grid: Grid) -> dict[str, Any]:
    crs = tms.get("crs")
    if isinstance(crs, Mapping):
        crs = crs.get("uri")
    out: dict[str, Any] = {"type": "TileMatrixSetType", "identifier": tms.get("id") or tms_key(grid)}
    if tms.get("title"):
        out["title"] = tms["title"]
    out["supportedCRS"] = crs if isinstance(crs, str) else grid.crs.to_wkt()
    if tms.get("wellKnownScaleSet"):
        out["wellKnownScaleSet"] = tms["wellKnownScaleSet"]
    out["tileMatrix"] = [_v1_matrix(m) for m in tms["tileMatrices"]]
    return out


def encoded_matrix(grid: Grid, zoom: int, limits: tuple[int, int, int, int] | None = None
                   ) -> dict[str, Any] | None:
    """A tile matrix as the item stores it (TMS 1.0 or 2.0, see `_uses_tms_v1`)."""
    matrix = tile_matrix(grid, zoom, limits)
    return _v1_matrix(matrix) if matrix is not None and _uses_tms_v1(grid) else matrix


def tile_matrix_set(grid: Grid, limits: ZoomLimits) -> tuple[dict[str, Any], list[int]]:
    """The TMS JSON with only the zooms in `limits`; also the zooms it had to leave out."""
    tms = grid.tms.model_dump(mode="json", exclude_none=True)
    matrices, dropped = [], []
    for zoom, lim in limits.items():
        matrix = tile_matrix(grid, zoom, lim)
        if matrix is None:
            dropped.append(zoom)
        else:
            matrices.append(matrix)
    matrices.sort(key=lambda m: -m["scaleDenominator"])
    tms["tileMatrices"] = matrices
    native = grid.metatiling == 1 and grid.tile_size in (None, grid.tms.matrix(grid.minzoom).tileWidth)
    if not native:  # no longer the registered matrix set: do not claim its URI
        tms.pop("uri", None)
        tms.pop("wellKnownScaleSet", None)
    return (_tms_v1(tms, grid) if _uses_tms_v1(grid) else tms), dropped


def limits_json(limits: ZoomLimits, zooms: Iterable[int]) -> dict[str, dict[str, int]]:
    out = {}
    for zoom in zooms:
        r0, r1, c0, c1 = limits.get(zoom)  # type: ignore[misc]
        out[str(zoom)] = {"min_tile_row": r0, "max_tile_row": r1, "min_tile_col": c0, "max_tile_col": c1}
    return out


def limits_from_item(item: Mapping[str, Any], key: str) -> ZoomLimits:
    out = ZoomLimits()
    links = (item.get("properties") or {}).get("tiles:tile_matrix_links") or {}
    for zoom, lim in ((links.get(key) or {}).get("limits") or {}).items():
        out.add(int(zoom), int(lim["min_tile_row"]), int(lim["min_tile_col"]))
        out.add(int(zoom), int(lim["max_tile_row"]), int(lim["max_tile_col"]))
    return out


# -- properties ------------------------------------------------------------------------------
def nodata_json(nodata: float | int | None) -> float | int | str | None:
    if nodata is None:
        return None
    if isinstance(nodata, float):
        if math.isnan(nodata):
            return "nan"
        if math.isinf(nodata):
            return "inf" if nodata > 0 else "-inf"
        if nodata.is_integer():
            return int(nodata)
    return nodata


def crs_properties_of(crs: Any) -> dict[str, Any]:
    """`proj:code` (an authority code) or, where the CRS has none, `proj:wkt2`."""
    auth = crs.to_authority()
    if auth:
        return {"proj:code": f"{auth[0]}:{auth[1]}"}
    return {"proj:code": None, "proj:wkt2": crs.to_wkt()}


def crs_properties(grid: Grid) -> dict[str, Any]:
    return crs_properties_of(grid.crs)


def raster_bands(dtype: str, nodata: float | int | None, count: int,
                 specs: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """`raster:bands`: type and nodata, and what `output.bands` says of each band (name and
    description as STAC 1.1 common band fields, unit, scale/offset, classification:classes)."""
    out = []
    for i in range(count):
        band: dict[str, Any] = {"data_type": dtype}
        value = nodata_json(nodata)
        if value is not None:
            band["nodata"] = value
        spec = specs[i] if i < len(specs) else {}
        for key in ("name", "description", "unit", "scale", "offset"):
            if spec.get(key) is not None:
                band[key] = spec[key]
        if spec.get("classes"):
            band["classification:classes"] = [stac_class(c["value"], c["name"], c.get("description"),
                                                         c.get("color")) for c in spec["classes"]]
        out.append(band)
    return out


def band_extensions(specs: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Extension schemas the band specs need beyond raster."""
    return (CLASSIFICATION_SCHEMA,) if any(s.get("classes") for s in specs) else ()


def footprint_lonlat(crs: Any, bounds: Sequence[float], digits: int = 9) -> Any:
    """A box in `crs` as an RFC 7946 polygon: edges densified before reprojecting to lon/lat,
    rings counter-clockwise, coordinates to `digits` decimals."""
    import shapely
    from rasterio.warp import transform_geom

    box = shapely.box(*bounds)
    if crs.to_authority() not in (("OGC", "CRS84"),):
        dense = shapely.segmentize(box, max(bounds[2] - bounds[0], bounds[3] - bounds[1]) / 128)
        box = shapely.geometry.shape(transform_geom(crs, "EPSG:4326", dense.__geo_interface__))
    return shapely.orient_polygons(shapely.set_precision(box, 10 ** -digits), exterior_cw=False)


def single_asset_item(item_id: str, geometry: Any, settings: StacSettings, existing: Mapping[str, Any],
                      properties: Mapping[str, Any], asset: dict[str, Any], output: Path, item_dir: Path,
                      now: Any) -> dict[str, Any]:
    """An item with one `data` asset (a single file, a Zarr store): the recipe's `stac` settings
    over what a user or an earlier run put in `existing` (their other assets, links and
    properties kept), `properties` computed from the data, the provenance links."""
    import pystac

    from ziggurat.recipe.stac_settings import COMPUTED_PROPERTIES
    from ziggurat.records.provenance import provenance_links

    old = dict(existing.get("properties") or {})
    props = {k: v for k, v in old.items() if k not in COMPUTED_PROPERTIES}
    props.update(settings.properties)
    for name in ("title", "description", "license"):
        value = getattr(settings, name)
        if value is not None:
            props[name] = value
    props.setdefault("license", "other")
    props.update(properties)
    props["created"] = old.get("created") or pystac.utils.datetime_to_str(now)
    props["updated"] = pystac.utils.datetime_to_str(now)
    when = None if settings.datetime_null else (settings.datetime or now)
    item = pystac.Item(settings.id or existing.get("id") or item_id, geometry.__geo_interface__,
                       list(geometry.bounds), when, props)
    out = item.to_dict(include_self_link=False, transform_hrefs=False)
    if settings.eo_bands:
        asset["eo:bands"] = [dict(b) for b in settings.eo_bands]
    bands = asset.get("raster:bands") or []
    ours = (PROJECTION_SCHEMA, RASTER_SCHEMA) + ((EO_SCHEMA,) if settings.eo_bands else ()) + \
        (CLASSIFICATION_SCHEMA,) * any("classification:classes" in b for b in bands)
    out["stac_extensions"] = list(ours) + [e for e in existing.get("stac_extensions") or [] if e not in ours]
    assets = {k: v for k, v in (existing.get("assets") or {}).items() if k != "data"}
    out["assets"] = {"data": asset, **assets}
    links = [link for link in existing.get("links") or [] if not str(link.get("rel", "")).startswith("ziggurat:")]
    out["links"] = links + provenance_links(output, relative_to=item_dir)
    return out


def item_path(output_dir: str | os.PathLike[str]) -> Path:
    """`<output>/<folder name>.json`, unless that is metadata.json (then `stac-item.json`)."""
    root = Path(output_dir)
    name = f"{root.name}.json"
    return root / ("stac-item.json" if name == METADATA_FILE else name)


def read_item(path: Path) -> dict[str, Any] | None:
    """The item on disk, or None if there is none or it is unreadable (then it is rebuilt)."""
    return read_json(path, "rebuilding it from the tiles on disk")
