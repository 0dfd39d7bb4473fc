"""Fault runs against a bucket, repeated: how often does each end cleanly? Prints counts; asserts nothing.

A real S3 server (moto's `moto_server`, its own process on 127.0.0.1) and, for the Dask rows, a
`dask scheduler` and two `dask worker`s started here, each in its own folder and without any
AWS variable (credentials come from the recipe's `storage_options`). Rows:

- frozen: run A is SIGSTOPped past its lock's expiry (ZIGGURAT_LOCK_SECONDS=3), run B takes the
  output over and finishes, A is continued: clean = never both exit 0, A's error names the run
  that took over and has no traceback, `ziggurat verify` is OK;
- outage: the S3 server is SIGSTOPped for 2-20 s in the middle of a run: clean = exit 0, verify OK;
- kill9: SIGKILL of a run writing to the bucket, then a rerun from a fresh state folder (another
  machine): clean = exit 0, verify OK and every tile object identical to a reference run's;
- secret: a run whose only credentials are in the recipe: clean = the secret is in none of the
  bucket's objects (gzip'd ones decompressed) and none of the local files (counts printed);
- dask-worker: a worker SIGKILLed mid-run (its nanny starts another): clean = exit 0, verify OK;
- dask-scheduler: the scheduler SIGKILLed mid-run: clean = exit 1, one "Error:" line (naming the
  tile the cluster dropped), no traceback and no log line of distributed's.

Usage:  python bench/faults_bucket.py [--repeat 20] [--outages 10] [--kills 12] [--dask 5]
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from s3 import free_port  # noqa: E402

BIN = Path(sys.executable).parent
EXE = str(BIN / "ziggurat")
SECRET = "b3nch-s3cret-" + "7" * 12
#: tiles of the pyramid (set from the reference run)
TOTAL = 80
PROC = """
import time

def execute(dem, delay: float = 0.0):
    if dem.is_empty():
        return None
    time.sleep(delay)
    return dem.read() + 1
"""


class Bench:
    """One S3 server for every trial; a bucket per trial."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
                    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL": self.endpoint, "AWS_EC2_METADATA_DISABLED": "true"}
        self.server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.n = 0
        self.dem = root / "dem.tif"
        _dem(self.dem)
        for _ in range(200):
            try:
                self.s3().list_buckets()
                break
            except Exception:
                time.sleep(0.1)

    def s3(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="bench",
                            aws_secret_access_key="bench", region_name="us-east-1")

    def bucket(self) -> str:
        self.n += 1
        name = f"trial-{self.n}"
        self.s3().create_bucket(Bucket=name)
        self.s3().upload_file(str(self.dem), name, "inputs/dem.tif")
        return name

    def recipe(self, folder: Path, bucket: str, *, delay: float, zooms: str = "[0, 10]", secret: bool = False) -> Path:
        """`secret`: the credentials in the recipe (`storage_options` of the input and the output)."""
        (folder / "proc.py").write_text(PROC)
        options = (f"{{key: bench, secret: {SECRET}, endpoint_url: '{self.endpoint}', region: us-east-1}}"
                   if secret else "null")
        path = folder / "recipe.yaml"
        path.write_text(textwrap.dedent(f"""\
            process: proc.py
            zoom_levels: {zooms}
            pyramid: {{grid: geodetic, metatiling: 1}}
            input: {{dem: {{path: s3://{bucket}/inputs/dem.tif, storage_options: {options}}}}}
            output: {{path: s3://{bucket}/out, dtype: float32, nodata: -9999, storage_options: {options}}}
            process_parameters: {{delay: {delay}}}
            """))
        return path

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        out = {}
        for page in self.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                body = self.s3().get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                out[item["Key"]] = gzip.decompress(body) if item["Key"].endswith(".gz") else body
        return out

    def tiles(self, bucket: str) -> dict[str, bytes]:
        return {k: v for k, v in self.objects(bucket, "out/").items() if k[4:5].isdigit()}

    def run(self, args: list[str], state: Path, env: dict[str, str] | None = None, **kw: Any) -> Any:
        return subprocess.run([EXE, *args], env={**(env or self.env), "ZIGGURAT_STATE_DIR": str(state)},
                              capture_output=True, text=True, timeout=600, **kw)

    def verify(self, bucket: str, folder: Path) -> bool:
        return self.run(["verify", f"s3://{bucket}/out"], folder / "verify-state").returncode == 0

    def close(self) -> None:
        self.server.terminate()
        self.server.wait()


