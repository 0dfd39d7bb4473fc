"""kill -9 of a whole run, then the same command again: the output is byte-identical to an
uninterrupted run, no temporary file is left, and only the unrecorded tiles run again."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from ziggurat.records.ledger import ledger_path

from pyramid_helpers import make_recipe

ZIGGURAT = Path(sys.executable).with_name("ziggurat")
SLOW = "import time\n\ndef execute(src):\n    time.sleep(0.01)\n"


def _command(recipe: Path) -> list[str]:
    return [str(ZIGGURAT), "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"]


def _recorded(out: Path) -> int:
    try:
        with closing(sqlite3.connect(f"file:{ledger_path(out)}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM process_tiles WHERE status IN ('written', 'empty')"
                              ).fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.glob("*/*/*.tif")}


def _counts(stdout: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) tiles written, (\d+) empty, (\d+) skipped", stdout)
    assert m, stdout
    return int(m[1]), int(m[2]), int(m[3])


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_uninterrupted_output(tmp_path):
    recipe, _ = make_recipe(tmp_path, zooms=(5, 7), tile_size=64)
    reference, _ = make_recipe(tmp_path, zooms=(5, 7), tile_size=64, out="ref")
    proc = tmp_path / "proc.py"
    proc.write_text(proc.read_text().replace("def execute(src):\n", SLOW))
    out, ref = tmp_path / "out", tmp_path / "ref"

    done = subprocess.run(_command(reference), capture_output=True, text=True, check=True)
    written, empty, skipped = _counts(done.stdout)
    total = written + empty
    assert skipped == 0 and total >= 300

    run = subprocess.Popen(_command(recipe), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _recorded(out) < 20 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert run.poll() is None, "the run ended before it could be killed"
        os.killpg(run.pid, signal.SIGKILL)
    finally:
        run.wait()
        run.stdout.close()
        run.stderr.close()
    recorded = _recorded(out)
    assert 20 <= recorded < total

    again = subprocess.run(_command(recipe), capture_output=True, text=True, check=True)
    written2, empty2, skipped2 = _counts(again.stdout)
    assert skipped2 == recorded
    assert written2 + empty2 == total - recorded

    assert _files(out) == _files(ref)
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".tmp-") or p.name.endswith("-wal")
                 or (p.parent.name == "tmp" and p.parent.parent.name == ".ziggurat")]
    assert leftovers == []
    assert _recorded(out) == total
