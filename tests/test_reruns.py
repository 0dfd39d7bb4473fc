"""Exact incremental reruns: a changed recipe, process or input rebuilds exactly what it affects."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ziggurat.audit.checks import status, verify
from ziggurat.audit.report import dry_run
from ziggurat.core.errors import OutputError
from ziggurat.core.grid import TileIndex
from ziggurat.engine.run import execute
from ziggurat.records.ledger import Ledger
from ziggurat.records.provenance import read_manifest

from polling import wait_until
from provenance_helpers import PROCESS, bounds_text, make_recipe, make_source, tile_bytes

ZIGGURAT = str(Path(sys.executable).parent / "ziggurat")

ZIGGURAT = str(Path(sys.executable).parent / "ziggurat")


def _runs(out: Path) -> dict[TileIndex, str | None]:
    """Process tile -> the run that last made it."""
    with Ledger(out, create=False) as ledger:
        rows = ledger._conn.execute("SELECT zoom, row, col, run FROM process_tiles").fetchall()
    return {TileIndex(z, r, c): run for z, r, c, run in rows}


def _rebuilt(out: Path) -> set[TileIndex]:
    """Process tiles the latest run made."""
    latest = read_manifest(out)["run"]
    return {index for index, run in _runs(out).items() if run == latest}


def _chained(folder: Path, zooms: str, extra: str = "") -> Path:
    """A recipe reading the tile directory `up` (pixel for pixel) into `down`."""
    recipe = folder / "chained.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        process: copy.py
        zoom_levels: {zooms}
        pyramid: {{grid: geodetic, pixelbuffer: 0}}
        input:
          up: {{path: up, format: tiledir}}
        output: {{path: down, dtype: float32, nodata: -9999}}
        bounds: {bounds_text()}
        """) + extra)
    (folder / "copy.py").write_text("def execute(up):\n    return up.read(1)\n")
    return recipe


def test_a_changed_parameter_rebuilds_every_tile_and_says_why(tmp_path):
    recipe = make_recipe(tmp_path)
    first = execute(recipe, executor="sequential")
    before = tile_bytes(tmp_path / "out")
    again = execute(recipe, executor="sequential")
    assert again.skipped == first.total and again.stale == {} and "rebuilt" not in again.describe()
    recipe.write_text(recipe.read_text().replace("{gain: 2.0}", "{gain: 3.0}"))
    changed = execute(recipe, executor="sequential")
    assert changed.skipped == 0
    assert changed.stale == {"process_parameters changed (gain)": first.total}
    assert f"{first.total} rebuilt: {first.total} process_parameters changed (gain)" in changed.describe()
    after = tile_bytes(tmp_path / "out")
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)
    assert execute(recipe, executor="sequential").skipped == first.total  # and now it is current
    assert verify(tmp_path / "out").ok


def test_a_zoom_dependent_parameter_rebuilds_only_its_zoom(tmp_path):
    recipe = make_recipe(tmp_path, params="{gain: {zoom<=5: 2.0, zoom>5: 2.0}}")
    execute(recipe, executor="sequential")
    runs = _runs(tmp_path / "out")
    recipe.write_text(recipe.read_text().replace("zoom>5: 2.0", "zoom>5: 4.0"))
    summary = execute(recipe, executor="sequential")
    rebuilt = _rebuilt(tmp_path / "out")
    assert rebuilt == {i for i in runs if i.zoom == 6}
    assert summary.skipped == sum(1 for i in runs if i.zoom == 5)
    assert summary.stale == {"process_parameters changed (gain)": len(rebuilt)}


def test_a_changed_process_source_rebuilds_everything(tmp_path):
    recipe = make_recipe(tmp_path)
    first = execute(recipe, executor="sequential")
    (tmp_path / "proc.py").write_text(textwrap.dedent(PROCESS).replace("* gain", "* gain * 2"))
    summary = execute(recipe, executor="sequential")
    assert summary.stale == {"process code changed": first.total}
    assert summary.skipped == 0


def test_comments_docstrings_and_formatting_keep_every_tile(tmp_path):
    recipe = make_recipe(tmp_path)
    first = execute(recipe, executor="sequential")
    source = textwrap.dedent(PROCESS)
    edited = '"""Now with a docstring."""\n# and a comment\n' + source.replace("\n\n", "\n\n\n")
    (tmp_path / "proc.py").write_text(edited)
    summary = execute(recipe, executor="sequential")
    assert summary.skipped == first.total and summary.written == 0 and not summary.stale
    assert not any(z.stale for z in dry_run(recipe).zooms)


