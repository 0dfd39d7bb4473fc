"""GeoJSON/FlatGeobuf tile directories: schema, clipping, type conforming, read-back, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fiona
import numpy as np
import pytest
import shapely

from ziggurat.core.errors import OutputError, ProcessError, RecipeError
from ziggurat.core.grid import Grid
from ziggurat.engine.run import execute
from ziggurat.io import VectorTileDirectoryInput, VectorTileDirectoryOutput, open_input, open_output
from ziggurat.io.outputs.vectordir import conform
from ziggurat.recipe import load_recipe

Z = 6


def output(tmp_path: Path, fmt: str = "FlatGeobuf", geometry: str = "MultiPolygon", *,
           properties: dict[str, str] | None = None, metatiling: int = 1, out_metatiling: int = 1,
           pixelbuffer: int = 0) -> VectorTileDirectoryOutput:
    recipe = load_recipe({
        "process": "contours", "zoom_levels": Z,
        "pyramid": {"grid": "geodetic", "metatiling": metatiling, "pixelbuffer": pixelbuffer},
        "output": {"path": str(tmp_path / "out"), "format": fmt, "metatiling": out_metatiling,
                   "schema": {"geometry": geometry, "properties": properties or {"name": "str", "value": "float"}}},
    })
    out = open_output(recipe.output, recipe.grid)
    assert isinstance(out, VectorTileDirectoryOutput)
    out.prepare(overwrite=False)
    return out


def read_tile(path: Path) -> tuple[dict[str, Any], list[Any], str]:
    with fiona.open(path) as src:
        return dict(src.schema), list(src), src.crs.to_string()


@pytest.mark.parametrize("fmt,suffix", [("FlatGeobuf", ".fgb"), ("GeoJSON", ".geojson")])
def test_written_tiles_read_back_with_schema_and_counts(tmp_path, fmt, suffix):
    out = output(tmp_path, fmt)
    grid = out.grid
    tile = grid.tile(Z, 20, 70)
    b = tile.bounds
    inside = shapely.box(b.left + 0.1, b.bottom + 0.1, b.left + 0.5, b.bottom + 0.5)
    across = shapely.box(b.right - 0.5, b.bottom + 1, b.right + 0.5, b.bottom + 1.5)  # leaves the tile
    feats = [{"geometry": inside, "properties": {"name": "in", "value": np.float32(1.5)}},
             {"geometry": shapely.geometry.mapping(across), "properties": {"name": "across", "value": 2}},
             {"geometry": shapely.box(b.right + 1, b.bottom, b.right + 2, b.top),  # outside
              "properties": {"name": "out", "value": 3.0}}]
    written = out.write(tile, feats)
    assert written == [tile.index]
    path = out.path / str(Z) / "20" / f"70{suffix}"
    assert out.tile_path(tile) == path and out.exists(tile)
    schema, records, crs = read_tile(path)
    assert schema == {"geometry": "MultiPolygon", "properties": {"name": "str", "value": "float"}}
    assert crs == "OGC:CRS84"
    records.sort(key=lambda r: r.properties["name"])  # FlatGeobuf stores them in Hilbert order
    assert [r.properties["name"] for r in records] == ["across", "in"]
    assert [r.properties["value"] for r in records] == [2.0, 1.5]  # the int 2 cast to float
    clipped = shapely.geometry.shape(records[0].geometry)
    assert clipped.geom_type == "MultiPolygon"  # a polygon promoted to the schema's multi type
    assert clipped.bounds == pytest.approx((b.right - 0.5, b.bottom + 1, b.right, b.bottom + 1.5))
    assert not any(p.name.startswith(".tmp") for p in path.parent.iterdir())  # written atomically
    meta = json.loads((out.path / "metadata.json").read_text())
    assert meta["output"] == {"format": fmt, "schema": schema}
    assert Grid.from_dict(meta["grid"]) == grid.with_options(pixelbuffer=0)


def test_no_features_means_no_tile(tmp_path):
    out = output(tmp_path)
    tile = out.grid.tile(Z, 20, 70)
    b = tile.bounds
    assert out.write(tile, []) == []
    line = shapely.LineString([(b.left, b.bottom), (b.right, b.top)])  # wrong dimension: dropped
    assert out.write(tile, [{"geometry": line, "properties": {}}]) == []
    assert not out.tile_path(tile).exists()


def test_metatile_is_cut_into_output_tiles_and_lines_explode(tmp_path):
    out = output(tmp_path, "GeoJSON", "LineString", properties={"elevation": "float"}, metatiling=2)
    tile = out.grid.tile(Z, 10, 35)  # a 2 x 2 metatile; output tiles are single tiles
    b = tile.bounds
    ymid = (b.bottom + b.top) / 2 + 0.3
    # one line across the whole metatile: one piece per output tile it crosses (2 of 4)
    line = shapely.LineString([(b.left - 1, ymid), (b.right + 1, ymid)])
    multi = shapely.MultiLineString([[(b.left + 0.1, ymid + 0.1), (b.left + 0.2, ymid + 0.2)],
                                     [(b.left + 0.3, ymid + 0.3), (b.left + 0.4, ymid + 0.4)]])
    written = out.write(tile, [{"geometry": line, "properties": {"elevation": 100}},
                               {"geometry": multi, "properties": {"elevation": 110}}])
    assert len(out.output_tiles(tile)) == 4 and len(written) == 2
    counts = {}
    for index in written:
        schema, records, _ = read_tile(out.tile_path(index))
        assert schema["geometry"] == "LineString"
        assert all(r.geometry.type == "LineString" for r in records)
        counts[index.col] = sorted(r.properties["elevation"] for r in records)
    west, east = sorted(counts)
    assert counts[west] == [100.0, 110.0, 110.0] and counts[east] == [100.0]  # multi exploded into 2


def test_points_on_a_shared_edge_are_written_once(tmp_path):
    out = output(tmp_path, "GeoJSON", "Point", properties={"k": "int"}, metatiling=2)
    tile = out.grid.tile(Z, 10, 35)
    b = tile.bounds
    xmid, ymid = (b.left + b.right) / 2, (b.bottom + b.top) / 2
    pts = [shapely.Point(xmid, ymid), shapely.Point(xmid, ymid + 0.5), shapely.Point(b.left + 0.1, ymid)]
    written = out.write(tile, [{"geometry": p, "properties": {"k": i}} for i, p in enumerate(pts)])
    total = sum(len(read_tile(out.tile_path(i))[1]) for i in written)
    assert total == 3


def test_conform_to_schema_types():
    poly, line = shapely.box(0, 0, 1, 1), shapely.LineString([(0, 0), (1, 1)])
    coll = shapely.GeometryCollection([poly, line, shapely.Point(5, 5)])
    assert [g.geom_type for g in conform(coll, "MultiPolygon")] == ["MultiPolygon"]
    assert [g.geom_type for g in conform(coll, "LineString")] == ["LineString"]
    two = shapely.MultiPolygon([poly, shapely.box(2, 2, 3, 3)])
    assert [g.geom_type for g in conform(two, "Polygon")] == ["Polygon", "Polygon"]
    assert conform(line, "Polygon") == [] and conform(coll, "Unknown") == [coll]


def test_unknown_properties_are_dropped_with_one_warning(tmp_path, caplog):
    out = output(tmp_path, "GeoJSON", "Polygon")
    tile = out.grid.tile(Z, 20, 70)
    b = tile.bounds
    feat = {"geometry": shapely.box(b.left, b.bottom, b.left + 1, b.bottom + 1),
            "properties": {"name": "x", "colour": "red"}}
    out.write(tile, [feat, feat])
    msgs = [r.getMessage() for r in caplog.records if "colour" in r.getMessage()]
    assert len(msgs) == 1 and "not in output.schema" in msgs[0]
    _, records, _ = read_tile(out.tile_path(tile))
    assert dict(records[0].properties) == {"name": "x", "value": None}


def test_bad_features_name_the_tile(tmp_path):
    out = output(tmp_path)
    tile = out.grid.tile(Z, 20, 70)
    with pytest.raises(OutputError, match=r"tile \(zoom 6, row 20, col 70\): feature 0 is a int"):
        out.write(tile, [5])
    b = tile.bounds
    with pytest.raises(OutputError, match=r"property 'value': cannot write 'high' as float"):
        out.write(tile, [{"geometry": shapely.box(b.left, b.bottom, b.left + 1, b.bottom + 1),
                          "properties": {"value": "high"}}])


def test_metadata_mismatch_needs_overwrite(tmp_path):
    output(tmp_path, "FlatGeobuf", "MultiPolygon")
    with pytest.raises(OutputError, match="schema"):
        output(tmp_path, "FlatGeobuf", "LineString")


# -- read back as an input ----------------------------------------------------------------------
def test_vector_tile_directory_reads_back_as_input(tmp_path):
    out = output(tmp_path, "FlatGeobuf", "MultiPolygon")
    grid = out.grid
    t1, t2 = grid.tile(Z, 20, 70), grid.tile(Z, 20, 71)
    shared = t1.bounds.right
    poly = shapely.box(shared - 1, t1.bounds.bottom + 0.5, shared + 1, t1.bounds.bottom + 1.5)
    for t in (t1, t2):
        out.write(t, [{"geometry": poly, "properties": {"name": "p", "value": 1.0}}])
    recipe = load_recipe({"process": "rasterize", "zoom_levels": [Z - 1, Z + 1],
                          "pyramid": {"grid": "geodetic", "pixelbuffer": 2},
                          "input": {"features": str(out.path)}, "output": {"path": str(tmp_path / "r")}})
    cfg = recipe.inputs["features"]
    assert cfg.format == "tiledir"  # detected by metadata.json; the driver looks at its format
    inp = open_input(cfg, recipe.grid)
    assert isinstance(inp, VectorTileDirectoryInput)
    assert inp.bounds == pytest.approx(tuple(t1.bounds)[:2] + tuple(t2.bounds)[2:])
    for zoom in (Z - 1, Z, Z + 1):
        tin = inp.for_tile(recipe.grid.tile_at(shared - 0.01, t1.bounds.bottom + 1, zoom))
        feats = tin.read()
        assert len(feats) == 2 and {f["properties"]["name"] for f in feats} == {"p"}  # one piece per stored tile
        expected = poly.intersection(shapely.box(*tin.tile.buffered_bounds))
        assert tin.read_union().symmetric_difference(expected).area < 1e-9
    mercator = Grid.from_name("mercator")
    minp = open_input(cfg, mercator)
    union = minp.for_tile(mercator.tile_at(*_merc(shared, t1.bounds.bottom + 1), Z)).read_union()
    assert union.bounds[0] == pytest.approx(_merc(shared - 1, 0)[0])


def _merc(lon: float, lat: float) -> tuple[float, float]:
    import math

    r = 6378137.0
    return r * math.radians(lon), r * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


# -- recipe validation ----------------------------------------------------------------------------
@pytest.mark.parametrize("schema,match", [
    (None, r"output\.schema: vector outputs need a schema"),
    ({"geometry": "Polygonz"}, r"output\.schema\.geometry: expected one of Point, .*found 'Polygonz'"),
    ({"geometry": "Polygon", "properties": {"h": "decimal"}},
     r"output\.schema\.properties\.h: expected a property type .*found 'decimal'"),
    ({"geometry": "Polygon", "colour": 1}, r"output\.schema\.colour: unknown schema key 'colour'"),
    ({"geometry": "Polygon", "properties": ["a"]}, r"output\.schema\.properties: expected a mapping"),
])
def test_schema_errors_name_the_key(write_recipe, tmp_path, schema, match):
    schema_yaml = "" if schema is None else f"  schema: {json.dumps(schema)}\n"
    path = write_recipe(f"""
