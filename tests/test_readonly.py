"""A finished output on a read-only file system (an archive, a published dataset) can be checked:
verify, plan and status never need write access."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ziggurat.engine import execute

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
