"""The `mp` object of mapchete processes (`def execute(mp): ...`).

mapchete 2026.7 deprecated `mp` but keeps passing it, and years of process files use it:
`mp.open(name)`, `mp.tile`, `mp.params`, `mp.output_params`. Its helpers `hillshade`,
`contours` and `clip` now raise in mapchete; here they work, on ziggurat's implementations
(gdaldem-equal hillshade, contourpy contours, rasterio masks).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from ziggurat.process.compat.inputs import MapcheteTile


class MapcheteProcess:
    """What a process asking for `mp` receives: one tile's inputs, parameters and output settings."""

    def __init__(self, tile: MapcheteTile, params: Mapping[str, Any], inputs: Mapping[str, Any],
                 output_params: Mapping[str, Any]) -> None:
        self.tile = tile
        self.input = dict(inputs)
        self.params = dict(params, input=self.input)
        self.output_params = dict(output_params)
        self.identifier = self.title = self.version = self.abstract = ""

    def open(self, input_id: str, **_: Any) -> Any:
        """The input `input_id` bound to this tile (mapchete: a ValueError when not given at this zoom)."""
        if input_id not in self.input:
            raise ValueError(f"{input_id} not found in config as input")
        return self.input[input_id]

    def write(self, *_: Any, **__: Any) -> None:
        """Gone in mapchete too: a process returns its result."""
        raise NotImplementedError("mp.write() was removed from mapchete: return the array (or features) "
                                  "from execute() instead")

    def read(self, *_: Any, **__: Any) -> None:
        """Gone in mapchete too: reading the output being written."""
        raise NotImplementedError("mp.read() (reading this process's own output) was removed from mapchete and "
                                  "is not supported: give the output folder as an input of a second recipe")

    def hillshade(self, elevation: Any, azimuth: float = 315.0, altitude: float = 45.0, z: float = 1.0,
                  scale: float = 1.0) -> np.ma.MaskedArray:
        """Shaded relief of the tile (gdaldem's numbers; geographic grids in metres per row)."""
        from ziggurat_processes.hillshade import hillshade

        arr = np.ma.asarray(elevation)
        arr = arr[0] if arr.ndim == 3 else arr
        aff = self.tile.affine
        latitudes = None
        if scale == 1.0 and self.tile.crs.is_geographic:
            latitudes = aff.f + aff.e * (np.arange(arr.shape[0]) + 0.5)
        return hillshade(arr, aff.a, aff.e, azimuth=azimuth, altitude=altitude, z=z,
                         scale=None if latitudes is not None else scale, latitudes=latitudes)

    def contours(self, elevation: Any, interval: float = 100, field: str = "elev", base: float = 0
                 ) -> list[dict[str, Any]]:
        """Contour lines of the tile as features {geometry, properties: {field: level}}."""
        from ziggurat_processes.contours import contour_features

        return contour_features(elevation, self.tile.affine, interval, base, field)

    def clip(self, array: Any, geometries: Iterable[Any], inverted: bool = False, clip_buffer: int = 0
             ) -> np.ma.MaskedArray:
        """`array` masked outside the geometries (inside with `inverted`); features or geometries."""
        from rasterio.features import geometry_mask

        arr = np.ma.asarray(array)
        geoms = [g["geometry"] if isinstance(g, Mapping) else g for g in geometries]
        if clip_buffer:
            geoms = [g.buffer(clip_buffer * self.tile.pixel_x_size) for g in geoms]
        shape = arr.shape[-2:]
        if geoms:
            outside = geometry_mask(geoms, out_shape=shape, transform=self.tile.affine, invert=inverted)
        else:
            outside = np.full(shape, not inverted)
        mask = np.ma.getmaskarray(arr) | np.broadcast_to(outside, arr.shape)
        return np.ma.masked_array(np.ma.getdata(arr), mask=mask)