def test_tiles_keyed_by_the_source_bytes_by_an_earlier_version_are_kept(tmp_path):
    """Before keys held the code, they held the SHA-256 of the source: the same source is the same code."""
    import hashlib
    import json

    from ziggurat.records.keys import digest

    recipe = make_recipe(tmp_path)
    first = execute(recipe, executor="sequential")
    source_sha = hashlib.sha256((tmp_path / "proc.py").read_bytes()).hexdigest()
    with Ledger(tmp_path / "out") as ledger:   # as an earlier version wrote them
        for key, text in ledger.known_keys():
            parts = json.loads(text)
            if "process" in parts:
                parts["process"] = source_sha
                ledger.record_key(digest(parts), json.dumps(parts, sort_keys=True))
                ledger.rekey(key, digest(parts))
    again = execute(recipe, executor="sequential")
    assert again.skipped == first.total and again.written == 0 and not again.stale
    assert "accepted_process_changes" not in read_manifest(tmp_path / "out")   # nothing to accept


def test_an_accepted_process_change_keeps_the_tiles_and_says_who_accepted_it(tmp_path):
    recipe = make_recipe(tmp_path)
    first = execute(recipe, executor="sequential")
    before = _runs(tmp_path / "out")
    (tmp_path / "proc.py").write_text(textwrap.dedent(PROCESS).replace("* gain", "* gain * 1.0"))
    proc = subprocess.run([ZIGGURAT, "execute", str(recipe), "-e", "sequential", "--no-progress",
                           "--accept-process-change"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"0 tiles written, 0 empty, {first.total} skipped" in proc.stdout
    assert _runs(tmp_path / "out") == before   # nothing rebuilt
    manifest = read_manifest(tmp_path / "out")
    accepted = manifest["accepted_process_changes"]
    assert manifest["options"]["accept_process_change"] is True
    assert sum(a["tiles"] for a in accepted) == first.total and all("@" in a["by"] and a["at"] for a in accepted)
    with Ledger(tmp_path / "out", create=False) as ledger:
        assert ledger.get_state("accepted process changes")
    assert verify(tmp_path / "out").ok
    # without the flag, a real change still rebuilds
    (tmp_path / "proc.py").write_text(textwrap.dedent(PROCESS).replace("* gain", "* gain * 2"))
    assert execute(recipe, executor="sequential").stale == {"process code changed": first.total}


def test_a_changed_input_rebuilds_everything_that_reads_it(tmp_path):
    recipe = make_recipe(tmp_path)
    first = execute(recipe, executor="sequential")
    make_source(tmp_path, offset=5.0)  # same size, other content: the SHA-256 sees it
    summary = execute(recipe, executor="sequential")
    assert summary.stale == {"input src changed": first.total}


def test_an_unchanged_input_is_not_hashed_again_and_an_edit_behind_an_old_mtime_is_still_seen(tmp_path,
                                                                                               monkeypatch):
    """Each run remembers a file input's fingerprint with its stat: a rerun hashes it again only
    when the file changed. Setting the modification time back after an edit does not hide it (the
    change time moves), and the edit rebuilds the tiles as before."""
    from ziggurat.io import checksum

    recipe = make_recipe(tmp_path)
    first = execute(recipe, executor="sequential")
    source = tmp_path / "src.tif"
    hashed: list[str] = []
    real = checksum.sha256_and_size
    monkeypatch.setattr(checksum, "sha256_and_size", lambda p: (hashed.append(str(p)), real(p))[1])
    monkeypatch.setattr(checksum, "_cache", {})                 # nothing remembered in this process
    assert execute(recipe, executor="sequential").skipped == first.total
    assert str(source) not in hashed                            # the stat matched: not read again
    stat = source.stat()
    make_source(tmp_path, offset=5.0)                           # same size, other content ...
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))   # ... and the old modification time
    monkeypatch.setattr(checksum, "_cache", {})
    assert execute(recipe, executor="sequential").stale == {"input src changed": first.total}
    assert str(source) in hashed


