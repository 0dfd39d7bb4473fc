"""A quicklook: one small PNG of an output, so a run can be looked at without GDAL commands.

Read through GDAL at the quicklook's size, so it takes the zoom (tile directory, via its STAC
item) or the overview (COG) closest to that size: the cost is that of the pixels shown. One
band is stretched (2nd-98th percentile of the valid pixels) and colour-mapped (rio-tiler's
colormaps, matplotlib's names: viridis by default); three or four uint8 bands are shown as RGB(A).
Nodata is transparent.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
from rasterio.enums import Resampling

from ziggurat.core.errors import OutputError
from ziggurat.core.formats import PNG_DRIVER, Storage, records_beside
from ziggurat.io.common import local_env
from ziggurat.io.outputs.preview import PREVIEW_SIZE
from ziggurat.io.outputs.stored import is_stored, open_stored, provenance_dir, stored_or_none
from ziggurat.io.storage.atomic import staged

log = logging.getLogger(__name__)

QUICKLOOK_FILE = "quicklook.png"
DEFAULT_SIZE = 1024
#: the quicklook every run writes: small, so it costs a run a fraction of a second (a single
#: file's is gathered while it is written: `io.outputs.preview`) ...
RUN_SIZE = PREVIEW_SIZE
#: ... and read from at most this many tiles (a run of one fine zoom and no overviews has no
#: small level to read: `ziggurat quicklook` makes one on demand)
RUN_MAX_TILES = 256
DEFAULT_COLORMAP = "viridis"


def quicklook_path(output: str | os.PathLike[str]) -> Path:
    return provenance_dir(output) / QUICKLOOK_FILE


def _source(output: Path) -> tuple[str, dict[str, str], Any]:
    """What GDAL opens for the output (the file itself, or a tile directory's STAC item) and the
    data extent to show (the item's `proj:bbox`: tiles reach past the data)."""
    if records_beside(output):
        return str(output), {}, None
    from ziggurat.records.catalog.parts import item_path, read_item

    item = item_path(output)
    data = read_item(item)
    if data is None:
        raise OutputError(f"{output}: no STAC item to read a quicklook through (run `ziggurat stac {output}`)")
    return str(item), {"SKIP_MISSING_METATILE": "YES"}, (data.get("properties") or {}).get("proj:bbox")


def stretch(data: np.ma.MaskedArray, low: float = 2.0, high: float = 98.0) -> tuple[float, float]:
    """The percentile range of the valid pixels ((0, 1) when none is valid)."""
    valid = data.compressed()
    if valid.dtype.kind == "f":
        valid = valid[np.isfinite(valid)]
    if valid.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(valid, [low, high])
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


@functools.lru_cache(maxsize=32)
def colormap_table(name: str) -> np.ndarray:
    """rio-tiler's named colormap as a (256, 4) lookup table.

    Read straight from rio-tiler's `cmap_data` files: importing `rio_tiler.colormap` imports
    the rio_tiler package, which pulls in xarray and pandas (0.7 s of every run's end, for the
    quicklook); the package is only imported for names that are not one of those files.
    """
    spec = importlib.util.find_spec("rio_tiler")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "cmap_data" / f"{name}.npy"
        if path.is_file():
            table = np.load(path)
            if table.shape == (256, 4) and table.dtype == np.uint8:
                table.setflags(write=False)   # cached: shared by every caller
                return table
    from rio_tiler.colormap import cmap
    from rio_tiler.errors import InvalidColorMapName

    try:
        entries: Any = cmap.get(name)   # a 256-entry {value: rgba} for the named colormaps
    except InvalidColorMapName as exc:
        raise OutputError(f"unknown colormap {name!r} (known: {', '.join(sorted(cmap.list()))})") from exc
    lut = np.zeros((256, 4), np.uint8)
    for value, rgba in entries.items():
        lut[int(value)] = rgba
    lut.setflags(write=False)
    return lut


def to_rgba(data: np.ma.MaskedArray, colormap: str = DEFAULT_COLORMAP,
            limits: tuple[float, float] | None = None) -> np.ndarray:
    """(4, h, w) uint8: RGB(A) bands as they are, else band 1 stretched and colour-mapped."""
    mask = np.ma.getmaskarray(data)
    if data.shape[0] in (3, 4) and data.dtype == np.uint8:
        rgb = np.ma.getdata(data[:3])
        alpha = np.ma.getdata(data[3]) if data.shape[0] == 4 else np.where(mask.all(axis=0), 0, 255)
        return np.concatenate([rgb, np.asarray(alpha, np.uint8)[None]]).astype(np.uint8)
    band = data[0].astype("float64")
    lo, hi = limits if limits is not None else stretch(band)
    scaled = np.clip((np.ma.getdata(band) - lo) / (hi - lo) * 255.0, 0, 255)
    index = np.nan_to_num(scaled, nan=0.0).astype(np.uint8)
    lut = colormap_table(colormap)
    out = lut[index].transpose(2, 0, 1).copy()
    invalid = mask[0] | ~np.isfinite(np.ma.getdata(band))
    out[3] = np.where(invalid, 0, 255)
    return out


def write_png(rgba: np.ndarray, path: Path) -> None:
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with staged(path) as tmp, local_env(GDAL_PAM_ENABLED="NO"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)   # a picture: no georeferencing
        with rasterio.open(tmp, "w", driver=PNG_DRIVER, width=rgba.shape[2], height=rgba.shape[1], count=4,
                           dtype="uint8", ZLEVEL=3) as dst:   # a third of level 6's time, ~5 % larger
            dst.write(rgba)


def tiles_to_read(output: Path, size: int) -> int:
    """How many tiles GDAL reads for a quicklook of `size` px: those of the coarsest zoom still at
    least `size` px across the data (the level it picks), or of the finest zoom there is."""
    if records_beside(output):
        return 0
    from ziggurat.records.catalog.parts import item_path, limits_from_item, read_item, tms_key
    tiles = open_stored(output)   # metadata.json only: the item lists the tiles (no scan of the disk)
    limits = limits_from_item(read_item(item_path(output)) or {}, tms_key(tiles.grid))
    if not limits:
        return 0
    for zoom in sorted(limits.zooms):
        b = limits.bounds(tiles.grid, zoom)
        xres, yres = tiles.grid.resolution(zoom)
        if max((b.right - b.left) / xres, (b.top - b.bottom) / yres) >= size or zoom == max(limits.zooms):
            r0, r1, c0, c1 = limits.get(zoom)  # type: ignore[misc]
            return (r1 - r0 + 1) * (c1 - c0 + 1)
    return 0


def _shown_band(output: Path) -> int:
    """The one band a quicklook shows (and reads): a time series' latest step's first band (its
    tiles hold every step's bands), else band 1."""
    stored = None if records_beside(output) else stored_or_none(output)
    if stored is None or stored.time is None:
        return 1
    return (len(stored.time) - 1) * (stored.bands // len(stored.time)) + 1


def make_quicklook(output: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None,
                   size: int = DEFAULT_SIZE, colormap: str = DEFAULT_COLORMAP, max_tiles: int | None = None,
                   data: np.ma.MaskedArray | None = None) -> Path:
    """Write the quicklook (default `.ziggurat/quicklook.png`); returns its path. With `max_tiles`,
    an output that would need more tile reads is refused (OutputError). `data`: the pixels
    already at hand (the run's single-file `Preview`): nothing is read."""
    if size < 16:
        raise OutputError(f"quicklook size must be at least 16 px, got {size}")
    out = Path(output)
    if data is None:
        data = _read(out, size, max_tiles)
    path = Path(dest) if dest is not None else quicklook_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_png(to_rgba(data, colormap), path)
    except OSError as exc:
        raise OutputError(f"cannot write the quicklook {path}: {exc}") from exc
    return path


def _read(out: Path, size: int, max_tiles: int | None) -> np.ma.MaskedArray:
    """The shown bands at about `size` px, read through GDAL (the closest zoom or overview)."""
    if is_stored(out, Storage.STORE):
        raise OutputError(f"{out} is a Zarr store: quicklooks are made from tile directories and GeoTIFFs "
                          "(open the store with xarray.open_zarr)")
    if max_tiles is not None:
        needed = tiles_to_read(out, size)
        if needed > max_tiles:
            raise OutputError(f"a quicklook would read {needed} tiles (no coarser zoom); make one with "
                              f"`ziggurat quicklook {out}`")
    source, options, extent = _source(out)
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings(), rasterio.open(source, **options) as src:
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            window = rasterio.windows.Window(0, 0, src.width, src.height)
            if isinstance(extent, list) and len(extent) == 4:
                window = rasterio.windows.from_bounds(*extent, transform=src.transform).round_offsets() \
                    .round_lengths().intersection(window)
            scale = max(window.width, window.height) / size
            shape = (max(1, round(window.height / max(scale, 1.0))), max(1, round(window.width / max(scale, 1.0))))
            rgb = src.dtypes[0] == "uint8" and src.count in (3, 4)
            bands = list(range(1, src.count + 1)) if rgb else [_shown_band(out)]
            data: np.ma.MaskedArray = src.read(bands, out_shape=(len(bands), *shape), window=window, masked=True,
                                               resampling=Resampling.bilinear if rgb else Resampling.average)
    except rasterio.errors.RasterioIOError as exc:
        raise OutputError(f"cannot read {source} for a quicklook: {exc}") from exc
    return data


__all__ = ["DEFAULT_COLORMAP", "QUICKLOOK_FILE", "make_quicklook", "quicklook_path", "stretch", "to_rgba"]
