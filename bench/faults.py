"""Fault runs repeated: how often does each end cleanly? Prints counts; asserts nothing.

- segfault: one tile's process kills its worker with SIGSEGV (`-e processes -w 2 --retries 1
  --keep-going`): clean = exit 1, the tile named with WorkerDied, no traceback;
- sigint / sigterm: Ctrl-C to the process group, SIGTERM to the run, at a random moment: clean =
  exit 130, no traceback, no shared-memory segment and no process of the run left (a signal that
  lands while the interpreter starts, before any of ziggurat runs, ends it as the OS does, silently:
  counted clean, and said how often);
- kill9: SIGKILL of the run's process only: clean = no process of the run left, then a rerun
  exits 0 and `ziggurat verify` is OK.

Usage:  python bench/faults.py [--repeat 20] [--segfaults 30]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

EXE = str(Path(sys.executable).with_name("ziggurat"))
#: trials whose signal came before the interpreter ran any of ziggurat (counted as clean: nothing began)
EARLY: dict[str, int] = {}
PROCESS = """
import os, signal, time
from ziggurat import Empty

def execute(src, tile, crash: bool = False, delay: float = 0.0):
    if crash and tile.col % 7 == 3 and tile.row % 5 == 1:
        os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(delay)
    data = src.read(1)
    if data.mask.all():
        raise Empty
    return data
"""


def _setup(folder: Path, params: str) -> Path:
    import rasterio
    from affine import Affine

    res = 180 / 2**8 / 256
    with rasterio.open(folder / "src.tif", "w", driver="GTiff", width=2048, height=1024, count=1, dtype="float32",
                       crs="EPSG:4326", transform=Affine(res, 0, 0, 0, -res, 45), nodata=-9999) as dst:
        dst.write(np.arange(2048 * 1024, dtype="float32").reshape(1, 1024, 2048))
    (folder / "proc.py").write_text(PROCESS)
    recipe = folder / "recipe.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        process: proc.py
        zoom_levels: 8
        pyramid: {{grid: geodetic}}
        input: {{src: src.tif}}
        output: {{path: out, dtype: float32, nodata: -9999}}
        process_parameters: {params}
        """))
    return recipe


def _session(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[1] == str(sid) and not line.split()[2].startswith("Z")]


def _gone(sid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _session(sid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _cleanup(sid: int) -> None:
    for line in _session(sid):
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def segfault(folder: Path) -> bool:
    recipe = _setup(folder, "{crash: true}")
    run = subprocess.Popen([EXE, "execute", str(recipe), "-e", "processes", "-w", "2", "--retries", "1",
                            "--keep-going", "--no-progress", "--overwrite"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = run.communicate(timeout=120)
    finally:
        _cleanup(run.pid)
    return run.returncode == 1 and "WorkerDied" in err and "Traceback" not in err


def interrupt(folder: Path, how: str) -> bool:
    recipe = _setup(folder, "{delay: 0.05}")
    run = subprocess.Popen([EXE, "execute", str(recipe), "-e", "processes", "-w", "2", "--write-in", "parent",
                            "--no-progress", "--overwrite"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    time.sleep(random.uniform(0.3, 2.5))
    try:
        if how == "sigint":
            os.killpg(run.pid, signal.SIGINT)
        else:
            run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
        gone = _gone(run.pid)   # the pool's processes end after the parent: then look for leftovers
        segments = [p for p in Path("/dev/shm").iterdir() if p.name.startswith(f"ziggurat-{run.pid}-")]
        signal_no = signal.SIGINT if how == "sigint" else signal.SIGTERM
        # the signal before the interpreter ran any of ziggurat (start-up): the OS ends it, nothing begun
        early = run.returncode == -signal_no and not err.strip() and not _began(folder)
        if early:
            EARLY[how] = EARLY.get(how, 0) + 1
        clean = (run.returncode in (130, 0) or early) and "Traceback" not in err and not segments and gone
        if not clean:
            print(f"  {how}: exit {run.returncode}, {len(segments)} shared-memory segments left, "
                  f"{'no process' if gone else _session(run.pid)} left: {err.strip()[-1500:]}")
        return clean
    finally:
        _cleanup(run.pid)


def _began(folder: Path) -> bool:
    """Whether the run got as far as its output (then a death by the signal is not clean)."""
    return (folder / "out").exists()


def kill9(folder: Path) -> bool:
    recipe = _setup(folder, "{delay: 0.05}")
    run = subprocess.Popen([EXE, "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(random.uniform(1.0, 2.5))   # past the forkserver's start (see the README)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    try:
        if not _gone(run.pid):
            print(f"  kill9: processes of the run still there 10 s after: {_session(run.pid)}")
            return False
    finally:
        _cleanup(run.pid)
    again = subprocess.run([EXE, "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    check = subprocess.run([EXE, "verify", str(folder / "out")], capture_output=True, text=True, timeout=300)
    if again.returncode or check.returncode:
        print(f"  kill9: rerun exit {again.returncode}: {again.stderr.strip()[-500:]}\n"
              f"  verify exit {check.returncode}: {check.stdout.strip()[-800:]}")
    return again.returncode == 0 and check.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--segfaults", type=int, default=30)
    args = parser.parse_args()
    random.seed(1)
    cases = [("segfault", args.segfaults, segfault), ("sigint", args.repeat, lambda f: interrupt(f, "sigint")),
             ("sigterm", args.repeat, lambda f: interrupt(f, "sigterm")), ("kill9", args.repeat, kill9)]
    for name, count, case in cases:
        clean = hangs = 0
        t0 = time.perf_counter()
        for _ in range(count):
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    clean += bool(case(Path(tmp)))
                except subprocess.TimeoutExpired as exc:  # a hang: not clean (and stopped here)
                    hangs += 1
                    print(f"{name}: hung ({exc.cmd[1:3]}): stopped after {exc.timeout} s")
        early = f", {EARLY[name]} of them ended by the signal during start-up" if EARLY.get(name) else ""
        print(f"{name:<9} {clean:>3} of {count:<3} clean ({100 * clean / max(count, 1):.0f} %{early}), {hangs} hung, "
              f"in {time.perf_counter() - t0:.0f} s (target 100 %)", flush=True)


if __name__ == "__main__":
    main()
