"""Provenance kept in `.ziggurat/`: recipe, process source, manifest and tile checksums."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import rasterio
import yaml

from ziggurat import ProcessError
from ziggurat.audit.checks import verify
from ziggurat.engine.run import execute
from ziggurat.io.checksum import compare_fingerprints, fingerprint_input
from ziggurat.recipe import load_recipe
from ziggurat.records.provenance import (
    TileRecord,
    append_tile_records,
    compact_tile_records,
    list_runs,
    provenance_dir,
    provenance_links,
    read_manifest,
    read_tile_records,
)

from conftest import REPO, SAMPLE_DEM
from provenance_helpers import make_recipe, sha256, tile_bytes


def _run(recipe: Path, **kwargs):
    kwargs.setdefault("executor", "sequential")
    return execute(recipe, **kwargs)


def test_a_run_saves_recipe_process_source_and_manifest(tmp_path):
    recipe = make_recipe(tmp_path)
    summary = _run(recipe, zoom=6)
    out = tmp_path / "out"
    prov = out / ".ziggurat"
    assert (prov / "recipe.yaml").read_text() == recipe.read_text()
    assert (prov / "process.py").read_bytes() == (tmp_path / "proc.py").read_bytes()

    resolved = yaml.safe_load((prov / "recipe.resolved.yaml").read_text())
    assert resolved["process"] == str(tmp_path / "proc.py")
    assert resolved["input"]["src"] == {"path": str(tmp_path / "src.tif"), "format": "raster"}
    assert resolved["output"]["path"] == str(out)
    assert resolved["output"]["compress"] == "deflate" and resolved["output"]["metatiling"] == 1
    assert resolved["pyramid"]["tile_size"] == 256
    original, again = load_recipe(recipe), load_recipe(resolved, base_dir=tmp_path)
    for name in ("zoom_levels", "grid", "inputs", "output", "bounds", "parameters"):
        assert getattr(again, name) == getattr(original, name), name

    manifest = read_manifest(out)
    assert manifest["status"] == "succeeded" and manifest["error"] is None
    assert manifest["started"] < manifest["ended"]
    assert manifest["command"] == sys.argv
    assert (manifest["executor"], manifest["workers"]) == ("sequential", 1)
    assert manifest["options"]["zoom"] == 6
    assert manifest["recipe"]["path"] == str(recipe) and manifest["recipe"]["base_dir"] == str(tmp_path)
    assert manifest["process"]["sha256"] == sha256(tmp_path / "proc.py")
    assert (prov / manifest["process"]["source"]).read_bytes() == (tmp_path / "proc.py").read_bytes()
    resolved_copy = prov / manifest["recipe"]["resolved"]
    assert resolved_copy.read_bytes() == (prov / "recipe.resolved.yaml").read_bytes()
    fp = manifest["inputs"]["src"]["fingerprint"]
    assert fp == {"kind": "sha256", "size": (tmp_path / "src.tif").stat().st_size,
                  "sha256": sha256(tmp_path / "src.tif")}
    versions = manifest["versions"]
    assert versions["gdal"] == rasterio.__gdal_version__
    for name in ("ziggurat", "python", "numpy", "rasterio", "fiona", "shapely", "morecantile"):
        assert versions[name], name
    assert manifest["platform"]["system"]
    assert manifest["summary"]["output_tiles_written"] == summary.output_tiles == 4
    assert manifest["summary"]["empty"] == summary.empty == 5
    assert json.loads((prov / "runs" / f"{manifest['run']}.json").read_text()) == manifest


def test_tile_checksums_match_the_files_and_empty_tiles_are_recorded(tmp_path):
    summary = _run(make_recipe(tmp_path, metatiling=2), zoom=6)
    out = tmp_path / "out"
    records = read_tile_records(out)
    files = tile_bytes(out)
    assert files and len(files) == summary.output_tiles
    for path, data in files.items():
        assert records[path].sha256 == hashlib.sha256(data).hexdigest()
        assert records[path].index == tuple(int(p) for p in path[:-4].split("/"))
    empty = {p for p, r in records.items() if r.sha256 is None}
    assert empty and not empty & set(files)
    assert {r.run for r in records.values()} == {read_manifest(out)["run"]}


def test_runs_accumulate_and_overwrite_reruns_do_not_grow_the_checksum_file(tmp_path):
    recipe = make_recipe(tmp_path)
    out = tmp_path / "out"
    _run(recipe, zoom=6)
    first = read_manifest(out)["run"]
    _run(recipe, zoom=5)
    second = read_manifest(out)["run"]
    records = read_tile_records(out)
    assert {r.index.zoom for r in records.values()} == {5, 6}
    assert [m["run"] for m in list_runs(out)] == [first, second]

    skipped = _run(recipe, zoom=6)  # continue mode: skipped tiles keep their records
    assert skipped.skipped == 9  # 4 written + 5 empty: the ledger records empty tiles too
    again = read_tile_records(out)
    assert {p: r.sha256 for p, r in again.items()} == {p: r.sha256 for p, r in records.items()}
    assert {r.run for r in again.values() if r.index.zoom == 6 and r.sha256} == {first}

    for _ in range(3):
        _run(recipe, zoom=6, overwrite=True)
    last = read_manifest(out)["run"]
    after = read_tile_records(out)
    assert compact_tile_records(out) == len(after) == len(records)  # one ledger row per tile
    assert {r.run for r in after.values() if r.index.zoom == 6} == {last}
    assert {r.run for r in after.values() if r.index.zoom == 5} == {second}
    assert len(list_runs(out)) == 6


def test_tiles_removed_by_overwrite_are_recorded_as_absent(tmp_path):
    out = tmp_path / "out"
    _run(make_recipe(tmp_path), zoom=6)
    assert (out / "6/10/20.tif").exists()
    _run(make_recipe(tmp_path, name="skip.yaml", params="{gain: 2.0, skip_col: 20}"), zoom=6, overwrite=True)
    assert not (out / "6/10/20.tif").exists()
    assert read_tile_records(out)["6/10/20.tif"].sha256 is None
    assert verify(out).ok


@pytest.mark.parametrize("executor,workers", [("sequential", 1), ("threads", 2)])
def test_a_failing_run_records_the_tiles_it_wrote(tmp_path, executor, workers):
    recipe = make_recipe(tmp_path, params="{gain: 2.0, fail_col: 21}")
    with pytest.raises(ProcessError):
        execute(recipe, zoom=6, executor=executor, workers=workers)
    out = tmp_path / "out"
    manifest = read_manifest(out)
    assert manifest["status"] == "failed" and "boom" in manifest["error"]
    assert manifest["ended"] is not None
    records = read_tile_records(out)
    for path, data in tile_bytes(out).items():  # every tile on disk is recorded
        assert records[path].sha256 == hashlib.sha256(data).hexdigest()
    assert verify(out).ok


def test_mapping_recipe_and_ready_made_process_are_saved(tmp_path):
    mapping = {"process": "hillshade", "zoom_levels": 9,
               "pyramid": {"grid": "geodetic", "pixelbuffer": 1},
               "input": {"dem": str(SAMPLE_DEM)},
               "output": {"path": str(tmp_path / "out"), "dtype": "uint8", "nodata": 0},
               "process_parameters": {"azimuth": 315}}
    execute(load_recipe(mapping), tile=(9, 162, 235), executor="sequential")
    prov = tmp_path / "out" / ".ziggurat"
    assert yaml.safe_load((prov / "recipe.yaml").read_text()) == mapping
    assert (prov / "process.py").read_text() == (REPO / "processes" / "hillshade.py").read_text()
    manifest = read_manifest(tmp_path / "out")
    assert manifest["recipe"]["path"] is None
    assert manifest["process"]["module"] == "ziggurat_processes.hillshade"
    assert manifest["options"]["tile"] == [9, 162, 235]


def test_fingerprint_of_a_large_file_hashes_its_ends(tmp_path):
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 20
    path.write_bytes(data)
    small = fingerprint_input(path)
    assert small == {"kind": "sha256", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    big = fingerprint_input(path, full_limit=1000, partial_bytes=100)
    assert big["kind"] == "partial-sha256" and big["size"] == len(data) and big["mtime"]
    assert big["sha256"] == hashlib.sha256(data[:100] + data[-100:]).hexdigest()

    middle = bytearray(data)
    middle[2000] ^= 0xFF
    path.write_bytes(bytes(middle))
    again = fingerprint_input(path, full_limit=1000, partial_bytes=100)
    assert again["sha256"] == big["sha256"]  # the documented blind spot ...
    assert "modification time" in compare_fingerprints(big, again)  # ... flagged by mtime
    assert "sha256" in compare_fingerprints(small, fingerprint_input(path))
    assert compare_fingerprints({"kind": "remote"}, fingerprint_input("/vsicurl/https://x/y.tif")) is None


def test_fingerprint_of_a_tile_directory_lists_files_and_sizes(tmp_path):
    _run(make_recipe(tmp_path), zoom=6)
    out = tmp_path / "out"
    fp = fingerprint_input(out)
    tiles = list(out.glob("*/*/*.tif"))
    assert fp["kind"] == "tiledir" and fp["files"] == len(tiles) >= 4   # tiles (metadata.json is hashed)
    assert fp["size"] == sum(p.stat().st_size for p in tiles)
    (out / ".ziggurat" / "note.txt").write_text("hidden entries do not count")
    # files that are not tiles: an index, VRTs, the STAC item, notes (written later, e.g. by `index`)
    for extra in ("index.gpkg", "6.vrt", "README.md", "6/notes.txt", "6/10/11.tif.aux.xml"):
        (out / extra).write_text("not a tile")
    assert fingerprint_input(out) == fp
    (out / "6" / "10" / "99.tif").write_bytes(b"x")
    assert compare_fingerprints(fp, fingerprint_input(out))
    (out / "6" / "10" / "99.tif").unlink()
    meta = out / "metadata.json"
    meta.write_text(meta.read_text().replace('"deflate"', '"lzw"    '))  # same size, other bytes
    assert "sha256" in compare_fingerprints(fp, fingerprint_input(out))


def test_tile_records_last_record_wins_and_legacy_jsonl_is_imported(tmp_path):
    out = tmp_path / "out"
    folder = provenance_dir(out)
    folder.mkdir(parents=True)
    with open(folder / "tiles.jsonl", "w") as fh:  # what an older ziggurat kept
        fh.write('{"path":"1/0/0.tif","tile":[1,0,0],"sha256":"' + "a" * 64 + '","run":"r1"}\n')
        fh.write('{"path":"1/0/1.tif","tile":[1,0,1],"sha256":"' + "b" * 64 + '","run":"r1"}\n')
        fh.write('{"path": "1/0/2.tif", "sha')  # a line cut short by a crash
    append_tile_records(out, [TileRecord("1/0/0.tif", None, (1, 0, 0), "r2")])
    assert not (folder / "tiles.jsonl").exists() and (folder / "ledger.sqlite").is_file()
    records = read_tile_records(out)
    assert records["1/0/0.tif"].sha256 is None and records["1/0/0.tif"].run == "r2"
    assert records["1/0/1.tif"].sha256 == "b" * 64 and set(records) == {"1/0/0.tif", "1/0/1.tif"}
    assert compact_tile_records(out) == 2
    assert read_tile_records(out) == records


def test_provenance_links_for_a_stac_item(tmp_path):
    _run(make_recipe(tmp_path), zoom=6)
    out = tmp_path / "out"
    links = provenance_links(out)
    rels = {link["rel"]: link for link in links}
    assert set(rels) == {"ziggurat:recipe", "ziggurat:recipe-resolved", "ziggurat:process",
                         "ziggurat:manifest"}
    assert rels["ziggurat:manifest"]["href"] == ".ziggurat/manifest.json"
    assert rels["ziggurat:recipe"]["type"] == "application/yaml"
    for link in links:
        assert (out / link["href"]).is_file() and link["title"]
    elsewhere = provenance_links(out, relative_to=tmp_path / "catalog")
    assert {link["href"] for link in elsewhere} >= {"../out/.ziggurat/recipe.yaml"}


def test_the_stac_item_links_to_the_saved_recipe_and_manifest(tmp_path):
    from ziggurat.records.catalog.parts import item_path

    _run(make_recipe(tmp_path), zoom=6)
    out = tmp_path / "out"
    item = json.loads(item_path(out).read_text())
    links = {link["rel"]: link["href"] for link in item["links"]}
    assert links["ziggurat:recipe"] == ".ziggurat/recipe.yaml"
    assert links["ziggurat:manifest"] == ".ziggurat/manifest.json"
    _run(make_recipe(tmp_path), zoom=6, overwrite=True)  # rewritten, not duplicated
    item = json.loads(item_path(out).read_text())
    assert sum(link["rel"] == "ziggurat:manifest" for link in item["links"]) == 1
