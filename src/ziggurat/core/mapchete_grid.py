"""mapchete's grid descriptions <-> ziggurat grids.

mapchete (via tilematrix) describes a grid as a name (``geodetic``, ``mercator``) or as a
mapping of the zoom-0 `shape` (rows, cols), `bounds` and a CRS (`proj`, `epsg`, `srs` or
`crs`); every zoom below doubles rows and columns. Recipes (`pyramid.grid`) and tile
directories (`metadata.json` `pyramid`) use the same form, so one conversion serves both
ways: a mapchete recipe runs on the same tiles, and either tool reads the other's output.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

import morecantile
from pyproj import CRS as ProjCRS
from pyproj.exceptions import CRSError

from ziggurat.core.errors import GridError
from ziggurat.core.grid import GRID_ALIASES, Grid

#: mapchete's named grids and their zoom-0 tile matrix (rows, cols), as tilematrix defines them
NAMED = {"geodetic": (1, 2), "mercator": (1, 1)}
#: zooms a grid built from a mapchete mapping defines (mapchete's have no upper limit)
CUSTOM_MAXZOOM = 24
CRS_KEYS = ("proj", "epsg", "srs", "crs")


def _crs(grid: Mapping[str, Any]) -> ProjCRS:
    given = [k for k in CRS_KEYS if grid.get(k) is not None]
    if not given:
        raise GridError("a grid mapping needs a CRS: 'epsg' (a code), 'proj' (a PROJ string) or "
                        "'srs' ({wkt: ...} or {epsg: ...})")
    value = grid[given[0]]
    if isinstance(value, Mapping):
        value = value.get("wkt") or (f"EPSG:{value['epsg']}" if "epsg" in value else value.get("proj"))
    elif given[0] == "epsg":
        value = f"EPSG:{value}"
    try:
        return ProjCRS.from_user_input(value)
    except CRSError as exc:
        raise GridError(f"grid {given[0]}: not a valid CRS ({value!r}): {exc}") from exc


def tms_from_mapchete(grid: str | Mapping[str, Any], tile_size: int = 256) -> tuple[morecantile.TileMatrixSet, str]:
    """The TileMatrixSet of a mapchete grid description, and the name to keep for it."""
    if isinstance(grid, str):
        return Grid.from_name(grid).tms, grid
    name = grid.get("grid", grid.get("type"))
    if isinstance(name, str) and name in NAMED and "shape" not in grid:
        return Grid.from_name(name).tms, name
    if isinstance(name, str) and name in NAMED and list(grid.get("shape") or ()) == list(NAMED[name]):
        return Grid.from_name(name).tms, name  # a mapchete metadata.json spells named grids out
    shape, bounds = grid.get("shape"), grid.get("bounds")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 2 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise GridError(f"a grid mapping needs 'shape': [rows, cols] of zoom 0 (positive integers), found {shape!r}")
    if isinstance(bounds, Mapping):
        bounds = [bounds.get(k) for k in ("left", "bottom", "right", "top")]
    if not (isinstance(bounds, (list, tuple)) and len(bounds) == 4
            and all(isinstance(v, (int, float)) for v in bounds) and bounds[0] < bounds[2] and bounds[1] < bounds[3]):
        raise GridError(f"a grid mapping needs 'bounds': [left, bottom, right, top], found {bounds!r}")
    crs = _crs(grid)
    rows, cols = int(shape[0]), int(shape[1])
    left, bottom, right, top = (float(v) for v in bounds)
    if abs((right - left) / cols - (top - bottom) / rows) > 1e-9 * max(abs(right - left), 1.0):
        raise GridError(f"grid bounds {list(bounds)} and shape {list(shape)} give tiles that are not square "
                        "(mapchete grids have square pixels)")
    tms = morecantile.TileMatrixSet.custom(
        [left, bottom, right, top], crs, tile_width=tile_size, tile_height=tile_size, matrix_scale=[cols, rows],
        maxzoom=CUSTOM_MAXZOOM, id="mapchete-custom")
    if crs.to_authority(min_confidence=100) is None:
        # morecantile names the CRS by its closest authority code (20 % confidence): a south-pole
        # orthographic became ESRI:102035, the north-pole one; keep the exact definition instead
        tms = morecantile.TileMatrixSet.model_validate(
            {**tms.model_dump(mode="json", exclude_none=True), "crs": {"wkt": crs.to_json_dict()}})
    return tms, "custom"


def grid_from_mapchete(pyramid: Mapping[str, Any]) -> Grid:
    """A `Grid` from a mapchete `pyramid` mapping (grid, metatiling, pixelbuffer, tile_size)."""
    tile_size = int(pyramid.get("tile_size") or 256)
    tms, name = tms_from_mapchete(pyramid["grid"], tile_size)
    size = None if name in NAMED and tile_size == 256 else tile_size
    if name == "custom":
        size = None  # the matrix set already has the tile size
    return Grid(tms, name, int(pyramid.get("metatiling", 1)), int(pyramid.get("pixelbuffer", 0)), size)


def _doubles(tms: morecantile.TileMatrixSet, levels: int = 4) -> bool:
    first = tms.matrix(tms.minzoom)
    for zoom in range(tms.minzoom + 1, min(tms.maxzoom, tms.minzoom + levels) + 1):
        m = tms.matrix(zoom)
        if (m.matrixWidth, m.matrixHeight) != (first.matrixWidth << zoom, first.matrixHeight << zoom):
            return False
    return True


def mapchete_pyramid(grid: Grid) -> dict[str, Any] | None:
    """The `pyramid` of a mapchete metadata.json for `grid`, or None when mapchete cannot
    describe it (zoom 0 missing, levels that do not double, origin not at the top left)."""
    tms = grid.tms
    size = grid.effective_tile_size
    out: dict[str, Any] = {"metatiling": grid.metatiling, "pixelbuffer": grid.pixelbuffer, "tile_size": size}
    alias = {v: k for k, v in GRID_ALIASES.items()}.get(tms.id or "")
    if grid.name in NAMED or alias is not None:
        named = grid.name if grid.name in NAMED else str(alias)
        bounds = list(Grid.from_name(named).bounds())
        wkt = Grid.from_name(named).crs.to_wkt(version="WKT1_GDAL")
        out["grid"] = {"grid": named, "shape": list(NAMED[named]), "bounds": bounds, "is_global": True,
                       "srs": {"wkt": wkt}}
        return out
    first = tms.matrix(tms.minzoom)
    if tms.minzoom != 0 or not _doubles(tms) or first.cornerOfOrigin != "topLeft":
        return None
    b = grid.bounds()
    out["grid"] = {"shape": [first.matrixHeight, first.matrixWidth], "bounds": [b.left, b.bottom, b.right, b.top],
                   "is_global": False, "srs": {"wkt": grid.crs.to_wkt()}}
    return out


#: tilematrix's bounds of mapchete's named grids: its constants, a few ulps off the exact extents
TILEMATRIX_BOUNDS = {"geodetic": (-180.0, -90.0, 180.0, 90.0),
                     "mercator": (-20037508.3427892, -20037508.3427892, 20037508.3427892, 20037508.3427892)}


@dataclass(frozen=True)
class MapcheteTileGeometry:
    """A process tile in tilematrix's own float arithmetic (mapchete's `BufferedTile`): GDAL's
    warp of a tile depends on the last bits of its bounds, so reads that must equal mapchete's
    use these numbers, not the grid's exact ones."""

    pyramid: tuple[float, float, float, float]
    #: the tile with its buffer, clipped at the top and bottom of a global grid
    buffered: tuple[float, float, float, float]
    xres: float
    yres: float
    is_global: bool


