"""Where a tile's file lives inside a tile directory: mapchete's `tile_path_schema`.

The default is ``{zoom}/{row}/{col}.{extension}`` (mapchete's default, what GDAL's STACTA
template and ziggurat's indexes describe); ``{zoom}/{col}/{row}.{extension}`` (x before y, as
XYZ web tiles) is the other one mapchete users write. Zoom folders come first in both, so a
directory is still scanned one zoom at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from ziggurat.core.grid import TileIndex

DEFAULT_SCHEMA = "{zoom}/{row}/{col}.{extension}"
COL_FIRST_SCHEMA = "{zoom}/{col}/{row}.{extension}"
SCHEMAS = (DEFAULT_SCHEMA, COL_FIRST_SCHEMA)


@dataclass(frozen=True)
class TileLayout:
    """`col_first`: ``zoom/col/row`` instead of ``zoom/row/col``."""

    col_first: bool = False

    @classmethod
    def parse(cls, schema: str | None) -> "TileLayout":
        """ValueError for a schema other than the two above."""
        if schema is None or schema == DEFAULT_SCHEMA:
            return cls(False)
        if schema == COL_FIRST_SCHEMA:
            return cls(True)
        raise ValueError(f"expected {DEFAULT_SCHEMA!r} or {COL_FIRST_SCHEMA!r}, found {schema!r}")

    @property
    def schema(self) -> str:
        return COL_FIRST_SCHEMA if self.col_first else DEFAULT_SCHEMA

    @property
    def is_default(self) -> bool:
        return not self.col_first

    def folders(self, row: int, col: int) -> tuple[int, int]:
        """(folder below the zoom, file name number) of a tile."""
        return (col, row) if self.col_first else (row, col)

    def rel(self, zoom: int, row: int, col: int, suffix: str) -> str:
        """The tile's path below the directory, POSIX style; `suffix` with its dot."""
        first, second = self.folders(row, col)
        return f"{zoom}/{first}/{second}{suffix}"

    def index(self, zoom: int, first: int, second: int) -> TileIndex:
        """The tile of ``zoom/first/second``."""
        return TileIndex(zoom, second, first) if self.col_first else TileIndex(zoom, first, second)

    def stac_href(self, ext: str) -> str:
        """The tiled-assets template of the files (GDAL's STACTA substitutes the names)."""
        if self.col_first:
            return f"{{TileMatrix}}/{{TileCol}}/{{TileRow}}.{ext}"
        return f"{{TileMatrix}}/{{TileRow}}/{{TileCol}}.{ext}"


__all__ = ["COL_FIRST_SCHEMA", "DEFAULT_SCHEMA", "SCHEMAS", "TileLayout"]
