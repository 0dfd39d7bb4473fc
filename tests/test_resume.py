"""kill -9 of a whole run, then the same command again: the output is byte-identical to an
uninterrupted run, no temporary file is left, and only the unrecorded tiles run again."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyramid_helpers import kill_9_after, make_recipe, recorded_tiles

ZIGGURAT = Path(sys.executable).with_name("ziggurat")
SLOW = "import time\n\ndef execute(src):\n    time.sleep(0.01)\n"


def _command(recipe: Path) -> list[str]:
    return [str(ZIGGURAT), "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"]


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

    kill_9_after(_command(recipe), out, 20)
    recorded = recorded_tiles(out)
    assert 20 <= recorded < total

    again = subprocess.run(_command(recipe), capture_output=True, text=True, check=True)
    written2, empty2, skipped2 = _counts(again.stdout)
    assert skipped2 == recorded
    assert written2 + empty2 == total - recorded

    assert _files(out) == _files(ref)
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".tmp-") or p.name.endswith("-wal")
                 or (p.parent.name == "tmp" and p.parent.parent.name == ".ziggurat")]
    assert leftovers == []
    assert recorded_tiles(out) == total