def test_a_chained_recipe_rebuilds_only_the_tiles_reading_a_changed_upstream_tile(tmp_path):
    upstream = make_recipe(tmp_path, out="up", pixelbuffer=0)
    execute(upstream, executor="sequential")
    chained = _chained(tmp_path, "[5, 6]")
    first = execute(chained, executor="sequential")
    assert first.written > 0
    with Ledger(tmp_path / "up", create=False) as ledger:
        sums_before = {r.path: r.sha256 for r in ledger.output_records()}
    make_source(tmp_path, offset=5.0)           # changes upstream tile 6/10/20 (and its zoom-5 parent)
    execute(upstream, executor="sequential")    # every upstream tile is rebuilt, few change
    with Ledger(tmp_path / "up", create=False) as ledger:
        sums_after = {r.path: r.sha256 for r in ledger.output_records()}
    changed = {p for p in sums_after if sums_after[p] != sums_before.get(p)}
    assert changed == {"6/10/20.tif", "5/5/10.tif"}
    summary = execute(chained, executor="sequential")
    rebuilt = _rebuilt(tmp_path / "down")
    assert rebuilt == {TileIndex(6, 10, 20), TileIndex(5, 5, 10)}
    assert summary.stale == {"input files it reads changed": 2}
    assert summary.skipped == first.total - 2


def test_other_output_settings_are_refused_before_anything_is_written(tmp_path):
    recipe = make_recipe(tmp_path)
    execute(recipe, executor="sequential")
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    recipe.write_text(recipe.read_text().replace("dtype: float32", "dtype: float64"))
    for kwargs in ({}, {"overwrite": True, "zoom": 6}):
        with pytest.raises(OutputError, match="dtype: 'float32' on disk, 'float64' now") as info:
            execute(recipe, executor="sequential", **kwargs)
        assert "tiles of both would mix" in str(info.value)
        after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
        assert after == before  # nothing written, nothing removed: not even a manifest
    summary = execute(recipe, executor="sequential", overwrite=True)  # the whole recipe: replaced
    assert summary.ok and verify(tmp_path / "out").ok
    import rasterio

    dtypes = set()
    for path in (tmp_path / "out").glob("[0-9]*/*/*.tif"):
        with rasterio.open(path) as src:
            dtypes.add(src.dtypes[0])
    assert dtypes == {"float64"}  # never a mix


def test_an_interrupted_overwrite_is_finished_exactly_by_the_next_run(tmp_path):
    recipe = make_recipe(tmp_path)
    first = execute(recipe, executor="sequential")
    reference = tile_bytes(tmp_path / "out")
    seen = []

    def stop_after_three(event):
        seen.append(event)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(recipe, executor="sequential", overwrite=True, progress=stop_after_three)
    overwrite_run = read_manifest(tmp_path / "out")["run"]
    resumed = execute(recipe, executor="sequential")   # without --overwrite, as the message says
    assert resumed.stale == {"an interrupted --overwrite run had not redone it": first.total - 3}
    assert all(run is not None and run >= overwrite_run for run in _runs(tmp_path / "out").values())
    assert tile_bytes(tmp_path / "out") == reference
    assert execute(recipe, executor="sequential").skipped == first.total  # done: the mark is gone


SLOW_PROCESS = (PROCESS.replace("    data = src.read(1)",
                                "    import time\n    time.sleep(delay)\n    data = src.read(1)")
                .replace("fail_col: int = -1):", "fail_col: int = -1, delay: float = 0.0):"))


