"""The Dask executor on a real LocalCluster: worker processes, real kills, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from ziggurat import Grid, ProcessError, TileIndex
from ziggurat.core.tasks import FAILED, WRITTEN
from ziggurat.engine.run import execute
from ziggurat.executors import WAIT, ExecutorError, get_executor
from ziggurat.executors.job import RunSpec
from ziggurat.recipe import load_recipe

from conftest import position_raster, read_tile
from polling import session_processes, wait_until

distributed = pytest.importorskip("distributed")
dask_config = pytest.importorskip("dask.config")

from ziggurat.executors.dask import KEY_PREFIX, DaskExecutor  # noqa: E402

pytestmark = pytest.mark.slow  # a Dask cluster per test

Z = 6
RES = 180 / 2**Z / 256
ZIGGURAT = str(Path(sys.executable).parent / "ziggurat")
IDENTITY = "def execute(src):\n    return src.read(1)\n"


@pytest.fixture(scope="module")
def client():
    """One cluster for the tests that do not kill workers: 2 single-threaded worker processes."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        with distributed.Client(cluster, set_as_default=False) as c:
            yield c


def _source(tmp_path: Path, size: int = 512) -> tuple[Path, np.ndarray]:
    t = Grid.from_name("geodetic").tile(Z, 10, 20)
    path = tmp_path / "src.tif"
    data = position_raster(path, left=t.bounds.left, top=t.bounds.top, res=RES, width=size, height=size)
    return path, data[0]


def _recipe(write_recipe, src: Path, out: Path, process: str, *, metatiling: int = 1,
            params: str = "{}", process_name: str = "proc.py") -> Path:
    """(A process file is imported once per interpreter: give a different process its own name.)"""
    return write_recipe(f"""
        process: {process_name}
        zoom_levels: {Z}
        pyramid: {{grid: geodetic, metatiling: {metatiling}, pixelbuffer: 1}}
        input: {{src: {src}}}
        output: {{path: {out}, dtype: float32, nodata: -9999}}
        process_parameters: {params}
        """, process=process, process_name=process_name, name=f"{out.name}.yaml")


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.tif"))}


def _reference(write_recipe, src: Path, tmp_path: Path, **kwargs) -> dict[str, bytes]:
    out = tmp_path / "reference"
    execute(_recipe(write_recipe, src, out, IDENTITY, process_name="identity.py", **kwargs),
            executor="sequential")
    return _tree_bytes(out)


def _waiting_tasks(client) -> list[str]:
    """Tasks of ziggurat runs the scheduler still means to run."""
    def probe(dask_scheduler=None):
        return [str(k) for k, ts in dask_scheduler.tasks.items()
                if str(k).startswith(KEY_PREFIX) and ts.state in ("released", "waiting", "queued",
                                                                   "no-worker", "processing")]
    return client.run_on_scheduler(probe)


def test_output_is_byte_identical_to_the_sequential_executor(tmp_path, write_recipe, client):
    src, _ = _source(tmp_path, size=1024)
    reference = _reference(write_recipe, src, tmp_path, metatiling=2)
    out = tmp_path / "dask"
    executor = DaskExecutor(client=client)
    summary = execute(_recipe(write_recipe, src, out, IDENTITY, metatiling=2), executor=executor)
    assert summary.ok and summary.executor == "dask" and summary.workers == 2
    assert summary.output_tiles == 16
    assert len(reference) == 16 and _tree_bytes(out) == reference
    assert client.status == "running"  # a caller's client is left open ...
    summary = execute(_recipe(write_recipe, src, out, IDENTITY, metatiling=2), executor=executor,
                      overwrite=True)      # ... and the executor can run again
    assert summary.output_tiles == 16 and _tree_bytes(out) == reference


def test_runs_of_neighbouring_tiles_travel_as_one_task_each(tmp_path, write_recipe, client):
    src, _ = _source(tmp_path, size=2048)   # 8 x 8 tiles
    reference = _reference(write_recipe, src, tmp_path)
    out = tmp_path / "dask"
    with distributed.get_task_stream(client=client) as stream:
        summary = execute(_recipe(write_recipe, src, out, IDENTITY), executor=DaskExecutor(client=client))
    assert summary.ok and summary.written == 64 and _tree_bytes(out) == reference
    ours = [t for t in stream.data if str(t["key"]).startswith(KEY_PREFIX)]
    assert 2 <= len(ours) <= 64 // 4   # runs of several tiles, guided: no fewer tasks than workers