@functools.lru_cache(maxsize=32)
def _described(grid: Grid) -> dict[str, Any] | None:
    """`mapchete_pyramid` once per grid: mapchete-mode reads ask it for every tile."""
    return mapchete_pyramid(grid)


def mapchete_tile_geometry(grid: Grid, zoom: int, row: int, col: int) -> MapcheteTileGeometry | None:
    """tilematrix's numbers for a tile of `grid` (None where mapchete cannot describe the grid)."""
    described = _described(grid)
    if described is None:
        return None
    spec = described["grid"]
    named = spec.get("grid")
    left, bottom, right, top = TILEMATRIX_BOUNDS[named] if named in TILEMATRIX_BOUNDS else spec["bounds"]
    rows0, cols0 = spec["shape"]
    size, m, pb = int(described["tile_size"]), int(described["metatiling"]), int(described["pixelbuffer"])
    xres = round((right - left) / (cols0 * 2 ** zoom * size), 20)
    yres = round((top - bottom) / (rows0 * 2 ** zoom * size), 20)
    t = round(top - row * (yres * size * m), 20)
    b = max(t - yres * size * m, bottom)
    a = round(left + col * (xres * size * m), 20)
    r = min(a + xres * size * m, right)
    offset = xres * float(pb)
    bl, bb, br, bt = a - offset, b - offset, r + offset, t + offset
    is_global = bool(spec.get("is_global", named in TILEMATRIX_BOUNDS))
    if is_global:
        bt, bb = min(bt, top), max(bb, bottom)
    return MapcheteTileGeometry((left, bottom, right, top), (bl, bb, br, bt), xres, yres, is_global)
