"""The process pool: real worker processes, real shared memory, real signals."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from ziggurat import Grid, ProcessError
from ziggurat.engine.run import execute
from ziggurat.executors.shm import PREFIX, SlotPool, sweep_stale

from conftest import position_raster, read_tile
from polling import session_processes, wait_until

Z = 6
RES = 180 / 2**Z / 256
ZIGGURAT = str(Path(sys.executable).parent / "ziggurat")


def _source(tmp_path: Path, size: int = 512) -> tuple[Path, np.ndarray]:
    t = Grid.from_name("geodetic").tile(Z, 10, 20)
    path = tmp_path / "src.tif"
    data = position_raster(path, left=t.bounds.left, top=t.bounds.top, res=RES, width=size, height=size)
    return path, data[0]


def _recipe(write_recipe, tmp_path: Path, src: Path, out: Path, process: str, *, output_extra: str = "",
            metatiling: int = 1, params: str = "{}") -> Path:
    return write_recipe(f"""
        process: proc.py
        zoom_levels: {Z}
        pyramid: {{grid: geodetic, metatiling: {metatiling}, pixelbuffer: 1}}
        input: {{src: {src}}}
        output: {{path: {out}, dtype: float32, nodata: -9999{output_extra}}}
        process_parameters: {params}
        """, process=process, name=f"{out.name}.yaml")


IDENTITY = "def execute(src):\n    return src.read(1)\n"


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.tif"))}


def test_all_executors_and_write_modes_give_identical_bytes(tmp_path, write_recipe):
    src, _ = _source(tmp_path)
    runs = {"sequential": dict(executor="sequential"), "threads": dict(executor="threads", workers=2),
            "processes": dict(executor="processes", workers=2),
            "parent": dict(executor="processes", workers=2, write_in="parent")}
    trees = {}
    for name, kwargs in runs.items():
        out = tmp_path / name
        summary = execute(_recipe(write_recipe, tmp_path, src, out, IDENTITY, metatiling=2), **kwargs)
        assert summary.output_tiles == 4, name
        trees[name] = _tree_bytes(out)
    assert len(trees["sequential"]) == 4
    for name, tree in trees.items():
        assert tree == trees["sequential"], name


def test_the_parent_writer_gets_neighbouring_tiles_computed_in_runs(tmp_path, write_recipe, monkeypatch):
    """Where the parent writes (a single file), workers still get runs of neighbouring tiles, so
    the source blocks two neighbours share are decoded once; each tile of a run comes back in
    its own shared-memory slot, the file equals a sequential run's, and every slot is free after."""
    from ziggurat.executors import pool as pool_module

    src, _ = _source(tmp_path, size=1024)
    handed: list[int] = []
    submit = pool_module._Flight.submit

    def counting(self, task):   # noqa: ANN001  (the pool's private task)
        handed.append(len(task.run) or 1)
        return submit(self, task)

    monkeypatch.setattr(pool_module._Flight, "submit", counting)
    single = tmp_path / "single.tif"
    recipe = _recipe(write_recipe, tmp_path, src, single, IDENTITY)
    summary = execute(recipe, executor="processes", workers=2)
    assert summary.output_tiles == 16 and sum(handed) == 16
    assert max(handed) == pool_module.PARENT_RUN and len(handed) < 16
    reference = tmp_path / "reference.tif"
    execute(_recipe(write_recipe, tmp_path, src, reference, IDENTITY), executor="sequential")
    with rasterio.open(single) as got, rasterio.open(reference) as want:
        np.testing.assert_array_equal(got.read(), want.read())
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith(f"{PREFIX}{os.getpid()}-")]


def test_parent_writes_go_through_shared_memory_and_are_unlinked(tmp_path, write_recipe):
    src, data = _source(tmp_path)
    out = tmp_path / "out"
    execute(_recipe(write_recipe, tmp_path, src, out, IDENTITY), executor="processes", workers=2,
            write_in="parent")
    arr, _ = read_tile(out / str(Z) / "11" / "21.tif")
    np.testing.assert_array_equal(arr[0], data[256:, 256:])
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith(f"{PREFIX}{os.getpid()}-")]


