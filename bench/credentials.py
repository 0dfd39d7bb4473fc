"""A run with and without AWS credentials in the environment: CPU of each, and the ratio.

rasterio builds a boto3 session for every environment it makes itself when AWS_* are set (rasterio
issue 3331), which used to cost 3.5-4.5x the CPU of whole runs, local outputs included; tiles now
open and encode under one session-free environment. The hillshade of the bundled DEM at geodetic
zooms 9-12, sequential, best of `--rounds`; prints figures, asserts nothing. (A run writing to a
bucket: the same, with the output on a local S3 server, moto_server, credentials in the environment
against the same credentials in the recipe's `storage_options`.)

    python bench/credentials.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEM = Path(__file__).resolve().parents[1] / "recipes" / "data" / "srtm_dallas.tif"
CHILD = "import sys\nfrom ziggurat import execute\nexecute(sys.argv[1], executor='sequential', overwrite=True)\n"


def cpu(env: dict[str, str], out: str = "out", output_extra: str = "") -> float:
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "r.yaml"
        recipe.write_text(f"process: hillshade\nzoom_levels: [9, 12]\npyramid: {{grid: geodetic, pixelbuffer: 1}}\n"
                          f"input: {{dem: {DEM}}}\noutput: {{path: {out}, dtype: uint8, nodata: 0{output_extra}}}\n")
        env = {**env, "ZIGGURAT_STATE_DIR": str(Path(tmp) / "state")}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", CHILD, str(recipe)], env=env, check=True, cwd=tmp)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plain = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    creds = {**plain, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}
    without = min(cpu(plain) for _ in range(args.rounds))
    with_creds = min(cpu(creds) for _ in range(args.rounds))
    print(f"hillshade of {DEM.name}, zooms 9-12, sequential, best of {args.rounds}, local output: CPU without "
          f"AWS_* {without:.2f} s, with AWS_* {with_creds:.2f} s, ratio {with_creds / without:.2f}")
    s3_output(plain, args.rounds)


def s3_output(plain: dict[str, str], rounds: int) -> None:
    """The same run into a bucket: credentials in the environment, or in the recipe only."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import boto3

        for _ in range(100):
            try:
                boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                             region_name="us-east-1").create_bucket(Bucket="bench")
                break
            except Exception:
                time.sleep(0.1)
        in_env = {**plain, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                  "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
        in_recipe = (f", storage_options: {{key: bench, secret: bench, region: us-east-1, "
                     f"endpoint_url: '{endpoint}'}}")
        runs = {"env": [], "recipe": []}
        for i in range(rounds):
            runs["env"].append(cpu(in_env, f"s3://bench/env{i}"))
            runs["recipe"].append(cpu(plain, f"s3://bench/recipe{i}", in_recipe))
        env_cpu, recipe_cpu = min(runs["env"]), min(runs["recipe"])
        print(f"the same into a bucket (moto_server): CPU with AWS_* in the environment {env_cpu:.2f} s, with the "
              f"credentials in the recipe only {recipe_cpu:.2f} s, ratio {env_cpu / recipe_cpu:.2f}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
