"""A full output file system: a clear error naming the path, no broken tile in place, and a
resume after space is freed gives the bytes of a clean run. Runs in a private mount namespace
(`unshare -m`) on a tiny tmpfs; skipped where that is not permitted."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

CHECK = """
import glob, sys, rasterio
bad = 0
for p in glob.glob(sys.argv[1] + "/hillshade/[0-9]*/*/*.tif"):
    try:
        with rasterio.open(p) as s:
            s.read()
    except Exception as exc:
        bad += 1
        print("BROKEN", p, exc)
print("broken", bad)
"""

SCRIPT = """
set -e
mount -t tmpfs -o size={size} tmpfs {mnt}
set +e
ZIGGURAT_OUTPUT={mnt} {ziggurat} execute {recipe} -e sequential > {mnt}.log1 2>&1
echo "rc1=$?" >> {mnt}.log1
{python} -c "$CHECK" {mnt} >> {mnt}.log1 2>&1
mount -o remount,size=8m {mnt}
ZIGGURAT_OUTPUT={mnt} {ziggurat} execute {recipe} -e sequential > {mnt}.log2 2>&1
echo "rc2=$?" >> {mnt}.log2
cd {mnt}/hillshade && find . -path ./.ziggurat -prune -o -name '*.tif' -print | sort | xargs sha256sum > {mnt}.sums
"""


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -m and mount (root in a container)")
@pytest.mark.parametrize("size", ["60k", "150k", "250k"])
def test_a_full_disk_keeps_no_broken_tile_and_a_resume_gives_clean_bytes(tmp_path, size):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    ziggurat = Path(sys.executable).parent / "ziggurat"
    recipe = REPO / "recipes" / "hillshade.yaml"
    script = SCRIPT.format(size=size, mnt=mnt, python=sys.executable, ziggurat=ziggurat, recipe=recipe)
    subprocess.run(["unshare", "-m", "sh", "-c", script], check=True, env={**os.environ, "CHECK": CHECK}, timeout=300)
    first = Path(f"{mnt}.log1").read_text()
    assert "rc1=1" in first and "broken 0" in first, first
    assert "Traceback" not in first, first
    assert any(why in first for why in ("No space left on device", "disk is full", "disk I/O error")), first
    assert str(mnt) in first   # the message names the path
    second = Path(f"{mnt}.log2").read_text()
    assert "rc2=0" in second, second
    clean = tmp_path / "clean"   # the same recipe on a roomy disk: the same tile bytes
    subprocess.run([str(ziggurat), "execute", str(recipe), "-e", "sequential"], check=True, capture_output=True,
                   env={**os.environ, "ZIGGURAT_OUTPUT": str(clean)})
    expected = sorted(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.relative_to(clean / 'hillshade')}"
                      for p in (clean / "hillshade").glob("[0-9]*/*/*.tif"))
    assert sorted(Path(f"{mnt}.sums").read_text().splitlines()) == expected


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -m and mount (root in a container)")
def test_a_full_dev_shm_is_one_clear_error_for_processes_and_no_problem_for_threads(tmp_path):
    ziggurat = Path(sys.executable).parent / "ziggurat"
    recipe = REPO / "recipes" / "hillshade.yaml"
    script = (f"mount -t tmpfs -o size=64k tmpfs /dev/shm && (dd if=/dev/zero of=/dev/shm/fill bs=4k 2>/dev/null; "
              f"ZIGGURAT_OUTPUT={tmp_path / 'a'} {ziggurat} execute {recipe} -e processes -w 2 > {tmp_path}/p.log 2>&1;"
              f" echo rc=$? >> {tmp_path}/p.log; ZIGGURAT_OUTPUT={tmp_path / 'b'} {ziggurat} execute {recipe} "
              f"-e threads > {tmp_path}/t.log 2>&1; echo rc=$? >> {tmp_path}/t.log)")
    subprocess.run(["unshare", "-m", "sh", "-c", script], check=True, timeout=300)
    processes = (tmp_path / "p.log").read_text()
    assert "rc=1" in processes and "Traceback" not in processes, processes
    assert "shared memory /dev/shm is full" in processes and "-e threads" in processes
    threads = (tmp_path / "t.log").read_text()
    assert "rc=0" in threads and "11 tiles written" in threads, threads
