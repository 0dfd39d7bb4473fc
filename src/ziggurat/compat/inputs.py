"""mapchete's views of a tile and of its inputs, over ziggurat's `TileInput`s.

A mapchete process reads ``inp.read(indexes=..., resampling=...)`` and, for tile
directories, matching options ziggurat decides itself (the zoom whose resolution fits);
those are accepted and have no effect. Its tile is a `BufferedTile`: `affine`, `bounds` and
`shape` include the pixel buffer.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ziggurat.compat.types import RasterInput, VectorInput
from ziggurat.grid import Tile
from ziggurat.io import TileInput

#: mapchete read() options that choose a tile directory's zoom; ziggurat chooses by resolution
MATCHING_OPTIONS = ("matching_method", "matching_max_zoom", "matching_precision", "fallback_to_higher_zoom")


class MapcheteTile:
    """A process tile as mapchete's `BufferedTile` shows it (buffered geometry)."""

    def __init__(self, tile: Tile) -> None:
        self._tile = tile
        self.zoom, self.row, self.col = tile.zoom, tile.row, tile.col
        self.pixelbuffer = tile.pixelbuffer
        self.crs = tile.crs

    @property
    def id(self) -> tuple[int, int, int]:
        return (self.zoom, self.row, self.col)

    @property
    def affine(self) -> Any:
        return self._tile.buffered_affine

    @property
    def bounds(self) -> Any:
        return self._tile.buffered_bounds

    @property
    def shape(self) -> tuple[int, int]:
        return self._tile.buffered_shape

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
        return self.inner.read(indexes, resampling)


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


def adapt(inner: TileInput, key: str) -> RasterInputTile | VectorInputTile:
    return RasterInputTile(inner, key) if inner.kind == "raster" else VectorInputTile(inner, key)


def group_of(members: dict[str, Any]) -> list[tuple[str, Any]]:
    """mapchete's input group: a list of (name, input) pairs, nested groups as lists again."""
    return list(members.items())
