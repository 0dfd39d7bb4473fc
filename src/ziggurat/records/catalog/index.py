"""Indexes of a tile directory: tile footprints as a vector layer, one GDAL VRT per zoom, a path list.

Everything is derived from the tiles on disk (`{zoom}/{row}/{col}.tif`) plus `metadata.json`,
so an index can be rebuilt at any time. Paths are stored relative to the output folder unless
asked otherwise, so the folder can be moved or served as a whole.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from xml.sax.saxutils import escape

import rasterio
from rasterio.errors import RasterioError

from ziggurat.core.errors import OutputError
from ziggurat.core.formats import INDEX_VECTOR_FORMATS, Storage
from ziggurat.core.grid import TileIndex
from ziggurat.io.outputs.stored import StoredOutput, open_stored
from ziggurat.io.storage.atomic import staged

log = logging.getLogger(__name__)

#: CLI flag / `formats` name -> (fiona driver, file extension)
VECTOR_FORMATS = INDEX_VECTOR_FORMATS
INDEX_FORMATS = (*VECTOR_FORMATS, "vrt", "txt")
INDEX_NAME = "index"
LAYER = "tiles"
_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32",
               "float64": "Float64"}
_BATCH = 4096


def write_index(output_dir: str | os.PathLike[str], zooms: Iterable[int] | None = None,
                formats: Sequence[str] = ("gpkg",), absolute: bool = False) -> list[Path]:
    """Write the asked-for indexes of a tile directory; returns the files written.

    `formats`: any of gpkg, fgb, geojson (footprint layer `index.<ext>`), vrt (`<zoom>.vrt` per
    zoom) and txt (`index.txt`, one path per line). `zooms` limits what is indexed (default: all).
    """
    unknown = [f for f in formats if f not in INDEX_FORMATS]
    if unknown:
        raise OutputError(f"unknown index format(s) {', '.join(unknown)}; known: {', '.join(INDEX_FORMATS)}")
    tiles = open_stored(output_dir)
    if tiles.storage is Storage.FILE:
        return write_file_index(Path(output_dir), formats, absolute)
    if not tiles.is_raster:
        raise OutputError(f"{tiles.path} holds {tiles.format} tiles; indexes are for raster tiles")
    wanted = None if zooms is None else sorted(set(zooms))
    if not next(iter(tiles.scan(wanted)), None):
        where = "" if wanted is None else f" at zoom(s) {', '.join(map(str, wanted))}"
        raise OutputError(f"{tiles.path} holds no {tiles.ext} tiles{where}")
    written: list[Path] = []
    for fmt in dict.fromkeys(formats):  # keep order, drop repeats
        if fmt in VECTOR_FORMATS:
            written.append(write_vector_index(tiles, fmt, wanted, absolute))
        elif fmt == "txt":
            written.append(write_path_list(tiles, wanted, absolute))
        else:
            written += write_vrts(tiles, wanted)
    return written


def write_file_index(path: Path, formats: Sequence[str], absolute: bool = False) -> list[Path]:
    """A single-file output's index: its footprint as a one-feature tile index (gdaltindex's
    `location` field, so GDAL's GTI driver opens it) and/or its path; a VRT would add nothing."""
    import fiona
    import shapely

    if not path.is_file():
        raise OutputError(f"{path} is not a file")
    if "vrt" in formats:
        raise OutputError(f"{path} is one GeoTIFF already: a VRT of it would add nothing (--gpkg, --fgb, "
                          "--geojson or --txt)")
    with rasterio.open(path) as src:
        crs, box = src.crs, shapely.box(*src.bounds)
    location = str(path.resolve()) if absolute else path.name
    written = []
    for fmt in dict.fromkeys(formats):
        if fmt == "txt":
            final = path.with_name(f"{path.stem}.index.txt")
            with staged(final) as tmp:
                tmp.write_text(location + "\n")
        else:
            driver, ext = VECTOR_FORMATS[fmt]
            final = path.with_name(f"{path.stem}.index.{ext}")
            schema = {"geometry": "Polygon", "properties": {"location": "str"}}
            with staged(final) as tmp, fiona.open(tmp, "w", driver=driver, crs_wkt=crs.to_wkt(), schema=schema,
                                                  layer=LAYER if driver == "GPKG" else None) as dst:
                dst.write({"geometry": shapely.geometry.mapping(box), "properties": {"location": location}})
        written.append(final)
    return written


def _path(tiles: StoredOutput, index: TileIndex, absolute: bool) -> str:
    return str(tiles.tile_path(index)) if absolute else tiles.relative_path(index)


def write_vector_index(tiles: StoredOutput, fmt: str = "gpkg", zooms: Iterable[int] | None = None,
                       absolute: bool = False) -> Path:
    """Tile footprints (grid CRS) with zoom, row, col and path: one feature per tile."""
    import fiona

    driver, ext = VECTOR_FORMATS[fmt]
    final = tiles.path / f"{INDEX_NAME}.{ext}"
    schema = {"geometry": "Polygon",
              "properties": {"zoom": "int", "row": "int", "col": "int", "path": "str"}}
    options: dict[str, Any] = {"layer": LAYER} if driver == "GPKG" else {}
    grid = tiles.grid
    count = 0
    try:
        with staged(final) as tmp, fiona.open(tmp, "w", driver=driver, schema=schema, crs_wkt=grid.crs.to_wkt(),
                                              **options) as dst:
            scan = tiles.scan(zooms)
            while batch := list(itertools.islice(scan, _BATCH)):
                records = []
                for index in batch:
                    b = grid.tile_bounds(*index)
                    ring = [(b.left, b.bottom), (b.right, b.bottom), (b.right, b.top), (b.left, b.top),
                            (b.left, b.bottom)]
                    records.append(fiona.Feature(
                        geometry=fiona.Geometry(type="Polygon", coordinates=[ring]),
                        properties=fiona.Properties(zoom=index.zoom, row=index.row, col=index.col,
                                                    path=_path(tiles, index, absolute))))
                dst.writerecords(records)
                count += len(records)
    except Exception as exc:
        raise OutputError(f"cannot write tile index {final}: {exc}") from exc
    log.info("tile index %s: %d tiles", final, count)
    return final