def test_single_file_output_is_written_by_the_client(tmp_path, write_recipe, client):
    src, data = _source(tmp_path)
    single = tmp_path / "single.tif"
    summary = execute(_recipe(write_recipe, src, single, IDENTITY), executor=DaskExecutor(client=client))
    assert summary.ok and summary.written == 4
    with rasterio.open(single) as ds:
        np.testing.assert_array_equal(ds.read(1), data)


def test_a_process_error_names_the_tile(tmp_path, write_recipe, client):
    src, _ = _source(tmp_path, size=1024)
    out = tmp_path / "out"
    boom = ("import time\n\ndef execute(src, tile):\n    if (tile.row, tile.col) == (11, 21):\n"
            "        raise KeyError('no such band')\n    time.sleep(0.05)\n    return src.read(1)\n")
    with pytest.raises(ProcessError) as info:
        execute(_recipe(write_recipe, src, out, boom), executor=DaskExecutor(client=client))
    err = info.value
    assert err.tile == (Z, 11, 21) and err.exc_type == "KeyError"
    assert "row 11, col 21" in str(err) and "no such band" in str(err) and "proc.py" in err.traceback
    # the run stopped: nothing of it is left to run on the cluster, nothing half-written
    assert _waiting_tasks(client) == []
    assert not list(out.rglob(".tmp-*"))


UNPICKLABLE = """
class DriverError(Exception):
    # like many GDAL errors: its args do not rebuild it, so it cannot be unpickled
    def __init__(self, code, detail):
        super().__init__(f"code {code}: {detail}")

def execute(src, tile):
    if tile.col == 20:
        raise DriverError(7, "cannot read block")
    return src.read(1)
"""


def test_an_exception_that_cannot_be_unpickled_arrives_as_text(tmp_path, write_recipe, client):
    import cloudpickle  # what Dask sends results and errors with

    src, _ = _source(tmp_path)
    recipe = _recipe(write_recipe, src, tmp_path / "out", UNPICKLABLE)
    summary = execute(recipe, executor=DaskExecutor(client=client), keep_going=True)
    assert sorted(tuple(o.index) for o in summary.failed) == [(Z, 10, 20), (Z, 11, 20)]
    failed = summary.failed[0]
    assert failed.exc_type == "DriverError" and failed.error == "DriverError: code 7: cannot read block"
    assert "proc.py" in failed.traceback and summary.output_tiles == 2
    namespace: dict = {}
    exec(UNPICKLABLE, namespace)
    with pytest.raises(TypeError):  # the premise: the original exception does not survive pickling
        cloudpickle.loads(cloudpickle.dumps(namespace["DriverError"](7, "x")))


def test_wait_is_honoured_and_the_window_is_bounded(tmp_path, write_recipe, client):
    src, _ = _source(tmp_path, size=1024)
    recipe = load_recipe(_recipe(write_recipe, src, tmp_path / "out", IDENTITY))
    tiles = [TileIndex(Z, r, c) for r in range(10, 14) for c in range(20, 24)]
    executor = DaskExecutor(client=client)
    executor.run_tiles = 1   # tasks of one tile each: the window bounds tiles in flight
    seen: list[TileIndex] = []
    events: list[tuple[str, int]] = []
    most_in_flight = 0

    def source():
        nonlocal most_in_flight
        for k, index in enumerate(tiles):
            if k == 2:  # like an overview tile: nothing more until the first two have finished
                while len(seen) < 2:
                    events.append(("wait", len(seen)))
                    yield WAIT
                events.append(("resume", len(seen)))
            most_in_flight = max(most_in_flight, k + 1 - len(seen))
            yield index

    for outcome in executor.map_unordered(RunSpec(recipe), source()):
        assert outcome.status == WRITTEN
        seen.append(outcome.index)
    assert sorted(seen) == tiles
    assert events[0] == ("wait", 0) and events[-1] == ("resume", 2)
    assert 1 <= most_in_flight <= executor.window == 4

    def waits_first():
        yield WAIT
        yield tiles[0]

    with pytest.raises(RuntimeError, match="nothing is in flight"):
        list(executor.map_unordered(RunSpec(recipe), waits_first()))


