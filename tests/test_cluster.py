"""A real Dask cluster of separate processes: `dask scheduler` and `dask worker`s started here,
each worker in its own folder and fenced off from the client's (an audit hook refuses every
Python-level open there, as a pod would not see it), nothing shared but the S3 bucket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from ziggurat.core.grid import Grid
from ziggurat.engine.run import execute

from conftest import S3_ENV, position_raster
from polling import wait_until

distributed = pytest.importorskip("distributed")

from ziggurat.executors.dask import DaskExecutor  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("s3_server")]
ZIGGURAT = str(Path(sys.executable).parent / "ziggurat")

FENCE = '''
"""Preloaded into each worker: no Python-level open of the client's folder."""
import os
import sys

_FORBIDDEN = os.environ["ZIGGURAT_TEST_FORBIDDEN"]


def _hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if os.path.abspath(path).startswith(_FORBIDDEN):
            raise PermissionError(f"this worker cannot see the client's folder: {path}")


sys.addaudithook(_hook)
'''

# slow enough that a worker killed after the first outcomes dies in the middle of a run of tiles
PROC = """
import time

def execute(dem):
    if dem.is_empty():
        return None
    time.sleep(0.15)
    return dem.read() + 1
"""


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "state"
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(folder))
    return folder


def upload(bucket: str, key: str, path: Path) -> str:
    import boto3

    boto3.client("s3", endpoint_url=S3_ENV["AWS_ENDPOINT_URL"]).upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def tile_objects(bucket: str, prefix: str) -> dict[str, bytes]:
    """The tile objects under `prefix` (keys starting with a zoom number), by relative key."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=S3_ENV["AWS_ENDPOINT_URL"])
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"][len(prefix):]
            if key[:1].isdigit():
                out[key] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[str]:
    """A scheduler and two single-threaded workers (each under a nanny, which restarts it), each in a
    folder of its own outside the test's folder; yields the scheduler's address."""
    yield from _cluster(tmp_path_factory.mktemp("cluster"), tmp_path, dict(os.environ))


@pytest.fixture
def bare_cluster(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[str]:
    """The same, with workers that have no AWS setting at all in their environment (pods)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    yield from _cluster(tmp_path_factory.mktemp("cluster"), tmp_path, env)


def _cluster(root: Path, tmp_path: Path, base_env: dict[str, str]) -> Iterator[str]:
    fence = root / "fence.py"
    fence.write_text(FENCE)
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**base_env, "ZIGGURAT_TEST_FORBIDDEN": str(tmp_path), "PYTHONPATH": ""}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], cwd=root, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    for i in range(2):
        folder = root / f"worker{i}"
        folder.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard",
             "--local-directory", str(folder), "--preload", str(fence), "--name", f"w{i}"],
            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    try:
        with distributed.Client(address, set_as_default=False, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):   # SIGTERM first: a nanny killed outright may leave its worker behind
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _recipe(write_recipe: Callable[..., Path], inp: str, out: str, name: str) -> Path:
    return write_recipe(f"""
        process: proc.py
        zoom_levels: [6, 10]
        pyramid: {{grid: geodetic, metatiling: 1}}
        input: {{dem: {inp}}}
        output: {{path: {out}, dtype: float32, nodata: -9999}}
        """, name, PROC)


def _dem(tmp_path: Path) -> Path:
    path = tmp_path / "dem.tif"
    t = Grid.from_name("geodetic").tile(10, 200, 1030)
    position_raster(path, left=t.bounds.left, top=t.bounds.top, res=180 / 2**10 / 256, width=1280, height=1280)
    return path


def _kill_a_worker(address: str) -> Callable[[Any], None]:
    """A progress callback that SIGKILLs one worker process (its nanny starts a new one) once a few
    tiles are back: the runs on it die half done and the scheduler reruns them elsewhere."""
    with distributed.Client(address, set_as_default=False) as client:
        pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    state = {"killed": False}

    def progress(event: Any) -> None:
        if event.done >= 4 and not state["killed"]:
            state["killed"] = True
            os.kill(victim, signal.SIGKILL)

    progress.state = state  # type: ignore[attr-defined]
    return progress


def test_a_cluster_of_separate_processes_writes_the_bytes_of_a_processes_run_despite_a_killed_worker(
        tmp_path: Path, bucket: str, write_recipe: Callable[..., Path], cluster: str) -> None:
    dem = _dem(tmp_path)
    src = upload(bucket, "inputs/dem.tif", dem)
    reference = execute(_recipe(write_recipe, src, f"s3://{bucket}/pool", "pool.yaml"), executor="processes",
                        workers=2)
    kill = _kill_a_worker(cluster)
    summary = execute(_recipe(write_recipe, src, f"s3://{bucket}/dask", "dask.yaml"),
                      executor=DaskExecutor(scheduler=cluster), progress=kill)
    assert kill.state["killed"]  # type: ignore[attr-defined]
    assert summary.ok and summary.executor == "dask"
    assert summary.output_tiles == reference.output_tiles > 40
    pool, dask = tile_objects(bucket, "pool/"), tile_objects(bucket, "dask/")
    assert pool == dask and len(dask) == summary.output_tiles
    # the ledger, manifest and STAC item in the bucket agree with the tiles
    done = subprocess.run([ZIGGURAT, "verify", f"s3://{bucket}/dask"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_workers_that_cannot_see_the_process_file_run_the_source_the_client_sent(
        tmp_path: Path, bucket: str, write_recipe: Callable[..., Path], cluster: str) -> None:
    """The fence is real: a task that opens the process file on a worker fails there."""
    src = upload(bucket, "inputs/dem.tif", _dem(tmp_path))
    recipe = _recipe(write_recipe, src, f"s3://{bucket}/out", "out.yaml")
    proc = recipe.parent / "proc.py"

    def peek(path: str) -> str:
        with open(path) as f:
            return f.read()

    with distributed.Client(cluster, set_as_default=False) as client:
        with pytest.raises(PermissionError, match="cannot see the client's folder"):
            client.submit(peek, str(proc), pure=False).result(timeout=60)
    summary = execute(recipe, executor=DaskExecutor(scheduler=cluster), zoom=10)
    assert summary.ok and summary.written > 0 and not summary.failed


def test_credentials_in_the_recipe_reach_workers_that_have_none(
        tmp_path: Path, bucket: str, write_recipe: Callable[..., Path], bare_cluster: str) -> None:
    src = upload(bucket, "inputs/dem.tif", _dem(tmp_path))
    options = (f"{{key: {S3_ENV['AWS_ACCESS_KEY_ID']}, secret: {S3_ENV['AWS_SECRET_ACCESS_KEY']}, "
               f"endpoint_url: '{S3_ENV['AWS_ENDPOINT_URL']}', region: us-east-1}}")
    recipe = write_recipe(f"""
        process: proc.py
        zoom_levels: 10
        pyramid: {{grid: geodetic}}
        input: {{dem: {{path: {src}, storage_options: {options}}}}}
        output: {{path: s3://{bucket}/creds, dtype: float32, nodata: -9999, storage_options: {options}}}
        """, "creds.yaml", PROC)
    summary = execute(recipe, executor=DaskExecutor(scheduler=bare_cluster))
    assert summary.ok and not summary.failed and summary.written > 0, [o.error for o in summary.failed]
    assert len(tile_objects(bucket, "creds/")) == summary.output_tiles


def test_a_lost_scheduler_is_one_message_not_distributeds_log(tmp_path: Path, bucket: str,
                                                               write_recipe: Callable[..., Path], cluster: str) -> None:
    src = upload(bucket, "inputs/dem.tif", _dem(tmp_path))
    recipe = _recipe(write_recipe, src, f"s3://{bucket}/lost", "lost.yaml")
    proc = subprocess.Popen([ZIGGURAT, "execute", str(recipe), "-e", "dask", "--dask-scheduler", cluster,
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "ZIGGURAT_STATE_DIR": str(tmp_path / "state")})
    assert wait_until(lambda: len(tile_objects(bucket, "lost/")) >= 2, timeout=120)
    port = int(cluster.rsplit(":", 1)[1])
    scheduler = subprocess.run(["pgrep", "-f", f"dask_scheduler.*--port {port}"], capture_output=True, text=True)
    for pid in scheduler.stdout.split():
        os.kill(int(pid), signal.SIGKILL)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode != 0 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("Dask dashboard")]
    assert lines and all("distributed" not in ln.split(":")[0] for ln in lines), err
