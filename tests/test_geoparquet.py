"""GeoParquet outputs: one GeoParquet 1.1 part per output tile (written by the workers), each zoom
folder one dataset that geopandas and pyarrow read; the same features as a FlatGeobuf tile
directory; ledger, verify and continue mode as for any tile directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import fiona
import pytest
import shapely

from ziggurat import engine
from ziggurat.audit.checks import verify
from ziggurat.core.errors import RecipeError

from conftest import SAMPLE_DEM

gpd = pytest.importorskip("geopandas")
pq = pytest.importorskip("pyarrow.parquet")


def _recipe(tmp: Path, out: str, extra: str = "") -> Path:
    path = tmp / f"{out.replace('.', '_')}.yaml"
    path.write_text(f"""process: contours
zoom_levels: [9, 10]
pyramid: {{grid: geodetic, metatiling: 2, pixelbuffer: 1}}
input: {{dem: {SAMPLE_DEM}}}
process_parameters: {{interval: 20}}
output:
  path: {out}
{extra}  schema:
    geometry: LineString
    properties: {{elevation: float, label: str}}
""")
    return path


def _parts(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in out.glob("*/*/*.parquet")}


def test_parts_are_geoparquet_1_1_with_a_bbox_covering(tmp_path):
    engine.execute(_recipe(tmp_path, "lines.parquet"), executor="sequential")
    parts = sorted((tmp_path / "lines.parquet").glob("*/*/*.parquet"))
    assert parts
    for part in parts:
        meta = json.loads(pq.read_schema(part).metadata[b"geo"])
        assert meta["version"] == "1.1.0" and meta["primary_column"] == "geometry"
        col = meta["columns"]["geometry"]
        assert col["encoding"] == "WKB" and col["geometry_types"] == ["LineString"]
        assert col["crs"]["id"] == {"authority": "OGC", "code": "CRS84"}
        assert col["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
        table = pq.read_table(part)
        geoms = shapely.from_wkb(table.column("geometry").to_pylist())
        boxes = table.column("bbox").to_pylist()
        for geom, box in zip(geoms, boxes):
            assert tuple(box.values()) == pytest.approx(geom.bounds)
        assert col["bbox"] == pytest.approx([min(b["xmin"] for b in boxes), min(b["ymin"] for b in boxes),
                                             max(b["xmax"] for b in boxes), max(b["ymax"] for b in boxes)])


def test_geopandas_reads_a_zoom_as_the_same_features_as_flatgeobuf_tiles(tmp_path):
    engine.execute(_recipe(tmp_path, "lines.parquet"), executor="processes", workers=2)
    engine.execute(_recipe(tmp_path, "fgb", "  format: FlatGeobuf\n"), executor="sequential")
    df = gpd.read_parquet(tmp_path / "lines.parquet" / "10")
    assert df.crs.to_string() == "OGC:CRS84" and list(df.columns) == ["elevation", "label", "geometry"]
    expected = []
    for tile in sorted((tmp_path / "fgb" / "10").glob("*/*.fgb")):
        with fiona.open(tile) as src:
            expected += [(f.properties["elevation"], shapely.geometry.shape(f.geometry).wkb) for f in src]
    got = [(e, g.wkb) for e, g in zip(df["elevation"], df.geometry)]
    assert len(got) > 50 and sorted(got) == sorted(expected)


def test_same_bytes_for_every_executor_and_resume(tmp_path):
    runs = {}
    for name, kw in [("seq", {"executor": "sequential"}), ("threads", {"executor": "threads", "workers": 2}),
                     ("procs", {"executor": "processes", "workers": 2})]:
        engine.execute(_recipe(tmp_path, f"{name}.parquet"), **kw)
        runs[name] = _parts(tmp_path / f"{name}.parquet")
    assert runs["seq"] and runs["seq"] == runs["threads"] == runs["procs"]
    again = engine.execute(_recipe(tmp_path, "seq.parquet"), executor="sequential")
    assert again.written == 0 and again.skipped > 0
    assert verify(tmp_path / "seq.parquet").ok


def test_a_parquet_path_takes_a_vector_schema_and_no_raster_format(tmp_path):
    with pytest.raises(RecipeError, match=r"output\.format: expected GeoParquet for a path ending in \.parquet"):
        engine.load(_recipe(tmp_path, "x.parquet", "  format: GTiff\n"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(_recipe(tmp_path, "y.parquet").read_text().split("  schema:")[0])
    with pytest.raises(RecipeError, match=r"output\.schema"):
        engine.load(bad)