def test_overviews_equal_those_of_the_processes_executor(tmp_path, client):
    """Baselevel 6, lower zooms 3..5 from children, higher zoom 7 from the parent: overview tasks
    reach the executor only when their sources are done (WAIT in between)."""
    from pyramid_helpers import make_recipe, tiles_on_disk

    levels = {"min": 6, "max": 6, "lower": "average", "higher": "bilinear"}
    trees = {}
    for name, executor in (("processes", "processes"), ("dask", DaskExecutor(client=client))):
        recipe, _ = make_recipe(tmp_path, zooms=(3, 7), baselevels=levels, out=name)
        summary = execute(recipe, executor=executor, workers=2)
        assert summary.ok and summary.written > 0, name
        trees[name] = _tree_bytes(tmp_path / name)
    assert set(tiles_on_disk(tmp_path / "dask")) == {3, 4, 5, 6, 7}
    assert trees["dask"] == trees["processes"]


SLOW = "import time\n\ndef execute(src, delay):\n    time.sleep(delay)\n    return src.read(1)\n"


def test_interrupt_cancels_this_runs_tasks_on_the_cluster(tmp_path, write_recipe, client):
    src, _ = _source(tmp_path, size=2048)  # 64 tiles
    recipe = _recipe(write_recipe, src, tmp_path / "out", SLOW, params="{delay: 0.2}")

    def ctrl_c(event):
        if event.done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(recipe, executor=DaskExecutor(client=client), progress=ctrl_c)
    # cancelling is a message to the scheduler (Client.cancel does not wait for it)
    deadline = time.monotonic() + 30
    while _waiting_tasks(client) and time.monotonic() < deadline:  # a hang guard
        time.sleep(0.05)
    assert _waiting_tasks(client) == []
    assert client.status == "running"
    plugins = client.run(lambda dask_worker: [n for n in dask_worker.plugins if n.startswith(KEY_PREFIX)])
    assert all(not names for names in plugins.values())  # the run's worker plugin was removed


