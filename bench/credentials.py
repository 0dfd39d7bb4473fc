"""A run with and without AWS credentials in the environment: CPU of each, and the ratio.

rasterio builds a boto3 session for every environment it makes itself when AWS_* are set (rasterio
issue 3331), which used to cost 3.5-4.5x the CPU of whole runs, local outputs included; tiles now
open and encode under one session-free environment. The hillshade of the bundled DEM at geodetic
zooms 9-12, sequential, best of `--rounds`; prints figures, asserts nothing. (A run writing to a
bucket: bench/s3.py with the same variables set.)

    python bench/credentials.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

DEM = Path(__file__).resolve().parents[1] / "recipes" / "data" / "srtm_dallas.tif"
CHILD = "import sys\nfrom ziggurat import execute\nexecute(sys.argv[1], executor='sequential', overwrite=True)\n"


def cpu(env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "r.yaml"
        recipe.write_text(f"process: hillshade\nzoom_levels: [9, 12]\npyramid: {{grid: geodetic, pixelbuffer: 1}}\n"
                          f"input: {{dem: {DEM}}}\noutput: {{path: out, dtype: uint8, nodata: 0}}\n")
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
    print(f"hillshade of {DEM.name}, zooms 9-12, sequential, best of {args.rounds}: CPU without AWS_* "
          f"{without:.2f} s, with AWS_* {with_creds:.2f} s, ratio {with_creds / without:.2f}")


if __name__ == "__main__":
    main()