def write_path_list(tiles: StoredOutput, zooms: Iterable[int] | None = None, absolute: bool = False) -> Path:
    """`index.txt`: one tile path per line, zoom by zoom, row by row."""
    final = tiles.path / f"{INDEX_NAME}.txt"
    try:
        with staged(final) as tmp, open(tmp, "w") as fh:
            for index in tiles.scan(zooms):
                fh.write(_path(tiles, index, absolute) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {exc}") from exc
    return final


# -- VRTs -------------------------------------------------------------------------------------
def remove_indexes(folder: Path) -> list[Path]:
    """Indexes and VRTs describing tiles that were removed (an output's earlier pyramid)."""
    gone = []
    for path in sorted(folder.glob(f"{INDEX_NAME}.*")) + sorted(folder.glob("[0-9]*.vrt")):
        if path.is_file() and (path.name.startswith(f"{INDEX_NAME}.") or path.stem.isdigit()):
            path.unlink()
            gone.append(path)
    return gone


def vrt_path(tiles: StoredOutput, zoom: int) -> Path:
    return tiles.path / f"{zoom}.vrt"


def write_vrts(output: StoredOutput | str | os.PathLike[str], zooms: Iterable[int] | None = None) -> list[Path]:
    """`<zoom>.vrt` in the output folder for every zoom that holds tiles (of `zooms`)."""
    tiles = output if isinstance(output, StoredOutput) else open_stored(output)
    wanted = tiles.zooms_on_disk() if zooms is None else sorted(set(zooms))
    out = []
    for zoom, _ in tiles.limits(wanted).items():
        out.append(write_vrt(tiles, zoom))
    return out


def _nodata_text(nodata: float | int) -> str:
    if isinstance(nodata, float) and math.isnan(nodata):
        return "nan"
    return repr(nodata)


def _band_styles(tiles: StoredOutput, first: TileIndex) -> list[str]:
    """Colour interpretation per band, as the tiles carry it."""
    try:
        with rasterio.open(tiles.tile_path(first)) as src:
            return [ci.name.capitalize() for ci in src.colorinterp]
    except (RasterioError, OSError) as exc:  # a broken tile should not stop the index
        log.warning("cannot read %s for its colour interpretation: %s", tiles.tile_path(first), exc)
        return ["Gray"] + ["Undefined"] * (tiles.bands - 1)


def vrt_lines(tiles: StoredOutput, zoom: int) -> Iterator[str]:
    """The VRT XML: a mosaic of the tiles on disk, relative paths, nodata where no tile exists.

    Two passes over the folder listing (extent, then sources) instead of holding every tile.
    """
    grid = tiles.grid
    limits = tiles.limits([zoom])
    lim = limits.get(zoom)
    if lim is None:
        raise OutputError(f"{tiles.path} holds no tiles at zoom {zoom}")
    box = limits.bounds(grid, zoom)
    xres, yres = grid.resolution(zoom)
    width, height = round((box.right - box.left) / xres), round((box.top - box.bottom) / yres)
    dtype = _GDAL_TYPES[tiles.dtype]
    yield f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
    yield f"  <SRS>{escape(grid.crs.to_wkt())}</SRS>"
    yield f"  <GeoTransform>{box.left!r}, {xres!r}, 0.0, {box.top!r}, 0.0, {-yres!r}</GeoTransform>"
    first = next(iter(tiles.scan([zoom])))
    for band, interp in enumerate(_band_styles(tiles, first), start=1):
        yield f'  <VRTRasterBand dataType="{dtype}" band="{band}">'
        if tiles.nodata is not None:
            yield f"    <NoDataValue>{_nodata_text(tiles.nodata)}</NoDataValue>"
        yield f"    <ColorInterp>{interp}</ColorInterp>"
        for index in tiles.scan([zoom]):
            b = grid.tile_bounds(*index)
            h, w = grid.tile_shape(*index)
            x0, y0 = round((b.left - box.left) / xres), round((box.top - b.top) / yres)
            rel = tiles.relative_path(index)
            yield (f'    <SimpleSource><SourceFilename relativeToVRT="1">{escape(rel)}</SourceFilename>'
                   f"<SourceBand>{band}</SourceBand>"
                   f'<SourceProperties RasterXSize="{w}" RasterYSize="{h}" DataType="{dtype}"/>'
                   f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                   f'<DstRect xOff="{x0}" yOff="{y0}" xSize="{w}" ySize="{h}"/></SimpleSource>')
        yield "  </VRTRasterBand>"
    yield "</VRTDataset>"


def write_vrt(tiles: StoredOutput, zoom: int) -> Path:
    final = vrt_path(tiles, zoom)
    try:
        with staged(final) as tmp, open(tmp, "w") as fh:
            for line in vrt_lines(tiles, zoom):
                fh.write(line + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    log.info("VRT %s written", final)
    return final


__all__ = ["INDEX_FORMATS", "VECTOR_FORMATS", "vrt_lines", "vrt_path", "write_index", "write_path_list",
           "write_vector_index", "write_vrt", "write_vrts"]