def test_stale_segments_of_a_dead_run_are_swept(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    stale = Path("/dev/shm") / f"{PREFIX}{dead_pid}-deadbeef-0"
    stale.write_bytes(b"x" * 10)
    mine = SlotPool.allocate(1024, 1)
    try:
        assert sweep_stale() >= 1
        assert not stale.exists()
        assert all((Path("/dev/shm") / n).exists() for n in mine.spec.names)  # live run untouched
    finally:
        mine.close()
    assert not any((Path("/dev/shm") / n).exists() for n in mine.spec.names)


KILL_ONCE = """
import os, signal
from pathlib import Path

def execute(src, tile, marker):
    if (tile.row, tile.col) == (11, 20) and not Path(marker).exists():
        Path(marker).write_text("died once")
        os.kill(os.getpid(), signal.SIGKILL)
    return src.read(1)
"""

KILL_ALWAYS = """
import os, signal

def execute(src, tile):
    if (tile.row, tile.col) == (11, 20):
        os.kill(os.getpid(), signal.SIGKILL)
    return src.read(1)
"""


@pytest.mark.parametrize("write_in", ["workers", "parent"])
def test_a_worker_killed_once_is_recovered(tmp_path, write_recipe, write_in):
    src, data = _source(tmp_path)
    out = tmp_path / f"out-{write_in}"
    recipe = _recipe(write_recipe, tmp_path, src, out, KILL_ONCE,
                     params=f"{{marker: {tmp_path / ('marker-' + write_in)}}}")
    summary = execute(recipe, executor="processes", workers=2, write_in=write_in)
    assert (tmp_path / f"marker-{write_in}").exists()  # the worker really died once
    assert summary.ok and summary.output_tiles == 4
    arr, _ = read_tile(out / str(Z) / "11" / "20.tif")
    np.testing.assert_array_equal(arr[0], data[256:, :256])


def test_a_tile_that_always_kills_its_worker_is_reported(tmp_path, write_recipe):
    src, _ = _source(tmp_path)
    out = tmp_path / "out"
    recipe = _recipe(write_recipe, tmp_path, src, out, KILL_ALWAYS)
    summary = execute(recipe, executor="processes", workers=2, retries=1, keep_going=True)
    assert [tuple(o.index) for o in summary.failed] == [(Z, 11, 20)]
    failed = summary.failed[0]
    assert failed.exc_type == "WorkerDied" and "2 time(s)" in failed.error
    # the signal when the forkserver reports it; at times it has no status to give (CPython's 255)
    assert "killed by SIGKILL" in failed.error or "died without an exit status" in failed.error
    assert summary.output_tiles == 3  # innocent tiles in flight at the crash still finished
    with pytest.raises(ProcessError, match=r"zoom 6, row 11, col 20.*WorkerDied"):
        execute(recipe, executor="processes", workers=2, retries=0, overwrite=True)


def test_a_raising_process_names_the_tile_under_the_pool(tmp_path, write_recipe):
    src, _ = _source(tmp_path)
    boom = ("def execute(src, tile):\n    if tile.col == 21:\n        raise KeyError('no such band')\n"
            "    return src.read(1)\n")
    with pytest.raises(ProcessError) as info:
        execute(_recipe(write_recipe, tmp_path, src, tmp_path / "out", boom), executor="processes", workers=2)
    assert info.value.tile[2] == 21 and "KeyError" in str(info.value) and "proc.py" in info.value.traceback


SLOW = """
import time

def execute(src, delay):
    time.sleep(delay)
    return src.read(1)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_cancel_exits_130_cleanly(tmp_path, write_recipe, how):
    src, _ = _source(tmp_path, size=2048)  # 64 tiles
    out = tmp_path / "out"
    recipe = _recipe(write_recipe, tmp_path, src, out, SLOW, params="{delay: 0.4}")
    proc = subprocess.Popen([ZIGGURAT, "execute", str(recipe), "-e", "processes", "-w", "2",
                             "--write-in", "parent", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while not list(out.rglob("*.tif")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(out.rglob("*.tif")), "no tile was written before the deadline"
    sent = time.monotonic()
    proc.send_signal(how)
    _, err = proc.communicate(timeout=30)  # a hang guard; the latency is measured in bench/
    latency = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert "rerun" in err and "Traceback" not in err
    assert wait_until(lambda: session_processes(proc.pid) == [])                          # no orphan workers
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith(f"{PREFIX}{proc.pid}-")]
    assert not list(out.rglob(".tmp-*"))                               # no partial tiles
    for tile in out.rglob("*.tif"):
        with rasterio.open(tile) as ds:
            ds.read()                                                  # every tile is complete
    print(f"cancel latency {latency:.2f} s")


def _unshare_available() -> bool:
    if os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=2m tmpfs /dev/shm"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_available(), reason="needs root and mount namespaces (unshare -m)")
@pytest.mark.parametrize("dtype,metatiling", [("uint8", 1), ("float64", 2)])
def test_a_tiny_shared_memory_filesystem_never_kills_the_run(tmp_path, write_recipe, dtype, metatiling):
    """2 MiB /dev/shm: a few slots (uint8) or none at all (float64 metatiles of 2 MiB)."""
    src, _ = _source(tmp_path)
    out = tmp_path / "out"
    recipe = _recipe(write_recipe, tmp_path, src, out, IDENTITY, metatiling=metatiling)
    text = recipe.read_text().replace("dtype: float32", f"dtype: {dtype}")
    if dtype == "uint8":
        text = text.replace("nodata: -9999", "nodata: 0")
    recipe.write_text(text)
    cmd = (f"mount -t tmpfs -o size=2m tmpfs /dev/shm && exec {ZIGGURAT} execute {recipe} "
           "-e processes -w 2 --write-in parent --no-progress")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}"
    assert proc.returncode == 0, proc.stderr
    written = "4 tiles written" if metatiling == 1 else "1 process tiles written (4 output tiles)"
    assert written in proc.stdout
    if dtype == "float64":
        assert "pickled" in proc.stderr  # no slot fits: it said so and carried on
    reference = tmp_path / "ref"
    ref_recipe = tmp_path / "ref.yaml"
    ref_recipe.write_text(text.replace(str(out), str(reference)))
    execute(ref_recipe, executor="sequential")
    assert _tree_bytes(out) == _tree_bytes(reference)


@pytest.mark.skipif(not _unshare_available(), reason="needs root and mount namespaces (unshare -m)")
def test_slot_allocation_on_a_full_filesystem_fails_cleanly():
    code = ("from ziggurat.executors.shm import SlotPool\n"
            "pool = SlotPool.allocate(512 * 1024, 10)\n"
            "for k in range(len(pool)):\n"
            "    pool.view(k, (512 * 1024,), 'uint8')[:] = 7\n"
            "print(len(pool))\n"
            "pool.close()\n")
    cmd = f"mount -t tmpfs -o size=2m tmpfs /dev/shm && exec {sys.executable} -c \"{code}\""
    proc = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 0 < int(proc.stdout) < 10 and "short" in proc.stderr


def test_single_file_output_equals_the_tile_directory(tmp_path, write_recipe):
    src, data = _source(tmp_path, size=1024)
    tiles = tmp_path / "tiles"
    execute(_recipe(write_recipe, tmp_path, src, tiles, IDENTITY), executor="sequential")
    grid = Grid.from_name("geodetic")
    first, last = grid.tile(Z, 10, 20).bounds, grid.tile(Z, 13, 23).bounds
    bounds = (first.left + 0.3, last.bottom + 0.2, last.right - 0.1, first.top - 0.1)  # 16 tiles, partial
    for executor in ("processes", "threads", "sequential"):
        single = tmp_path / f"single-{executor}.tif"
        summary = execute(_recipe(write_recipe, tmp_path, src, single, IDENTITY, metatiling=2,
                                  output_extra=", cog: true"), executor=executor, workers=2, bounds=bounds)
        assert summary.ok
        with rasterio.open(single) as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert ds.res == (RES, RES)
            # exactly the requested bounds, snapped outward to whole pixels
            assert ds.bounds.left <= bounds[0] < ds.bounds.left + RES
            assert ds.bounds.top >= bounds[3] > ds.bounds.top - RES
            assert ds.bounds.right >= bounds[2] > ds.bounds.right - RES
            assert ds.bounds.bottom <= bounds[1] < ds.bounds.bottom + RES
            arr = ds.read(1)
            top_left = grid.tile(Z, 10, 20).bounds
            r0 = round((top_left.top - ds.bounds.top) / RES)
            c0 = round((ds.bounds.left - top_left.left) / RES)
            np.testing.assert_array_equal(arr, data[r0:r0 + ds.height, c0:c0 + ds.width])
            assert ds.overviews(1)  # 1024+ px: the COG has overviews
    assert not list(tmp_path.glob(".tmp-*"))


def test_single_file_output_keeps_the_old_file_when_the_run_fails(tmp_path, write_recipe):
    src, _ = _source(tmp_path)
    single = tmp_path / "single.tif"
    execute(_recipe(write_recipe, tmp_path, src, single, IDENTITY), executor="sequential")
    before = single.read_bytes()
    boom = "def execute(src, tile):\n    if tile.col == 21:\n        raise ValueError('x')\n    return src.read(1)\n"
    with pytest.raises(ProcessError):
        execute(_recipe(write_recipe, tmp_path, src, single, boom), executor="processes", overwrite=True)
    assert single.read_bytes() == before and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.slow
def test_a_script_without_a_main_guard_runs_once(tmp_path, write_recipe):
    """Workers must not re-run the caller's script (forkserver re-imports __main__ by default)."""
    src, _ = _source(tmp_path)
    recipe = _recipe(write_recipe, tmp_path, src, tmp_path / "out", IDENTITY)
    marker = tmp_path / "script-ran.txt"
    script = tmp_path / "script.py"
    script.write_text(
        "from ziggurat.engine.run import execute\n"
        f"with open({str(marker)!r}, 'a') as f:\n"
        "    f.write('ran\\n')\n"
        f"summary = execute({str(recipe)!r}, executor='processes', workers=2)\n"
        "print(summary.output_tiles)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "4"
    assert marker.read_text() == "ran\n"


FLAKY_READ = """
from pathlib import Path
from rasterio.errors import RasterioIOError

def execute(src, tile, counter, failures):
    path = Path(counter) / f"{tile.row}-{tile.col}"
    seen = int(path.read_text()) if path.exists() else 0
    path.write_text(str(seen + 1))
    if seen < failures:
        raise RasterioIOError("simulated: connection reset while reading a block")
    return src.read(1)
"""


@pytest.mark.parametrize("failures,ok", [(2, True), (9, False)])
def test_transient_read_errors_are_retried(tmp_path, write_recipe, failures, ok):
    src, data = _source(tmp_path)
    counter = tmp_path / "attempts"
    counter.mkdir()
    recipe = _recipe(write_recipe, tmp_path, src, tmp_path / "out", FLAKY_READ,
                     params=f"{{counter: {counter}, failures: {failures}}}")
    summary = execute(recipe, executor="processes", workers=2, tile=(Z, 10, 20), keep_going=True)
    attempts = int((counter / "10-20").read_text())
    if ok:
        assert summary.ok and summary.output_tiles == 1 and attempts == 3
        arr, _ = read_tile(tmp_path / "out" / str(Z) / "10" / "20.tif")
        np.testing.assert_array_equal(arr[0], data[:256, :256])
    else:  # gives up after the retries, naming the error
        assert attempts == 4 and "RasterioIOError" in summary.failed[0].error


@pytest.mark.slow
def test_progress_bar_on_a_terminal_only(tmp_path, write_recipe):
    import pty

    src, _ = _source(tmp_path)
    recipe = _recipe(write_recipe, tmp_path, src, tmp_path / "out", IDENTITY)
    import fcntl
    import struct
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a real terminal's size
    proc = subprocess.Popen([ZIGGURAT, "execute", str(recipe), "-e", "sequential"], stdout=subprocess.PIPE,
                            stderr=secondary, text=True)
    os.close(secondary)
    out, _ = proc.communicate(timeout=120)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    bar = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0 and "4 tiles written" in out
    assert "4/4" in bar and "tile/s" in bar  # done/total and rate, drawn on the terminal
    plain = subprocess.run([ZIGGURAT, "execute", str(recipe), "-e", "sequential", "--overwrite"],
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0 and "tile/s" not in plain.stderr  # stderr not a TTY: no bar ...
    assert "progress: 4/4 tiles (100%)" in plain.stderr           # ... but a final progress line


def test_semaphores_of_killed_runs_are_swept_and_live_ones_kept(tmp_path):
    import mmap
    import time as _time

    from ziggurat.executors.shm import sweep_semaphores

    stale, live, fresh = (tmp_path / f"sem.mp-{name}" for name in ("stale", "live", "fresh"))
    for path in (stale, live, fresh):
        path.write_bytes(b"\0" * 32)
    old = _time.time() - 3600
    for path in (stale, live):
        os.utime(path, (old, old))
    with open(live, "r+b") as f, mmap.mmap(f.fileno(), 32):   # in use, as a semaphore is
        assert sweep_semaphores(tmp_path) == 1
    assert not stale.exists() and live.exists() and fresh.exists()


CACHE_PROBE = """
import numpy as np
from rasterio._env import get_gdal_config


def execute(src):
    data = src.read(1)
    return np.full(data.shape, float(get_gdal_config("GDAL_CACHEMAX") or -1), dtype="float32")
"""


def test_each_worker_gets_its_share_of_gdals_block_cache(tmp_path, write_recipe, monkeypatch):
    from ziggurat.executors.poolprocs import worker_cache_mb

    assert worker_cache_mb(2, total_mb=24_000) == 600 and worker_cache_mb(768, total_mb=1_500_000) == 97
    assert worker_cache_mb(64, total_mb=8_000) == 64                        # at least 64 MB
    src, _ = _source(tmp_path)
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    recipe = _recipe(write_recipe, tmp_path, src, tmp_path / "out", CACHE_PROBE)
    assert not execute(recipe, executor="processes", workers=2).failed
    expected = worker_cache_mb(2)
    for path in (tmp_path / "out").glob("*/*/*.tif"):
        with rasterio.open(path) as tile:
            assert set(np.unique(tile.read(1))) <= {float(expected * 2 ** 20), -9999.0}, path   # bytes
    monkeypatch.setenv("GDAL_CACHEMAX", "300")                               # the user's value wins
    assert worker_cache_mb(2) is None


def test_a_small_run_keeps_both_workers_busy(tmp_path):
    """16 tiles on 2 workers: the runs of neighbouring tiles shrink so both workers get some."""
    from ziggurat.engine.run import execute

    (tmp_path / "pid.py").write_text("import os, time\nimport numpy as np\n\ndef execute(src):\n"
                                     "    time.sleep(0.2)\n"
                                     "    return np.full((1, 256, 256), os.getpid(), dtype='float64')\n")
    res = 180 / 2 ** 7 / 256
    position_raster(tmp_path / "src.tif", left=0.0, top=4 * 256 * res, res=res, width=4 * 256, height=4 * 256)
    (tmp_path / "r.yaml").write_text("process: pid.py\nzoom_levels: 7\npyramid: {grid: geodetic}\n"
                                     "input: {src: src.tif}\noutput: {path: out, dtype: float64}\n")
    summary = execute(tmp_path / "r.yaml", executor="processes", workers=2)
    assert summary.written == 16
    import rasterio

    pids = set()
    for tif in (tmp_path / "out").glob("7/*/*.tif"):
        with rasterio.open(tif) as src:
            pids.add(float(src.read(1)[0, 0]))
    assert len(pids) == 2


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_tiles_reuse_freed_memory_instead_of_faulting_it_in_again():
    """keep_freed_memory: a tile-sized array allocated and freed over and over is faulted in
    once, not every time (what made ~900 page faults per hillshade tile)."""
    code = ("import resource, sys, numpy as np\n"
            "from ziggurat.executors.heap import keep_freed_memory\n"
            "if sys.argv[1] == 'keep': assert keep_freed_memory()\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(200):\n"
            "    a = np.ones((258, 258)); b = a * 2.0; del a, b\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    faults = {mode: int(subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("default", "keep")}
    assert faults["default"] > 200 * 100      # each 0.5 MB array faulted in again (~130 pages)
    assert faults["keep"] < faults["default"] / 20


def test_the_command_starts_the_forkserver_first_only_for_the_pool():
    """`ziggurat execute` with the process pool starts its forkserver before its own imports."""
    from ziggurat_boot import uses_the_pool

    assert uses_the_pool(["execute", "r.yaml"], {}) and uses_the_pool(["execute", "r.yaml", "-e", "processes"], {})
    assert uses_the_pool(["execute", "-w", "4", "r.yaml", "--executor=processes"], {})
    assert not uses_the_pool(["execute", "r.yaml", "-e", "threads"], {})
    assert not uses_the_pool(["execute", "r.yaml", "-esequential"], {})
    assert not uses_the_pool(["execute", "r.yaml"], {"ZIGGURAT_EXECUTOR": "sequential"})
    assert uses_the_pool(["execute", "r.yaml", "-e", "processes"], {"ZIGGURAT_EXECUTOR": "dask"})
    assert not uses_the_pool(["execute", "r.yaml", "--dask-scheduler", "tcp://h:8786"], {})
    assert not uses_the_pool(["execute", "--help"], {}) and not uses_the_pool(["plan", "r.yaml"], {})
    assert not uses_the_pool([], {})


LOCK_DANCE = """
import logging, os, signal, sys, threading
from ziggurat.engine.run import execute

state = {"sent": False}

def progress(event):
    # a Ctrl-C that lands while the main thread holds logging's module lock, as any log call may
    # (no try/finally here, as none protects the instant after an acquire): raised there, the lock
    # would stay taken and every thread that logs would wait for it forever
    if event.done >= 3 and not state["sent"]:
        state["sent"] = True
        logging._acquireLock()
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):   # the handler runs between bytecodes: plenty of them here
            pass
        logging._releaseLock()

try:
    execute(sys.argv[1], executor="processes", workers=2, write_in="parent", progress=progress)
except KeyboardInterrupt:
    print("interrupted")
free = []

def look():
    got = logging._lock.acquire(timeout=5)
    free.append(got)
    if got:
        logging._lock.release()

probe = threading.Thread(target=look)
probe.start()
probe.join()
print("lock free" if free[0] else "lock held")
sys.stdout.flush()
if not free[0]:
    os._exit(0)   # (the interpreter's own exit would wait for the lock)
"""


def test_a_ctrl_c_while_the_main_thread_holds_a_lock_stops_the_run_without_a_hang(tmp_path, write_recipe):
    from ziggurat.core import interrupts

    with interrupts.deferred():   # the semantics the pool's loop relies on
        interrupts.stop()          # (a handler's call: not raised here ...)
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()     # ... but at the next safe point)
    with pytest.raises(KeyboardInterrupt):
        interrupts.stop()          # outside a pool loop: at once
    src = tmp_path / "src.tif"
    position_raster(src, left=0.0, top=1.0, res=1 / 1024, width=1024, height=1024)
    recipe = write_recipe(f"""
        process: proc.py
        zoom_levels: 10
        pyramid: {{grid: geodetic}}
        input: {{src: {src}}}
        output: {{path: {tmp_path / 'out'}, dtype: float32, nodata: -9999}}
        """, "r.yaml", "import time\n\ndef execute(src):\n    time.sleep(0.05)\n    return src.read()\n")
    script = tmp_path / "dance.py"
    script.write_text(LOCK_DANCE)
    done = subprocess.run([sys.executable, str(script), str(recipe)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "interrupted" in done.stdout, done.stderr[-2000:]
    assert "lock free" in done.stdout   # the interrupt was raised at the pool's next safe point


def _frozen_and_kernels() -> tuple[int, bool]:
    import gc

    return gc.get_freeze_count(), "ziggurat.kernels._terrain" in sys.modules


def test_pool_workers_start_with_the_preloaded_modules_frozen_and_the_kernels_loaded():
    """The forkserver preloads the worker code and the compiled kernels, then freezes them out of
    the garbage collector (`executors.forkready`): a worker's collections never walk them, and its
    pages stay shared with the forkserver."""
    from concurrent.futures import ProcessPoolExecutor

    from ziggurat_boot import FORKSERVER_PRELOAD, pool_context

    assert FORKSERVER_PRELOAD[-1] == "ziggurat.executors.forkready"
    with ProcessPoolExecutor(1, mp_context=pool_context()) as pool:
        frozen, kernels = pool.submit(_frozen_and_kernels).result(timeout=120)
    assert kernels and frozen > 50_000
