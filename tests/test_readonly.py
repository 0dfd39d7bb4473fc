"""A finished output on a read-only file system (an archive, a published dataset) can be checked:
verify, plan and status never need write access."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ziggurat.engine.run import execute

from provenance_helpers import make_recipe

BIN = Path(sys.executable).parent


def _ro_bind_possible() -> bool:
    if os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _ro_bind_possible(), reason="needs root and unshare -m for a read-only bind mount")
def test_verify_plan_and_status_work_on_a_read_only_output(tmp_path):
    recipe = make_recipe(tmp_path)
    execute(recipe, executor="sequential")
    out = tmp_path / "out"
    script = (f"mount --bind {out} {out} && mount -o remount,bind,ro {out} && "
              f"touch {out}/probe 2>/dev/null && echo WRITABLE; "
              f"{BIN / 'ziggurat'} verify {out} && {BIN / 'ziggurat'} status {out} && "
              f"{BIN / 'ziggurat'} plan {recipe} --json > /dev/null && echo ALL-OK")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert "WRITABLE" not in done.stdout, "the bind mount is not read-only"
    assert done.returncode == 0 and "ALL-OK" in done.stdout, done.stdout + done.stderr
    assert "OK:" in done.stdout and "Traceback" not in done.stderr


SLOW = """
import time
import numpy as np

def execute(src):
    time.sleep(0.3)
    data = src.read(1)
    return None if data.mask.all() else data
"""


def test_a_second_run_into_one_output_is_refused_naming_the_holder(tmp_path):
    import signal

    from ziggurat.core.errors import OutputError
    from ziggurat.records.provenance import read_manifest

    from polling import wait_until

    recipe = make_recipe(tmp_path, process=SLOW, params="{}")
    lock = tmp_path / "out" / ".ziggurat" / "lock"
    first = subprocess.Popen([str(BIN / "ziggurat"), "execute", str(recipe), "-e", "sequential", "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert wait_until(lock.exists, 60)
        with pytest.raises(OutputError, match=rf"being written by another run \(pid {first.pid} on"):
            execute(recipe, executor="sequential", overwrite=True)
        os.killpg(first.pid, signal.SIGKILL)       # the holder is gone: its lock is stale
    finally:
        first.wait()
        first.stdout.close()
        first.stderr.close()
    assert lock.exists()
    summary = execute(recipe, executor="sequential")
    assert summary.ok and not lock.exists()        # taken over, and released at the end
    assert read_manifest(tmp_path / "out")["status"] == "succeeded"


@pytest.mark.skipif(not _ro_bind_possible(), reason="needs root and unshare -m for a tiny tmpfs")
def test_a_full_disk_under_the_ledger_is_one_clear_error(tmp_path):
    folder = tmp_path / "full"
    folder.mkdir()
    code = textwrap.dedent(f"""
        import os, sys
        from ziggurat.core.errors import OutputError
        from ziggurat.core.grid import TileIndex
        from ziggurat.records.ledger import Ledger, TileRecord
        ledger = Ledger({str(folder)!r})
        with open({str(folder / "filler")!r}, "wb") as fh:      # fill the file system
            try:
                while True:
                    fh.write(b"x" * 65536)
            except OSError:
                pass
        try:
            for n in range(20000):
                ledger.record_outputs([TileRecord(f"9/{{n}}/0.tif", "0" * 64, TileIndex(9, n, 0), "r")])
            ledger.commit()
        except OutputError as exc:
            print("CLEAR:", exc)
            sys.exit(0)
        print("no error")
    """)
    script = f"mount -t tmpfs -o size=256k tmpfs {folder} && {sys.executable} -c {shlex.quote(code)}"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "CLEAR: cannot write the tile ledger" in done.stdout and "ledger.sqlite" in done.stdout
    assert "Traceback" not in done.stderr


def _run_on_a_tiny_disk(out: Path, recipe: Path, size: str, opener: str, pattern: str) -> subprocess.CompletedProcess:
    """Run `recipe` with `out` on a tmpfs of `size`, then open every file matching `pattern` left
    there with `opener` (``rasterio`` or ``fiona``); prints rc=N and ALL-TILES-READ."""
    check = (f"import {opener}, sys\nfor p in sys.argv[1:]:\n    with {opener}.open(p) as src:\n"
             f"        {'src.read()' if opener == 'rasterio' else 'list(src)'}\nprint('ALL-TILES-READ')")
    script = (f"mount -t tmpfs -o size={size} tmpfs {out} && {BIN / 'ziggurat'} execute {recipe} -e sequential "
              f"--no-progress; echo rc=$?; {sys.executable} -c {shlex.quote(check)} $(find {out} -name '{pattern}')")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not _ro_bind_possible(), reason="needs root and unshare -m for a tiny tmpfs")
def test_a_full_output_disk_names_the_tile_and_keeps_no_broken_tile(tmp_path):
    recipe = make_recipe(tmp_path, zooms="[4, 7]")
    out = tmp_path / "out"
    out.mkdir()
    done = _run_on_a_tiny_disk(out, recipe, "136k", "rasterio", "*.tif")
    assert "rc=1" in done.stdout, done.stdout + done.stderr
    assert "cannot write" in done.stderr and str(out) in done.stderr
    assert "cannot read" not in done.stderr and "Traceback" not in done.stderr   # not blamed on the input
    assert "ALL-TILES-READ" in done.stdout, done.stderr                           # no broken tile in place


@pytest.mark.skipif(not _ro_bind_possible(), reason="needs root and unshare -m for a tiny tmpfs")
def test_a_full_disk_under_vector_tiles_names_the_tile_and_keeps_no_broken_tile(tmp_path):
    (tmp_path / "vec.py").write_text(textwrap.dedent("""
        import shapely

        def execute(tile):
            b = tile.bounds
            w, h = (b.right - b.left) / 40, (b.top - b.bottom) / 40
            return [{"geometry": shapely.box(b.left + i * w, b.bottom + j * h, b.left + (i + 1) * w,
                                             b.bottom + (j + 1) * h),
                     "properties": {"name": f"cell {i} {j} of tile {tile.zoom} {tile.row} {tile.col}"}}
                    for i in range(40) for j in range(40)]
    """))
    out = tmp_path / "out"
    out.mkdir()
    recipe = tmp_path / "vec.yaml"
    recipe.write_text(f"process: vec.py\nzoom_levels: [3, 5]\npyramid: {{grid: geodetic}}\nbounds: [0, 0, 40, 40]\n"
                      f"output: {{path: {out}, format: GeoJSON, "
                      "schema: {geometry: Polygon, properties: {name: str}}}\n")
    done = _run_on_a_tiny_disk(out, recipe, "400k", "fiona", "*.geojson")
    assert "rc=1" in done.stdout, done.stdout + done.stderr
    assert "cannot write" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "ALL-TILES-READ" in done.stdout, done.stdout + done.stderr   # no broken tile in place