@pytest.mark.slow
def test_kill_9_during_overwrite_then_rerun_gives_the_uninterrupted_bytes_and_recipe(tmp_path):
    recipe = make_recipe(tmp_path, process=SLOW_PROCESS)
    execute(recipe, executor="sequential")  # gain 2.0
    recipe.write_text(recipe.read_text().replace("{gain: 2.0}", "{gain: 3.0, delay: 0.3}"))
    (tmp_path / "clean").mkdir()
    clean = make_recipe(tmp_path / "clean", process=SLOW_PROCESS, params="{gain: 3.0}")
    execute(clean, executor="sequential", overwrite=True)
    reference = tile_bytes(tmp_path / "clean" / "out")
    run = subprocess.Popen([ZIGGURAT, "execute", str(recipe), "--overwrite", "-e", "sequential", "--no-progress"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        started = wait_until(lambda: read_manifest(tmp_path / "out").get("status") == "running", 60)
        assert started
        overwrite_run = read_manifest(tmp_path / "out")["run"]
        assert wait_until(lambda: sum(r == overwrite_run for r in _runs(tmp_path / "out").values()) >= 2, 60)
        os.killpg(run.pid, signal.SIGKILL)
    finally:
        run.wait()
        run.stdout.close()
        run.stderr.close()
    recipe.write_text(recipe.read_text().replace("delay: 0.3", "delay: 0.0"))
    resumed = execute(recipe, executor="sequential")
    assert sum(resumed.stale.values()) > 0 and resumed.ok
    assert tile_bytes(tmp_path / "out") == reference
    manifest = read_manifest(tmp_path / "out")
    saved = (tmp_path / "out" / ".ziggurat" / manifest["recipe"]["given"]).read_text()
    assert "gain: 3.0" in saved                           # the provenance names the recipe on disk
    assert sum(manifest["tiles_by_run"].values()) == len(reference)
    assert verify(tmp_path / "out").ok


FLAKY = """
from pathlib import Path
from ziggurat import Empty

def execute(src, tile):
    if tile.col == 21 and Path(__file__).with_name("fail").exists():
        raise RuntimeError("kaputt")
    data = src.read(1)
    if data.mask.all():
        raise Empty
    return data
"""


def test_status_plan_and_retry_failed_agree_with_the_ledger(tmp_path):
    recipe = make_recipe(tmp_path, process=FLAKY, params="{}")
    (tmp_path / "fail").write_text("")
    first = execute(recipe, executor="sequential", keep_going=True)
    failed = {o.index for o in first.failed}
    assert failed and all(i.col == 21 for i in failed)
    report = status(tmp_path / "out")
    with Ledger(tmp_path / "out", create=False) as ledger:
        counts = ledger.process_counts()
    for z in report.zooms:
        assert (z.written, z.empty, z.failed) == (counts[z.zoom].get("written", 0), counts[z.zoom].get("empty", 0),
                                                  counts[z.zoom].get("failed", 0))
        assert z.stale == {}
    assert {f.tile for f in report.failed} == failed
    assert all("kaputt" in (f.error or "") for f in report.failed)
    plan = {z.zoom: z for z in dry_run(recipe).zooms}
    for z in report.zooms:
        assert plan[z.zoom].failed == z.failed and plan[z.zoom].done == z.written
        assert plan[z.zoom].todo == z.failed  # only the failed tiles are left to do
    cli = subprocess.run([ZIGGURAT, "status", str(tmp_path / "out"), "--failed"], capture_output=True, text=True)
    assert cli.returncode == 0 and "kaputt" in cli.stdout and "failed tiles" in cli.stdout
    (tmp_path / "fail").unlink()
    before = _runs(tmp_path / "out")
    retried = execute(recipe, executor="sequential", retry_failed=True)
    assert retried.total == len(failed) and not retried.failed
    assert _rebuilt(tmp_path / "out") == failed
    assert {i: r for i, r in _runs(tmp_path / "out").items() if i not in failed} == \
        {i: r for i, r in before.items() if i not in failed}
    # `plan` compares with the recipe and process on disk now, `status` with the saved ones: a changed
    # process makes every tile stale for `plan` only; a changed input for both
    (tmp_path / "proc.py").write_text(textwrap.dedent(FLAKY).replace("return data", "return data * 2"))
    recorded = sum(z.written + z.empty for z in status(tmp_path / "out").zooms)
    planned = dry_run(recipe).zooms
    assert {why for z in planned for why in z.stale} == {"process code changed"}
    assert sum(sum(z.stale.values()) for z in planned) == recorded
    assert status(tmp_path / "out").stale == 0
    make_source(tmp_path, offset=5.0)
    stale = status(tmp_path / "out")
    assert stale.stale == recorded and {why for z in stale.zooms for why in z.stale} == {"input src changed"}
    assert "stale: " in stale.describe()


def test_a_rebuilt_baselevel_tile_rebuilds_exactly_its_overview_ancestors(tmp_path):
    upstream = make_recipe(tmp_path, out="up", pixelbuffer=0)
    execute(upstream, executor="sequential", zoom=6)
    chained = _chained(tmp_path, "[4, 6]", "baselevels: {min: 6, lower: average}\n")
    first = execute(chained, executor="sequential")
    assert execute(chained, executor="sequential").skipped == first.total  # nothing changed
    make_source(tmp_path, offset=5.0)
    execute(upstream, executor="sequential", zoom=6)   # upstream 6/10/20 changes
    summary = execute(chained, executor="sequential")
    assert _rebuilt(tmp_path / "down") == {TileIndex(6, 10, 20), TileIndex(5, 5, 10), TileIndex(4, 2, 5)}
    assert summary.skipped == first.total - 3
    assert verify(tmp_path / "down").ok


def test_verify_and_the_manifest_say_which_run_made_which_tiles(tmp_path):
    recipe = make_recipe(tmp_path)
    execute(recipe, executor="sequential", zoom=6)
    first = read_manifest(tmp_path / "out")["run"]
    recipe.write_text(recipe.read_text().replace("{gain: 2.0}", "{gain: 3.0}"))
    execute(recipe, executor="sequential", zoom=5)       # another recipe adds zoom 5
    manifest = read_manifest(tmp_path / "out")
    by_run = manifest["tiles_by_run"]
    assert set(by_run) == {first, manifest["run"]}
    assert by_run == verify(tmp_path / "out").by_run
    assert "tiles by run" in verify(tmp_path / "out").describe()
    stale = status(tmp_path / "out")                      # zoom 6 was made with gain 2.0
    assert {z.zoom: set(z.stale) for z in stale.zooms} == {5: set(), 6: {"process_parameters changed (gain)"}}


CHANGES_ITS_INPUT = """
from pathlib import Path

def execute(src, tile):
    if tile.zoom == 6 and tile.col == 20 and tile.row == 10:   # the input is rewritten mid-run
        path = Path(__file__).with_name("src.tif")
        data = path.read_bytes()
        path.write_bytes(data[:-1] + bytes([(data[-1] + 1) % 256]))
    data = src.read(1)
    return None if data.mask.all() else data
"""


def test_an_input_changed_during_the_run_is_an_error_and_its_tiles_are_rebuilt(tmp_path):
    from ziggurat.core.errors import InputError

    recipe = make_recipe(tmp_path, process=CHANGES_ITS_INPUT, params="{}")
    with pytest.raises(InputError, match="input changed during the run: src .*rerun to rebuild"):
        execute(recipe, executor="sequential")
    assert read_manifest(tmp_path / "out")["status"] == "failed"
    plain = "def execute(src):\n    d = src.read(1)\n    return None if d.mask.all() else d\n"
    (tmp_path / "proc.py").write_text(plain)
    summary = execute(recipe, executor="sequential")
    assert summary.ok and summary.skipped == 0


def test_an_input_removed_during_a_keep_going_run_is_one_error_naming_it(tmp_path):
    from ziggurat.core.errors import InputError

    recipe = make_recipe(tmp_path, params="{}",
                         process="def execute(src):\n    d = src.read(1)\n    return None if d.mask.all() else d\n")

    def remove(event) -> None:
        (tmp_path / "src.tif").unlink(missing_ok=True)   # after the first tile: the workers keep it open

    with pytest.raises(InputError, match=r"input changed during the run: .*'src' \(.*src\.tif\) cannot be read"):
        execute(recipe, executor="sequential", keep_going=True, progress=remove)
    assert read_manifest(tmp_path / "out")["status"] == "failed"


def _ran_by_zoom(recipe, **kwargs) -> dict[int, int]:
    """Tiles a run processes (written, empty or failed: not skipped), by zoom."""
    counts: dict[int, int] = {}

    def progress(event) -> None:
        if event.outcome.ran:
            counts[event.outcome.index.zoom] = counts.get(event.outcome.index.zoom, 0) + 1

    execute(recipe, executor="sequential", progress=progress, **kwargs)
    return counts


def test_plan_predicts_what_execute_rebuilds_overviews_above_rebuilt_tiles_included(tmp_path):
    recipe = make_recipe(tmp_path, zooms="[2, 6]", params="{gain: {zoom<=6: 2.0}}",
                         extra="baselevels: {min: 6, max: 6}\n")
    execute(recipe, executor="sequential")
    assert all(z.todo == 0 for z in dry_run(recipe).zooms)
    recipe.write_text(recipe.read_text().replace("zoom<=6: 2.0", "zoom<=6: 3.0"))   # the base zoom's tiles
    planned = {z.zoom: z.todo for z in dry_run(recipe).zooms}
    stale = {z.zoom: z.stale for z in dry_run(recipe).zooms}
    assert stale[6] == {"process_parameters changed (gain)": planned[6]}
    assert stale[2] == {"a tile it is made from is rebuilt": planned[2]} and planned[2] > 0
    ran = _ran_by_zoom(recipe)
    assert planned == {z: ran.get(z, 0) for z in planned}   # every zoom, overviews included
    assert all(z.todo == 0 for z in dry_run(recipe).zooms)
