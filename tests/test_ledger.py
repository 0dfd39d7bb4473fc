"""The tile ledger: outcomes of every tile (empty ones too) decide what continue mode skips."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

from ziggurat.audit.checks import verify
from ziggurat.engine.run import execute
from ziggurat.records.ledger import Ledger, ledger_path
from ziggurat.records.provenance import read_manifest

from pyramid_helpers import make_recipe, tiles_on_disk


def _counting_recipe(tmp_path):
    """The identity process on a source with empty tiles around it, counting its calls."""
    recipe, grid = make_recipe(tmp_path, zooms=(5, 6), bounds=[-127.0, 52.0, -113.0, 64.0])
    calls = tmp_path / "calls.txt"
    proc = tmp_path / "proc.py"
    proc.write_text(proc.read_text().replace(
        "def execute(src):",
        f"def execute(src, tile):\n    open({str(calls)!r}, 'a').write(f'{{tile.zoom}}/{{tile.row}}/{{tile.col}}\\n')"))
    return recipe, calls


def _calls(path):
    return path.read_text().split() if path.exists() else []


def test_empty_tiles_are_not_processed_again(tmp_path):
    recipe, calls = _counting_recipe(tmp_path)
    first = execute(recipe, executor="sequential")
    assert first.empty > 0 and first.written > 0
    assert len(_calls(calls)) == first.total
    calls.unlink()
    second = execute(recipe, executor="processes", workers=2)
    assert _calls(calls) == [] and second.skipped == second.total == first.total
    with Ledger(tmp_path / "out", create=False) as ledger:
        counts = ledger.process_counts()
    assert sum(c.get("empty", 0) for c in counts.values()) == first.empty
    assert sum(c.get("written", 0) for c in counts.values()) == first.written


def test_overwrite_redoes_the_planned_tiles_and_replaces_their_rows(tmp_path):
    recipe, calls = _counting_recipe(tmp_path)
    execute(recipe, executor="sequential")
    calls.unlink()
    again = execute(recipe, executor="threads", workers=2, zoom=6, overwrite=True)
    assert sorted(_calls(calls)) == sorted(f"6/{r}/{c}" for z, r, c in _planned(recipe, 6))
    run = read_manifest(tmp_path / "out")["run"]
    with sqlite3.connect(ledger_path(tmp_path / "out")) as db:
        runs = dict(db.execute("SELECT zoom, group_concat(DISTINCT run) FROM process_tiles GROUP BY zoom"))
    assert runs[6] == run and runs[5] != run and again.skipped == 0


def _planned(recipe, zoom):
    from ziggurat.engine.run import load, plan

    return [t.index for t in plan(load(recipe), zoom=zoom).tiles()]


def test_a_tile_file_without_a_ledger_row_is_redone_with_the_same_bytes(tmp_path):
    recipe, calls = _counting_recipe(tmp_path)
    execute(recipe, executor="sequential")
    out = tmp_path / "out"
    z, r, c = 6, *tiles_on_disk(out)[6][0]
    before = (out / f"{z}/{r}/{c}.tif").read_bytes()
    with sqlite3.connect(ledger_path(out)) as db:  # as if killed between the rename and the commit
        db.execute("DELETE FROM process_tiles WHERE zoom=? AND row=? AND col=?", (z, r, c))
    calls.unlink()
    summary = execute(recipe, executor="sequential")
    assert _calls(calls) == [f"{z}/{r}/{c}"] and summary.written == 1
    assert (out / f"{z}/{r}/{c}.tif").read_bytes() == before
    assert verify(out).ok


def test_an_output_without_a_ledger_adopts_its_tiles(tmp_path):
    recipe, calls = _counting_recipe(tmp_path)
    first = execute(recipe, executor="sequential")
    out = tmp_path / "out"
    ledger_path(out).unlink()  # an output written before the ledger existed
    calls.unlink()
    second = execute(recipe, executor="sequential")
    # tiles with files are adopted (skipped, recorded with their checksums); empty ones run again
    assert second.skipped == first.written and len(_calls(calls)) == first.empty
    calls.unlink()
    third = execute(recipe, executor="sequential")
    assert _calls(calls) == [] and third.skipped == first.total
    assert verify(out).ok


def test_sweeping_temporaries_respects_other_hosts(tmp_path):
    """On a cluster, another host's PID means nothing here: its temporaries go only when old."""
    from ziggurat.io.storage.atomic import FOREIGN_TMP_AGE, HOST, sweep_tmp

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    folder = tmp_path / "tmp"
    folder.mkdir()
    mine_dead = folder / f"{dead}-{HOST}-1-aaaa.tif"        # this host, writer gone: swept
    old_style = folder / f"{dead}-1-bbbb.tif"               # pre-host names count as local
    live = folder / f"{os.getpid()}-{HOST}-1-cccc.tif"      # this process: kept while it runs
    foreign = folder / f"{dead}-otherhost-1-dddd.tif"       # another host, recent: kept
    foreign_old = folder / f"{dead}-otherhost-1-eeee.tif"   # another host, a day old: swept
    for path in (mine_dead, old_style, live, foreign, foreign_old):
        path.write_bytes(b"partial")
    past = time.time() - FOREIGN_TMP_AGE - 60
    os.utime(foreign_old, (past, past))
    assert sweep_tmp(folder) == 3
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, foreign.name])
