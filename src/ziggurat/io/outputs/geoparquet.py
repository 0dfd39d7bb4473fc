"""GeoParquet 1.1 output for vector results: a partitioned dataset, one part per output tile.

`out.parquet/{zoom}/{row}/{col}.parquet` plus metadata.json: each part is a GeoParquet 1.1 file
(WKB `geometry`, a `bbox` covering column, `geo` metadata with the CRS as PROJJSON), written by
the worker that made the tile, so a run never funnels features through one writer, and the
ledger, checksums, continue mode and `verify` work per part as for any tile directory. Readers
take the folder as one dataset (`geopandas.read_parquet`, `pyarrow.dataset`, DuckDB, GDAL's
Parquet driver where it is built). Features are clipped to their tile exactly as for
GeoJSON/FlatGeobuf tile directories (`VectorTileDirectoryOutput`); pyarrow writes the files.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from ziggurat.core.errors import OutputError
from ziggurat.core.grid import Grid, Tile, TileIndex
from ziggurat.io.inputs.vector import Feature
from ziggurat.io.outputs.vectordir import VectorTileDirectoryOutput
from ziggurat.recipe import OutputConfig

GEOPARQUET_VERSION = "1.1.0"


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:   # an optional extra
        raise OutputError("GeoParquet outputs need pyarrow: pip install 'ziggurat[parquet]'") from exc
    return pyarrow


def _arrow_type(pa: Any, kind: str) -> Any:
    base = kind.split(":", 1)[0]
    return {"str": pa.string(), "int": pa.int64(), "int32": pa.int32(), "int64": pa.int64(), "float": pa.float64(),
            "bool": pa.bool_(), "date": pa.date32(), "time": pa.time64("us"),
            "datetime": pa.timestamp("us")}.get(base, pa.string())


def _value(value: Any, kind: str) -> Any:
    """fiona takes dates as strings; Arrow wants date/time objects."""
    base = kind.split(":", 1)[0]
    if isinstance(value, str) and base in ("date", "time", "datetime"):
        parse = {"date": dt.date.fromisoformat, "time": dt.time.fromisoformat, "datetime": dt.datetime.fromisoformat}
        try:
            return parse[base](value)
        except ValueError as exc:
            raise OutputError(f"cannot write {value!r} as {kind}: {exc}") from exc
    return value


class GeoParquetOutput(VectorTileDirectoryOutput):
    """`output.path` ending in .parquet (or `format: GeoParquet`): one GeoParquet part per tile."""

    formats = {"GeoParquet": None}
    writes = ("GeoParquet",)

    def __init__(self, config: OutputConfig, grid: Grid) -> None:
        super().__init__(config, grid)
        pa = _pyarrow()
        props = self.schema["properties"]
        self._arrow_schema = pa.schema(
            [pa.field(name, _arrow_type(pa, kind)) for name, kind in props.items()]
            + [pa.field("geometry", pa.binary()),
               pa.field("bbox", pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")]))])
        self._projjson = pyproj.CRS.from_user_input(grid.crs.to_wkt()).to_json_dict()

    def geo_metadata(self, bbox: list[float]) -> dict[str, Any]:
        kind = self.schema["geometry"]
        column: dict[str, Any] = {
            "encoding": "WKB", "geometry_types": [] if kind == "Unknown" else [kind], "crs": self._projjson,
            "bbox": bbox, "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}}
        return {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column}}

    def _write_tile(self, tile: Tile, feats: list[tuple[BaseGeometry, dict]]) -> None:
        pa = _pyarrow()
        props = self.schema["properties"]
        geoms = [g for g, _ in feats]
        bounds = shapely.bounds(geoms)
        columns = {name: [_value(p.get(name), kind) for _, p in feats] for name, kind in props.items()}
        columns["geometry"] = list(shapely.to_wkb(geoms, output_dimension=2))
        columns["bbox"] = [dict(zip(("xmin", "ymin", "xmax", "ymax"), map(float, b))) for b in bounds]
        total = [float(bounds[:, 0].min()), float(bounds[:, 1].min()), float(bounds[:, 2].max()),
                 float(bounds[:, 3].max())]
        schema = self._arrow_schema.with_metadata({b"geo": json.dumps(self.geo_metadata(total)).encode()})
        try:
            table = pa.table(columns, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise OutputError(f"tile {tile}: features do not fit output.schema: {exc}") from exc
        with self.staged(tile) as tmp:
            # one row group, no statistics that depend on the writer's clock: the same features
            # give the same bytes on any worker
            pa.parquet.write_table(table, tmp, compression="zstd", write_statistics=True)

    def read(self, tile: Tile | TileIndex) -> list[Feature] | None:
        pa = _pyarrow()
        path = self.tile_path(tile)
        if self.store is not None:
            data = self.tile_bytes_of(tile)
            if data is None:
                return None
            source: Any = pa.BufferReader(data)
        elif not path.exists():
            return None
        else:
            source = path
        try:
            table = pa.parquet.read_table(source)
        except Exception as exc:
            raise OutputError(f"tile {tile}: cannot read {path}: {exc}") from exc
        names = list(self.schema["properties"])
        rows = table.to_pylist()
        return [{"id": str(n), "geometry": shapely.from_wkb(r["geometry"]),
                 "properties": {k: r[k] for k in names}} for n, r in enumerate(rows)]

    def __repr__(self) -> str:
        return f"GeoParquetOutput(path={str(self.path)!r})"


__all__ = ["GEOPARQUET_VERSION", "GeoParquetOutput"]