def test_the_cli_runs_on_a_cluster_given_by_address(tmp_path, write_recipe, client):
    src, _ = _source(tmp_path)
    reference = _reference(write_recipe, src, tmp_path)
    out = tmp_path / "cli"
    recipe = _recipe(write_recipe, src, out, IDENTITY)
    address = client.scheduler.address
    proc = subprocess.run([ZIGGURAT, "execute", str(recipe), "-e", "dask", "--dask-scheduler", address,
                           "--no-progress"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "4 tiles written" in proc.stdout
    assert "Dask dashboard: http://" in proc.stderr and "INFO" not in proc.stderr
    assert _tree_bytes(out) == reference
    assert client.status == "running"  # someone else's cluster keeps running
    proc = subprocess.run([ZIGGURAT, "execute", str(recipe), "-e", "threads", "--dask-scheduler", address],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--dask-scheduler needs --executor dask" in proc.stderr


def test_importing_ziggurat_does_not_import_distributed():
    code = ("import sys, ziggurat, ziggurat.cli, ziggurat.engine.run, ziggurat.executors\n"
            "from ziggurat.executors import EXECUTORS, LAZY_EXECUTORS\n"
            "assert 'dask' in LAZY_EXECUTORS\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('distributed', 'dask')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_without_distributed_the_dask_executor_says_what_to_install():
    code = ("import sys\nsys.modules['distributed'] = None  # as if the extra were not installed\n"
            "from ziggurat.executors import get_executor\n"
            "from ziggurat.core.errors import ExecutorError\n"
            "try:\n    get_executor('dask')\nexcept ExecutorError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "pip install ziggurat[dask]" in proc.stdout


def test_executor_options_are_checked(client):
    with pytest.raises(ExecutorError, match="either"):
        get_executor("dask", scheduler="tcp://127.0.0.1:1", client=client)
    with pytest.raises(ExecutorError, match="cannot connect"):
        with dask_config.set({"distributed.comm.timeouts.connect": "1s"}):
            get_executor("dask", scheduler="tcp://127.0.0.1:1")


# -- tests that kill workers get a cluster of their own ----------------------------------------
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


def test_a_worker_killed_midway_is_replaced_and_the_run_completes(tmp_path, write_recipe):
    src, data = _source(tmp_path, size=1024)
    reference = _reference(write_recipe, src, tmp_path)
    out = tmp_path / "out"
    marker = tmp_path / "marker"
    recipe = _recipe(write_recipe, src, out, KILL_ONCE, params=f"{{marker: {marker}}}")
    summary = execute(recipe, executor=DaskExecutor(2, dashboard_address=":0"))  # its own LocalCluster
    assert marker.exists()  # a worker really died (the marker is written just before the SIGKILL)
    assert summary.ok and summary.output_tiles == 16
    assert _tree_bytes(out) == reference
    arr, _ = read_tile(out / str(Z) / "11" / "20.tif")
    np.testing.assert_array_equal(arr[0], data[256:512, :256])


def test_a_tile_that_always_kills_its_worker_is_reported_and_bystanders_rerun(tmp_path, write_recipe):
    src, _ = _source(tmp_path)
    reference = _reference(write_recipe, src, tmp_path)
    out = tmp_path / "out"
    recipe = _recipe(write_recipe, src, out, KILL_ALWAYS)
    # no rescheduling by Dask: the tile queued behind the killer on the same worker ends in
    # KilledWorker too, and only the executor's rerun-alone saves it
    with dask_config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=":0")
    with cluster, distributed.Client(cluster, set_as_default=False) as client:
        summary = execute(recipe, executor=DaskExecutor(client=client, retries=1), keep_going=True)
        assert [tuple(o.index) for o in summary.failed] == [(Z, 11, 20)]
        failed = summary.failed[0]
        assert failed.status == FAILED and failed.exc_type == "WorkerDied"
        assert "2 time(s)" in failed.error
        assert summary.output_tiles == 3
        assert _tree_bytes(out) == {k: v for k, v in reference.items() if k != f"{Z}/11/20.tif"}
        with pytest.raises(ProcessError, match=r"zoom 6, row 11, col 20.*WorkerDied"):
            execute(recipe, executor=DaskExecutor(client=client, retries=1), overwrite=True)


HANG = """
import time

def execute(src, tile):
    if (tile.row, tile.col) == (11, 20):
        time.sleep(3600)
    return src.read(1)
"""


def test_a_hanging_tile_times_out_on_every_worker_and_the_others_are_written(tmp_path, write_recipe):
    src, _ = _source(tmp_path)
    reference = _reference(write_recipe, src, tmp_path)
    out = tmp_path / "out"
    recipe = _recipe(write_recipe, src, out, HANG, process_name="hang.py")
    with dask_config.set({"distributed.scheduler.allowed-failures": 1}):
        executor = DaskExecutor(2, dashboard_address=":0", tile_timeout=1.5)
    start = time.monotonic()
    summary = execute(recipe, executor=executor, keep_going=True)
    assert time.monotonic() - start < 120  # never hangs
    assert [tuple(o.index) for o in summary.failed] == [(Z, 11, 20)]
    failed = summary.failed[0]
    assert failed.exc_type == "TimedOut" and "tile timeout (1.5 s) on 2 Dask worker(s)" in failed.error
    assert _tree_bytes(out) == {k: v for k, v in reference.items() if k != f"{Z}/11/20.tif"}


def test_ctrl_c_stops_the_local_cluster_cleanly(tmp_path, write_recipe):
    src, _ = _source(tmp_path, size=2048)  # 64 tiles
    out = tmp_path / "out"
    recipe = _recipe(write_recipe, src, out, SLOW, params="{delay: 0.3}")
    proc = subprocess.Popen([ZIGGURAT, "execute", str(recipe), "-e", "dask", "-w", "2", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while not list(out.rglob("*.tif")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(out.rglob("*.tif")), "no tile was written before the deadline"
    os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole process group
    _, err = proc.communicate(timeout=60)  # a hang guard
    assert proc.returncode == 130, err
    assert "rerun" in err and "Traceback" not in err
    assert wait_until(lambda: session_processes(proc.pid) == [])  # no orphan workers
    assert not list(out.rglob(".tmp-*"))
    assert len(list(out.rglob("*.tif"))) < 64
    for tile in out.rglob("*.tif"):
        with rasterio.open(tile) as ds:
            ds.read()  # every tile is complete


def test_a_bad_recipe_fails_before_any_cluster_is_started(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("process: hillshade\nzoom_level: 9\n")
    proc = subprocess.run([str(Path(sys.executable).parent / "ziggurat"), "execute", str(recipe), "-e", "dask"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "zoom_level" in proc.stderr and "did you mean 'zoom_levels'" in proc.stderr
    assert "dashboard" not in proc.stderr.lower() and "Traceback" not in proc.stderr