def _dem(path: Path) -> None:
    import rasterio
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=1, dtype="float32", crs="EPSG:4326",
                       transform=Affine(1 / 512, 0, 0, 0, -1 / 512, 1), nodata=-9999) as dst:
        dst.write(np.arange(512 * 512, dtype="float32").reshape(1, 512, 512))


def _wait_tiles(bench: Bench, bucket: str, n: int, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len([k for k in _keys(bench, bucket) if k[4:5].isdigit()]) >= n:
            return True
        time.sleep(0.2)
    return False


def _keys(bench: Bench, bucket: str) -> list[str]:
    got = bench.s3().list_objects_v2(Bucket=bucket, Prefix="out/")
    return [item["Key"] for item in got.get("Contents", [])]


def frozen(bench: Bench, folder: Path) -> bool:
    bucket = bench.bucket()
    recipe = bench.recipe(folder, bucket, delay=0.15)
    env = {**bench.env, "ZIGGURAT_LOCK_SECONDS": "3"}
    a = subprocess.Popen([EXE, "execute", str(recipe), "-e", "sequential", "--no-progress"], text=True,
                         env={**env, "ZIGGURAT_STATE_DIR": str(folder / "a")}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    if not _wait_tiles(bench, bucket, random.randint(1, TOTAL // 4)):
        a.kill()
        return False
    os.killpg(a.pid, signal.SIGSTOP)
    try:
        time.sleep(random.uniform(4, 8))   # past the lock's expiry
        b = bench.run(["execute", str(recipe), "-e", "sequential", "--no-progress"], folder / "b", env)
    finally:
        os.killpg(a.pid, signal.SIGCONT)
    _, err = a.communicate(timeout=300)
    both = a.returncode == 0 and b.returncode == 0
    named = "another run took it over" in err and "run 20" in err and "Traceback" not in err
    return not both and named and b.returncode == 0 and bench.verify(bucket, folder)


def outage(bench: Bench, folder: Path) -> bool:
    bucket = bench.bucket()
    recipe = bench.recipe(folder, bucket, delay=0.2)
    run = subprocess.Popen([EXE, "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"], text=True,
                           env={**bench.env, "ZIGGURAT_STATE_DIR": str(folder / "a")}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    ok = _wait_tiles(bench, bucket, random.randint(2, TOTAL // 3))
    bench.server.send_signal(signal.SIGSTOP)
    try:
        time.sleep(random.uniform(2, 20))
    finally:
        bench.server.send_signal(signal.SIGCONT)
    _, err = run.communicate(timeout=600)
    if run.returncode != 0:
        print(f"  outage: exit {run.returncode}: {err.strip()[-300:]}")
    return ok and run.returncode == 0 and "Traceback" not in err and bench.verify(bucket, folder)


def kill9(bench: Bench, folder: Path, reference: dict[str, bytes]) -> bool:
    bucket = bench.bucket()
    recipe = bench.recipe(folder, bucket, delay=0.02)
    run = subprocess.Popen([EXE, "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"],
                           env={**bench.env, "ZIGGURAT_STATE_DIR": str(folder / "a")},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_tiles(bench, bucket, random.randint(1, TOTAL // 2))
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    again = bench.run(["execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"], folder / "fresh")
    got = {k.split("/", 1)[1]: v for k, v in bench.tiles(bucket).items()}
    return again.returncode == 0 and got == reference and bench.verify(bucket, folder)


def secret(bench: Bench, folder: Path) -> tuple[bool, int, int]:
    bucket = bench.bucket()
    recipe = bench.recipe(folder, bucket, delay=0.0, zooms="[0, 6]", secret=True)
    env = {k: v for k, v in bench.env.items() if not k.startswith("AWS_")}
    done = bench.run(["execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"], folder / "state", env,
                     cwd=folder)
    objects = bench.objects(bucket)
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != "recipe.yaml"]
    leaked = [k for k, v in objects.items() if SECRET.encode() in v]
    leaked += [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    leaked += ["stdout/stderr"] if SECRET in done.stdout + done.stderr else []
    for item in leaked:
        print(f"  secret found in {item}")
    return done.returncode == 0 and not leaked, len(objects), len(files)


class Cluster:
    """`dask scheduler` and two `dask worker`s (nannies), each in a folder of its own, no AWS variable."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        root.mkdir(parents=True, exist_ok=True)
        self.procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                        "--port", str(self.port), "--no-dashboard"], cwd=root, env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
        for i in range(2):
            folder = root / f"worker{i}"
            folder.mkdir(exist_ok=True)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nthreads", "1",
                 "--no-dashboard", "--local-directory", str(folder), "--name", f"w{i}"],
                cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        import distributed

        with distributed.Client(self.address, set_as_default=False, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)

    def worker_pids(self) -> list[int]:
        import distributed

        with distributed.Client(self.address, set_as_default=False, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            return sorted(client.run(os.getpid).values())

    def close(self) -> None:
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def dask_kill(bench: Bench, folder: Path, cluster: Cluster, what: str) -> bool:
    bucket = bench.bucket()
    recipe = bench.recipe(folder, bucket, delay=0.1, secret=True)
    victim = cluster.procs[0].pid if what == "scheduler" else random.choice(cluster.worker_pids())
    env = {k: v for k, v in bench.env.items() if not k.startswith("AWS_")}
    run = subprocess.Popen([EXE, "execute", str(recipe), "-e", "dask", "--dask-scheduler", cluster.address,
                            "--no-progress"], text=True, env={**env, "ZIGGURAT_STATE_DIR": str(folder / "a")},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_tiles(bench, bucket, random.randint(2, TOTAL // 3))
    os.kill(victim, signal.SIGKILL)
    _, err = run.communicate(timeout=600)
    if what == "scheduler":
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("Error:")]
        clean = (run.returncode == 1 and "Traceback" not in err and len(errors) == 1
                 and not any("distributed." in line or " ERROR " in line for line in lines))
        if not clean:
            print(f"  scheduler kill: exit {run.returncode}: {err.strip()[-400:]}")
        return clean
    if run.returncode != 0:
        print(f"  worker kill: exit {run.returncode}: {err.strip()[-400:]}")
    return run.returncode == 0 and "Traceback" not in err and bench.verify(bucket, folder)


def _row(name: str, count: int, case: Callable[[Path], bool], root: Path) -> None:
    clean = hangs = 0
    t0 = time.perf_counter()
    for i in range(count):
        folder = root / f"{name}-{i}"
        folder.mkdir()
        try:
            clean += bool(case(folder))
        except subprocess.TimeoutExpired as exc:
            hangs += 1
            print(f"{name}: hung ({exc.cmd[1:3]}): stopped after {exc.timeout} s")
    print(f"{name:<15} {clean:>3} of {count:<3} clean ({100 * clean / max(count, 1):.0f} %), {hangs} hung, "
          f"in {time.perf_counter() - t0:.0f} s (target 100 %)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20, help="frozen-writer trials")
    parser.add_argument("--outages", type=int, default=10)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--dask", type=int, default=5, help="trials per Dask row")
    args = parser.parse_args()
    random.seed(3)
    with tempfile.TemporaryDirectory(prefix="ziggurat-faults-") as tmp:
        root = Path(tmp)
        bench = Bench(root)
        try:
            ref = root / "reference"
            ref.mkdir()
            bucket = bench.bucket()
            done = bench.run(["execute", str(bench.recipe(ref, bucket, delay=0.0)), "--no-progress"], ref / "state")
            assert done.returncode == 0, done.stderr
            reference = {k.split("/", 1)[1]: v for k, v in bench.tiles(bucket).items()}
            global TOTAL
            TOTAL = len(reference)
            print(f"# moto_server on 127.0.0.1; a pyramid of {TOTAL} tiles (zooms 0-10)", flush=True)
            _row("frozen", args.repeat, lambda f: frozen(bench, f), root)
            _row("outage", args.outages, lambda f: outage(bench, f), root)
            _row("kill9+fresh", args.kills, lambda f: kill9(bench, f, reference), root)
            (root / "secret").mkdir()
            ok, n_objects, n_files = secret(bench, root / "secret")
            print(f"{'secret':<15} {'clean' if ok else 'LEAKED'}: not in any of {n_objects} objects and "
                  f"{n_files} local files", flush=True)
            cluster = Cluster(root / "cluster", bench.env)
            try:
                _row("dask-worker", args.dask, lambda f: dask_kill(bench, f, cluster, "worker"), root)
            finally:
                cluster.close()

            def scheduler(folder: Path) -> bool:
                one = Cluster(folder / "cluster", bench.env)
                try:
                    return dask_kill(bench, folder, one, "scheduler")
                finally:
                    one.close()

            _row("dask-scheduler", args.dask, scheduler, root)
        finally:
            bench.close()


if __name__ == "__main__":
    main()
