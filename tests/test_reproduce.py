"""`verify` and `reproduce`: an output checked against, and rebuilt from, its provenance."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ziggurat.audit.checks import reproduce, verify
from ziggurat.cli import main
from ziggurat.core.errors import ProvenanceError
from ziggurat.engine.run import execute
from ziggurat.records.provenance import list_runs, provenance_dir, read_manifest, read_tile_records

from provenance_helpers import make_recipe, make_source, sha256, tile_bytes


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def output(tmp_path) -> Path:
    """A finished run: zoom 6 (4 tiles, 5 empty) and zoom 5, in two runs."""
    recipe = make_recipe(tmp_path)
    execute(recipe, zoom=6, executor="sequential")
    execute(recipe, zoom=5, executor="sequential")
    return tmp_path / "out"


def test_reproduce_into_a_new_folder_is_identical(output, tmp_path):
    before = (read_tile_records(output), len(list_runs(output)))
    result = reproduce(output, tmp_path / "again", executor="sequential")
    assert result.ok, result.describe()
    assert not result.warnings
    assert len(result.runs) == 2  # both recorded runs replayed, oldest first
    assert result.runs == [m["run"] for m in list_runs(output)]
    files = tile_bytes(output)
    empty = sum(1 for r in read_tile_records(output).values() if r.sha256 is None)
    assert sorted(result.identical) == sorted(files) and result.identical_empty == empty >= 5
    assert tile_bytes(tmp_path / "again") == files
    assert (read_tile_records(output), len(list_runs(output))) == before  # the original is untouched
    report = json.loads((tmp_path / "again" / ".ziggurat" / "reproduce.json").read_text())
    assert report["ok"] and report["identical"] == len(files)


def test_default_target_is_a_fresh_sibling_and_the_original_is_never_written(output, tmp_path):
    result = reproduce(output, executor="sequential")
    assert result.ok
    assert result.target.parent == output.parent and result.target.name.startswith("out.reproduced-")
    for bad in (output, output / "inside"):
        with pytest.raises(ProvenanceError, match="not into the original"):
            reproduce(output, bad, executor="sequential")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    with pytest.raises(ProvenanceError, match="not empty"):
        reproduce(output, busy, executor="sequential")
    with pytest.raises(ProvenanceError, match="no provenance"):
        reproduce(busy, tmp_path / "new")


def test_verify_names_changed_missing_and_extra_tiles(output):
    assert verify(output).ok
    count = len(tile_bytes(output))
    changed, gone = output / "6" / "10" / "20.tif", output / "6" / "11" / "21.tif"
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed.write_bytes(bytes(data))
    gone.unlink()
    shutil.copy(output / "6" / "10" / "21.tif", output / "6" / "10" / "23.tif")
    # ziggurat keeps its temporaries in .ziggurat/tmp: anything else in the tile folders is extra
    (output / "6" / "10" / ".tmp-123-x.tif").write_bytes(b"not ours")
    (output / "6" / "notes.txt").write_text("a file directly in a zoom folder")
    result = verify(output, workers=3)
    assert not result.ok
    assert [r.path for r, _ in result.changed] == ["6/10/20.tif"]
    assert result.changed[0][1] == sha256(changed)
    assert [r.path for r in result.missing] == ["6/11/21.tif"]
    assert result.extra == ["6/10/.tmp-123-x.tif", "6/10/23.tif", "6/notes.txt"]
    assert result.identical == count - 2
    code, out, _ = _cli("verify", str(output))
    assert code == 1
    assert "6/10/20.tif (tile 6 10 20)" in out and "6/11/21.tif" in out and "6/10/23.tif" in out
    # -z: the other zooms are untouched, and only they are looked at
    others = sorted({int(p.split("/")[0]) for p in tile_bytes(output)} - {6})
    assert others and verify(output, zooms=others).ok
    assert verify(output, zooms=[6]).identical + verify(output, zooms=others).identical == count - 2
    assert _cli("verify", str(output), "-z", f"{others[0]},{others[-1]}")[0] == (1 if others[0] < 6 < others[-1] else 0)


def test_verify_never_opens_a_fifo_or_a_device_in_place_of_a_tile(output):
    fifo, link = output / "6" / "10" / "20.tif", output / "6" / "10" / "21.tif"
    fifo.unlink()
    os.mkfifo(fifo)            # opening it would wait for a writer forever
    link.unlink()
    link.symlink_to("/dev/zero")   # reading it would never end
    result = verify(output)
    assert sorted((r.path, why) for r, why in result.changed) == [("6/10/20.tif", "not a regular file"),
                                                                  ("6/10/21.tif", "not a regular file")]


def test_verify_reports_a_modified_saved_source(output):
    process = next((provenance_dir(output) / "sources").glob("process_*.py"))
    process.write_text(process.read_text() + "\n# edited\n")
    result = verify(output)
    assert not result.ok and result.problems and process.name in result.problems[0]
    with pytest.raises(ProvenanceError, match="modified after the run"):
        reproduce(output, output.parent / "again", executor="sequential")


def test_reproduce_uses_the_saved_process_source(output, tmp_path):
    saved = (tmp_path / "proc.py").read_bytes()
    (tmp_path / "proc.py").write_text((tmp_path / "proc.py").read_text().replace("* gain", "* gain * 100"))
    result = reproduce(output, tmp_path / "again", executor="sequential")
    assert result.ok, result.describe()
    manifest = read_manifest(tmp_path / "again")
    assert manifest["process"]["sha256"] == read_manifest(output)["process"]["sha256"]
    assert (provenance_dir(tmp_path / "again") / "process.py").read_bytes() == saved
    assert Path(manifest["process"]["origin"]).parent == provenance_dir(output) / "sources"


def test_a_changed_input_is_warned_about_and_its_tiles_differ(output, tmp_path):
    make_source(tmp_path, offset=5.0)  # changes the pixels of tile 6/10/20 only
    result = reproduce(output, tmp_path / "again", executor="sequential")
    assert not result.ok
    assert any("input 'src'" in w and "fingerprint" in w for w in result.warnings)
    differing = {d.path for d in result.differing}
    assert "6/10/20.tif" in differing and "6/11/21.tif" not in differing
    assert {d.index.zoom for d in result.differing} == {5, 6}
    assert "6/11/21.tif" in result.identical
    code, out, err = _cli("reproduce", str(output), "--to", str(tmp_path / "again2"), "-e", "sequential",
                          "--no-progress")
    assert code == 1
    assert "Warning: input 'src'" in err and "DIFFERENT" in out and "6/10/20.tif (tile 6 10 20)" in out


def test_a_narrowed_reproduction_compares_only_what_it_covers(output, tmp_path):
    result = reproduce(output, tmp_path / "again", zoom=6, executor="sequential")
    assert result.ok and result.narrowed
    assert result.runs == [read_manifest(output)["run"]]
    assert sorted(result.identical) == sorted(p for p in tile_bytes(output) if p.startswith("6/"))
    assert not result.not_reproduced


def test_a_library_version_difference_is_warned_about(output, tmp_path):
    for path in [*(provenance_dir(output) / "runs").glob("*.json"), provenance_dir(output) / "manifest.json"]:
        manifest = json.loads(path.read_text())
        manifest["versions"]["gdal"] = "1.0.0"
        path.write_text(json.dumps(manifest))
    result = reproduce(output, tmp_path / "again", executor="sequential")
    assert result.ok
    now = read_manifest(tmp_path / "again")["versions"]["gdal"]
    assert result.warnings == [f"gdal version differs: 1.0.0 recorded, {now} now"]


def test_relative_paths_in_the_saved_recipe_resolve_against_the_recipe_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    b = [float(v) for v in make_recipe(folder).read_text().split("bounds: [")[1].split("]")[0].split(",")]
    (folder / "area.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [[
        [b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[1]]]]}))
    recipe = make_recipe(folder, extra="area: area.geojson\n")
    monkeypatch.chdir(folder)
    execute("recipe.yaml", zoom=6, executor="sequential")
    manifest = read_manifest(folder / "out")
    assert manifest["files"]["area"]["path"] == str(folder / "area.geojson")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = reproduce(folder / "out", "again", executor="sequential")
    assert result.ok and result.identical, result.describe()
    assert result.target == elsewhere / "again"
    assert recipe.exists()


def test_cli_verify_and_reproduce_succeed_on_an_untouched_output(output, tmp_path):
    code, out, err = _cli("verify", str(output))
    assert code == 0, err
    assert out.startswith("OK: ") and "MB/s" in out
    code, out, err = _cli("reproduce", str(output), "--to", str(tmp_path / "again"), "-e", "threads",
                          "-w", "2", "--no-progress")
    assert code == 0, err
    assert out.startswith("IDENTICAL: reproduced 2 run(s)")
    code, _, err = _cli("verify", str(tmp_path / "nothing-here"))
    assert code == 2  # click: the path does not exist
    (tmp_path / "plain").mkdir()
    code, _, err = _cli("verify", str(tmp_path / "plain"))
    assert code == 1 and "no provenance" in err and "Traceback" not in err


def test_a_single_file_output_is_recorded_verified_and_reproduced(tmp_path):
    recipe = make_recipe(tmp_path, out="single/out.tif")
    execute(recipe, zoom=6, executor="threads", workers=2)
    out = tmp_path / "single" / "out.tif"
    records = read_tile_records(out)
    assert list(records) == ["out.tif"] and records["out.tif"].sha256 == sha256(out)
    assert (tmp_path / "single" / "out.tif.ziggurat" / "manifest.json").is_file()
    assert verify(out).ok
    result = reproduce(out, executor="sequential")
    assert result.ok and len(result.identical) == 1, result.describe()
    assert result.target.suffix == ".tif" and result.target.is_file()
    data = bytearray(out.read_bytes())
    data[-10] ^= 0xFF
    out.write_bytes(bytes(data))
    assert [r.path for r, _ in verify(out).changed] == ["out.tif"]


def test_a_run_time_area_file_is_recorded_and_replayed(tmp_path, monkeypatch):
    recipe = make_recipe(tmp_path)
    b = [float(v) for v in recipe.read_text().split("bounds: [")[1].split("]")[0].split(",")]
    (tmp_path / "aoi.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [[
        [b[0], b[3]], [b[0] + 0.5, b[3]], [b[0], b[3] - 0.5], [b[0], b[3]]]]}))
    monkeypatch.chdir(tmp_path)
    execute(recipe, zoom=6, area="aoi.geojson", executor="sequential")
    manifest = read_manifest(tmp_path / "out")
    assert manifest["options"]["area"] == str(tmp_path / "aoi.geojson")
    assert manifest["files"]["run area"]["fingerprint"]["sha256"] == sha256(tmp_path / "aoi.geojson")
    monkeypatch.chdir(tmp_path / "out")
    result = reproduce(tmp_path / "out", tmp_path / "again", executor="sequential")
    assert result.ok and result.identical == ["6/10/20.tif"], result.describe()
