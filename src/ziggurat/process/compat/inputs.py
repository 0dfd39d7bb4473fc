"""mapchete's views of a tile and of its inputs, over ziggurat's `TileInput`s.

A mapchete process reads ``inp.read(indexes=..., resampling=...)`` and, for tile
directories, matching options ziggurat decides itself (the zoom whose resolution fits);
those are accepted and have no effect. Its tile is a `BufferedTile`: `affine`, `bounds` and
`shape` include the pixel buffer.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np

from ziggurat.core.grid import Tile
from ziggurat.io import TileInput
from ziggurat.io.warp import global_width
from ziggurat.process.compat.types import RasterInput, VectorInput

#: mapchete read() options that choose a tile directory's zoom; ziggurat chooses by resolution
MATCHING_OPTIONS = ("matching_method", "matching_max_zoom", "matching_precision", "fallback_to_higher_zoom")


class MapcheteTile:
    """A process tile as mapchete's `BufferedTile` shows it: buffered geometry, and on a grid
    that goes all the way round, the buffer cut at the poles (not at the antimeridian). `rows`
    are the buffered tile's rows it covers; `unclip` puts a result back onto the whole buffered tile."""

    def __init__(self, tile: Tile) -> None:
        self._tile = tile
        self.zoom, self.row, self.col = tile.zoom, tile.row, tile.col
        self.pixelbuffer = tile.pixelbuffer
        self.crs = tile.crs
        h, _ = tile.buffered_shape
        top = bottom = 0
        if tile.pixelbuffer and global_width(tile.grid) is not None:
            b, gb, yres = tile.buffered_bounds, tile.grid.bounds(tile.zoom), tile.resolution[1]
            top = max(0, round((b.top - gb.top) / yres))
            bottom = max(0, round((gb.bottom - b.bottom) / yres))
        self.rows = slice(top, h - bottom)

    @property
    def id(self) -> tuple[int, int, int]:
        return (self.zoom, self.row, self.col)

    @property
    def affine(self) -> Any:
        a = self._tile.buffered_affine
        return a * a.translation(0, self.rows.start) if self.rows.start else a

    @property
    def bounds(self) -> Any:
        b, yres = self._tile.buffered_bounds, self._tile.resolution[1]
        h = self._tile.buffered_shape[0]
        return type(b)(b.left, b.bottom + (h - self.rows.stop) * yres, b.right, b.top - self.rows.start * yres)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.stop - self.rows.start, self._tile.buffered_shape[1]

    def clip(self, array: Any) -> Any:
        """The rows of a buffered-tile array this view covers."""
        if self.rows == slice(0, self._tile.buffered_shape[0]):
            return array
        return array[..., self.rows, :]

    def unclip(self, array: Any) -> Any:
        """A result of this view's shape on the whole buffered tile (the rows past a pole masked)."""
        arr = np.ma.asarray(array)
        if arr.shape[-2:] != self.shape or self.shape == self._tile.buffered_shape:
            return array
        full = np.ma.masked_all(arr.shape[:-2] + self._tile.buffered_shape, dtype=arr.dtype)
        full[..., self.rows, :] = arr
        return full

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def pixel_x_size(self) -> float:
        return self._tile.resolution[0]

    @property
    def pixel_y_size(self) -> float:
        return self._tile.resolution[1]

    @property
    def tile(self) -> Tile:
        """The ziggurat tile underneath (unbuffered geometry)."""
        return self._tile

    def __repr__(self) -> str:
        return f"MapcheteTile{self.id}"


class _InputTile:
    def __init__(self, inner: TileInput, key: str) -> None:
        self.inner = inner
        self.input_key = key
        self.tile = MapcheteTile(inner.tile)

    def is_empty(self, **_: Any) -> bool:
        return self.inner.is_empty()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to close: the opened input lives as long as the worker."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.input_key!r}, {self.tile.id})"


class RasterInputTile(_InputTile, RasterInput):
    """A raster input of one tile, read with mapchete's arguments."""

    def read(self, indexes: int | Sequence[int] | None = None, resampling: str | None = None,
             **options: Any) -> np.ma.MaskedArray:
        unknown = sorted(set(options) - set(MATCHING_OPTIONS))
        if unknown:
            raise TypeError(f"input {self.input_key!r}: read() got unexpected arguments {', '.join(unknown)} "
                            f"(takes indexes, resampling and mapchete's {', '.join(MATCHING_OPTIONS)})")
        return self.tile.clip(self.inner.read(indexes, resampling))