process: contours
zoom_levels: 5
pyramid:
  grid: geodetic
output:
  path: {tmp_path / 'out'}
  format: GeoJSON
{schema_yaml}""")
    with pytest.raises(RecipeError, match=r"recipe\.yaml:\d+: " + match):
        load_recipe(path)


def test_schema_is_normalised_in_the_recipe(tmp_path):
    recipe = load_recipe({"process": "contours", "zoom_levels": 5, "pyramid": {"grid": "geodetic"},
                          "output": {"path": str(tmp_path), "format": "fgb",
                                     "schema": {"geometry": "multipolygon",
                                                "properties": {"a": "string", "b": "double", "c": "str:20"}}}})
    assert recipe.output.format == "FlatGeobuf"
    assert dict(recipe.output.options["schema"]) == {"geometry": "MultiPolygon",
                                                     "properties": {"a": "str", "b": "float", "c": "str:20"}}


# -- the job accepts features for vector outputs only -----------------------------------------------
RETURNS = """
import numpy as np
import shapely

def execute(tile, kind: str = "features"):
    b = tile.bounds
    if kind == "array":
        return np.zeros(tile.shape)
    return (f for f in [{"geometry": shapely.box(b.left, b.bottom, b.left + 0.1, b.bottom + 0.1),
                         "properties": {"name": "g"}}])   # any iterable works
