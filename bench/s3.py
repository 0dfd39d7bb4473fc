"""Writing to object storage: requests per tile, tiles/s against a local folder, and the cost of a resume.

A real S3 server (moto's `moto_server`, its own process on 127.0.0.1) takes a pyramid of
`--tiles` small GeoTIFF tiles (64 x 64 px, uint8, values from the tile index; no input, the
recipe's bounds give the area) written by `ziggurat execute -e processes -w 2`; the same recipe
then writes to a local folder. Then a finished output of `--resume-tiles` tiles is run again
from a fresh state folder (no local state: another machine): the requests it makes and its
seconds. Figures come from the run manifests (`requests`, `seconds`). Prints, asserts nothing.

Usage:  python bench/s3.py [--tiles 1024] [--resume-tiles 10000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ZIGGURAT = str(Path(sys.executable).parent / "ziggurat")
PROC = """
import numpy as np

def execute(tile):
    z, r, c = tile.index[:3]
    return np.full((64, 64), (r * 7 + c * 13 + z) % 250 + 1, dtype="uint8")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_bucket(bucket: str = "bench") -> Iterator[dict[str, str]]:
    """A `moto_server` of its own on 127.0.0.1 holding an empty `bucket`; yields the environment
    (credentials, endpoint) that reaches it. The server stops at the end."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
           "AWS_EC2_METADATA_DISABLED": "true"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import boto3

        for _ in range(100):
            try:
                boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="bench",
                             aws_secret_access_key="bench", region_name="us-east-1").create_bucket(Bucket=bucket)
                break
            except Exception:
                time.sleep(0.1)
        yield env
    finally:
        server.terminate()
        server.wait()


def recipe(folder: Path, out: str, tiles: int, zoom: int = 12) -> Path:
    side = math.ceil(math.sqrt(tiles))
    size = 180 / 2**zoom
    path = folder / f"recipe-{abs(hash(out))}.yaml"
    path.write_text(textwrap.dedent(f"""
        process: proc.py
        zoom_levels: [{zoom}, {zoom}]
        pyramid: {{grid: geodetic, tile_size: 64}}
        bounds: [0, 0, {side * size - size / 2}, {side * size - size / 2}]
        output: {{path: '{out}', dtype: uint8, nodata: 0}}
    """))
    (folder / "proc.py").write_text(PROC)
    return path


def run(path: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([ZIGGURAT, "execute", str(path), "-e", "processes", "-w", "2", "--no-progress"],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"run failed: {done.stderr}")
    return time.perf_counter() - start, done.stdout


def manifest(state: Path) -> dict:
    runs = sorted(state.rglob(".ziggurat/runs/*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiles", type=int, default=1024)
    parser.add_argument("--resume-tiles", type=int, default=10_000)
    args = parser.parse_args()
    with moto_bucket() as env:
        with tempfile.TemporaryDirectory(prefix="ziggurat-bench-s3-") as tmp:
            folder = Path(tmp)
            print(f"# {args.tiles} tiles of 64x64 uint8 GeoTIFF, ziggurat -e processes -w 2, moto_server on 127.0.0.1")
            env_a = {**env, "ZIGGURAT_STATE_DIR": str(folder / "state-a")}
            wall_s3, _ = run(recipe(folder, "s3://bench/pyramid", args.tiles), env_a)
            m = manifest(folder / "state-a")
            counts = m["requests"]["s3://bench"]
            tiles = m["summary"]["output_tiles_written"]
            wall_local, _ = run(recipe(folder, str(folder / "local"), args.tiles), env)
            lm = manifest(folder / "local")
            print(f"tiles written: {tiles} (S3), {lm['summary']['output_tiles_written']} (local)")
            kinds = ("PUT", "GET", "HEAD", "LIST", "DELETE")
            per_tile = ", ".join(f"{k} {counts.get(k, 0) / tiles:.3f}" for k in kinds)
            print(f"requests per tile: {per_tile}; retries {counts.get('retries', 0)}")
            print(f"requests in all: {json.dumps({k: v for k, v in counts.items() if not k.startswith('bytes')})}; "
                  f"{counts.get('bytes_out', 0) / tiles:.0f} bytes out per tile")
            print(f"run seconds (manifest): S3 {m['seconds']:.2f} -> {tiles / m['seconds']:.0f} tiles/s; "
                  f"local {lm['seconds']:.2f} -> {tiles / lm['seconds']:.0f} tiles/s; "
                  f"S3 / local = {m['seconds'] / lm['seconds']:.2f}")
            print(f"command wall (with start-up): S3 {wall_s3:.2f} s, local {wall_local:.2f} s, "
                  f"ratio {wall_s3 / wall_local:.2f}")

            print(f"\n# resume of a finished {args.resume_tiles}-tile output from a fresh state folder")
            env_b = {**env, "ZIGGURAT_STATE_DIR": str(folder / "state-b")}
            big = recipe(folder, "s3://bench/big", args.resume_tiles)
            first_wall, _ = run(big, env_b)
            first = manifest(folder / "state-b")
            print(f"first run: {first['summary']['output_tiles_written']} tiles in {first['seconds']:.1f} s "
                  f"({first['summary']['output_tiles_written'] / first['seconds']:.0f} tiles/s)")
            env_c = {**env, "ZIGGURAT_STATE_DIR": str(folder / "state-c")}
            resume_wall, _ = run(big, env_c)
            again = manifest(folder / "state-c")
            rc = again["requests"]["s3://bench"]
            total = sum(v for k, v in rc.items() if k in ("GET", "PUT", "HEAD", "LIST", "DELETE"))
            print(f"resume: {again['summary']['skipped']} skipped, {again['summary']['output_tiles_written']} written; "
                  f"{total} requests ({json.dumps({k: v for k, v in rc.items() if not k.startswith('bytes')})}), "
                  f"{rc.get('bytes_in', 0):,} bytes in; {again['seconds']:.2f} s run, {resume_wall:.2f} s command")


if __name__ == "__main__":
    main()