class VectorInputTile(_InputTile, VectorInput):
    """A vector input of one tile: features as mapchete gives them ({geometry, properties})."""

    def read(self, validity_check: bool = True, clip_to_crs_bounds: bool = False, **_: Any) -> list[dict[str, Any]]:
        return [{"geometry": f["geometry"], "properties": f["properties"]} for f in self.inner.read()]

    def read_generator(self, validity_check: bool = True, clip_to_crs_bounds: bool = False, **_: Any) -> Any:
        yield from self.read()

    def read_union_geometry(self, validity_check: bool = True, clip_to_crs_bounds: bool = False,
                            pixelbuffer: int = 0, **_: Any) -> Any:
        import shapely

        geoms = [f["geometry"] for f in self.inner.read()]
        union = shapely.union_all(geoms) if geoms else shapely.GeometryCollection()
        return union.buffer(pixelbuffer * self.tile.pixel_x_size) if pixelbuffer else union

    def read_as_raster_mask(self, all_touched: bool = False, invert: bool = False, validity_check: bool = True,
                            clip_to_crs_bounds: bool = False, pixelbuffer: int = 0,
                            band_count: int | None = None) -> np.ndarray:
        """True outside the features (inside with `invert`), as mapchete's."""
        from rasterio.features import geometry_mask

        geoms = [f["geometry"] for f in self.inner.read()]
        if pixelbuffer:
            geoms = [g.buffer(pixelbuffer * self.tile.pixel_x_size) for g in geoms]
        shape = self.tile.shape
        if geoms:
            mask = geometry_mask(geoms, out_shape=shape, transform=self.tile.affine, all_touched=all_touched,
                                 invert=invert)
        else:
            mask = np.full(shape, not invert)
        return np.stack([mask] * band_count) if band_count else mask


_WITH_MAPCHETE: dict[int, tuple[type[RasterInputTile], type[VectorInputTile]]] = {}


def _classes() -> tuple[type[RasterInputTile], type[VectorInputTile]]:
    """The input classes, also subclassing an installed mapchete's RasterInput/VectorInput
    (nominal classes there), so `isinstance(inp, mapchete.RasterInput)` in a process holds."""
    module = sys.modules.get("mapchete.formats.protocols")
    if module is None or module.__dict__.get("__ziggurat_shim__"):
        return RasterInputTile, VectorInputTile
    found = _WITH_MAPCHETE.get(id(module))
    if found is None:
        raster = type("RasterInputTile", (RasterInputTile, module.__dict__["RasterInput"]), {})
        vector = type("VectorInputTile", (VectorInputTile, module.__dict__["VectorInput"]), {})
        found = _WITH_MAPCHETE[id(module)] = (raster, vector)
    return found


def adapt(inner: TileInput, key: str) -> RasterInputTile | VectorInputTile:
    raster, vector = _classes()
    return raster(inner, key) if inner.kind == "raster" else vector(inner, key)


def group_of(members: dict[str, Any]) -> list[tuple[str, Any]]:
    """mapchete's input group: a list of (name, input) pairs, nested groups as lists again."""
    return list(members.items())


_PYRAMIDS: dict[tuple[int, Any], Any] = {}


def mapchete_objects(tile: Tile, output_params: dict[str, Any]) -> dict[str, Any]:
    """What parameters annotated with an installed mapchete's own markers receive: its
    `BufferedTile` of this tile and an `MPath` of the output (mapchete's `special_kwargs`)."""
    from mapchete.path import MPath
    from mapchete.tile import BufferedTilePyramid

    from ziggurat.core.errors import ProcessError
    from ziggurat.core.mapchete_grid import mapchete_pyramid

    key = (id(sys.modules["mapchete.tile"]), tile.grid)
    pyramid = _PYRAMIDS.get(key)
    if pyramid is None:
        described = mapchete_pyramid(tile.grid)
        if described is None:
            raise ProcessError(f"the process asks for mapchete's Tile, and mapchete cannot describe this "
                               f"grid ({tile.grid.name}): annotate the parameter with ziggurat's Tile instead")
        pyramid = _PYRAMIDS[key] = BufferedTilePyramid.from_dict(described)
    path = output_params.get("path")
    return {"mapchete.Tile": pyramid.tile(tile.zoom, tile.row, tile.col),
            "mapchete.OutputPath": None if path is None else MPath(str(path))}