"""


def _job_recipe(write_recipe, tmp_path: Path, fmt: str, kind: str) -> Path:
    schema = "  schema: {geometry: Polygon, properties: {name: str}}\n" if fmt != "GTiff" else ""
    return write_recipe(f"""
process: proc.py
zoom_levels: 5
pyramid:
  grid: geodetic
bounds: [10, 10, 11, 11]
output:
  path: {tmp_path / ('out' + fmt)}
  format: {fmt}
{schema}process_parameters:
  kind: {kind}
""", process=RETURNS)


def test_job_writes_features_and_rejects_mismatches(write_recipe, tmp_path):
    summary = execute(_job_recipe(write_recipe, tmp_path, "GeoJSON", "features"), executor="sequential")
    assert summary.output_tiles == 1
    with pytest.raises(ProcessError, match="returned an array, but the output format GeoJSON is a vector format"):
        execute(_job_recipe(write_recipe, tmp_path, "GeoJSON", "array"), executor="sequential", overwrite=True)
    with pytest.raises(ProcessError, match="a list of features needs output format GeoJSON or FlatGeobuf|"
                                           "returned generator"):
        execute(_job_recipe(write_recipe, tmp_path, "GTiff", "features"), executor="sequential")


def test_parent_side_writing_is_refused_clearly(write_recipe, tmp_path):
    with pytest.raises(OutputError, match="written by the workers; parent-side writing"):
        execute(_job_recipe(write_recipe, tmp_path, "FlatGeobuf", "features"), executor="processes",
                workers=1, write_in="parent")
