"""PMTiles v3 archives for the web: a mercator raster pyramid packed into one file.

PNG tile directories are packed as they are (the bytes on disk); other raster tile directories
(GeoTIFF) are rendered to PNG as the preview server draws them (one band through a colormap,
or RGB(A) bytes as they are). The `pmtiles` package (the format's reference Python code) writes
and reads the archive; tiles go in tile-id order (a clustered archive) and the file is renamed
into place whole, so a reader never sees half an archive.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ziggurat.core.errors import OutputError
from ziggurat.core.formats import PNG_MEDIA_TYPE
from ziggurat.io.storage.atomic import staged, tmp_path
from ziggurat.serve.render import OutputView, Style

#: the only tile matrix set PMTiles holds (XYZ, Web Mercator)
PMTILES_TMS = "WebMercatorQuad"


def _pmtiles() -> Any:
    try:
        import pmtiles.tile
        import pmtiles.writer
    except ImportError as exc:   # an optional extra
        raise OutputError("PMTiles archives need the pmtiles package: pip install 'ziggurat[pmtiles]'") from exc
    return pmtiles


@dataclass
class PackResult:
    archive: Path
    tiles: int = 0
    bytes: int = 0
    zooms: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        zooms = f"zooms {min(self.zooms)}..{max(self.zooms)}" if self.zooms else "no zooms"
        return f"{self.tiles} tiles ({zooms}, {self.bytes / 1e6:.1f} MB) -> {self.archive}"


def _lonlat(x: float, y: float) -> tuple[float, float]:
    r = 6378137.0
    return math.degrees(x / r), math.degrees(2 * math.atan(math.exp(y / r)) - math.pi / 2)


def default_target(output: Path) -> Path:
    return output.with_name(f"{output.name}.pmtiles")


def pack_pmtiles(output: str | os.PathLike[str], target: str | os.PathLike[str] | None = None, *,
                 zooms: Iterable[int] | None = None, style: Style | None = None, name: str | None = None,
                 attribution: str | None = None) -> PackResult:
    """`ziggurat pmtiles OUTPUT`: every stored tile of a mercator raster tile directory, as PNG."""
    lib = _pmtiles()
    view = OutputView(Path(output))
    tiles = view.tiles
    if not tiles.is_raster:
        raise OutputError(f"{view.path}: PMTiles packs raster tiles; this output holds {tiles.format} features")
    if view.grid.tms.id != PMTILES_TMS or view.grid.metatiling != 1 or view.grid.effective_tile_size not in (256, 512):
        raise OutputError(f"{view.path}: PMTiles holds {PMTILES_TMS} tiles of 256 or 512 px; this output's tiles are "
                          f"{view.grid.tms.id} with metatiling {view.grid.metatiling} (write the output with "
                          "grid: mercator and output metatiling 1)")
    archive = Path(target) if target is not None else default_target(view.path)
    wanted = sorted(set(zooms)) if zooms is not None else None
    limits = tiles.limits(wanted)
    if not limits:
        raise OutputError(f"{view.path}: no tiles to pack")
    png_as_is = tiles.info.media_type == PNG_MEDIA_TYPE
    style = style or Style()
    ids = sorted((lib.tile.zxy_to_tileid(z, c, r), (z, r, c)) for z, r, c in tiles.scan(limits.zooms))
    result = PackResult(archive, zooms=limits.zooms)
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
        with staged(archive, tmp_path(archive, ".pmtiles")) as tmp, open(tmp, "wb") as f:
            writer = lib.writer.Writer(f)
            for tile_id, (z, r, c) in ids:
                index = view.grid.tile(z, r, c).index
                data = tiles.tile_path(index).read_bytes() if png_as_is else view.render(index, style)
                if data is None:
                    continue
                writer.write_tile(tile_id, data)
                result.tiles += 1
                result.bytes += len(data)
            left = min(limits.bounds(view.grid, z).left for z in limits.zooms)
            bottom = min(limits.bounds(view.grid, z).bottom for z in limits.zooms)
            right = max(limits.bounds(view.grid, z).right for z in limits.zooms)
            top = max(limits.bounds(view.grid, z).top for z in limits.zooms)
            (w, s), (e, n) = _lonlat(left, bottom), _lonlat(right, top)
            header = {"tile_type": lib.tile.TileType.PNG, "tile_compression": lib.tile.Compression.NONE,
                      "min_zoom": min(limits.zooms), "max_zoom": max(limits.zooms),
                      "min_lon_e7": int(w * 1e7), "min_lat_e7": int(s * 1e7),
                      "max_lon_e7": int(e * 1e7), "max_lat_e7": int(n * 1e7),
                      "center_zoom": min(limits.zooms), "center_lon_e7": int((w + e) / 2 * 1e7),
                      "center_lat_e7": int((s + n) / 2 * 1e7)}
            from ziggurat.core.version import __version__

            metadata: dict[str, Any] = {"name": name or view.path.name, "format": "png", "type": "overlay",
                                        "bounds": [w, s, e, n], "ziggurat": {"version": __version__,
                                                                             "source": str(view.path),
                                                                             "tile_format": tiles.format}}
            if attribution:
                metadata["attribution"] = attribution
            if not png_as_is:
                metadata["description"] = f"band {style.band} drawn with colormap {style.colormap}"
            writer.finalize(header, metadata)
    except OSError as exc:
        raise OutputError(f"cannot write {archive}: {exc}") from exc
    return result


class PMTilesArchive:
    """A PMTiles file opened for serving tiles (`ziggurat serve out.pmtiles`)."""

    def __init__(self, path: Path) -> None:
        lib = _pmtiles()
        import pmtiles.reader

        self.path = path
        self._file = open(path, "rb")
        try:
            self.reader = pmtiles.reader.Reader(pmtiles.reader.MmapSource(self._file))
            self.header = self.reader.header()
            self.metadata = self.reader.metadata()
        except Exception as exc:
            self._file.close()
            raise OutputError(f"{path} is not a PMTiles v3 archive: {exc}") from exc
        self.png = self.header["tile_type"] == lib.tile.TileType.PNG

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        if not (0 <= z <= 31 and 0 <= x < 2 ** z and 0 <= y < 2 ** z):
            return None
        data: bytes | None = self.reader.get(z, x, y)
        return data

    def close(self) -> None:
        self._file.close()


__all__ = ["PMTILES_TMS", "PMTilesArchive", "PackResult", "default_target", "pack_pmtiles"]
