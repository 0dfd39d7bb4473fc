"""`ziggurat cp`, `ziggurat rm` and `ziggurat index` on a tile directory of --tiles tiles: seconds and
the peak RSS of each command (its own process), folder to folder, folder to bucket (moto_server on
127.0.0.1) and back; mapchete's `cp` held 11.6 GB for 12 tiles (the issue's figure). Memory should
not grow with the number of tiles. Prints figures; asserts nothing.

Usage:  python bench/tile_commands.py [--tiles 10000]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from s3 import moto_bucket  # noqa: E402

BIN = Path(sys.executable).parent
ZIGGURAT = str(BIN / "ziggurat")
PROC = """
import numpy as np

def execute(tile):
    z, r, c = tile.index[:3]
    return np.full((64, 64), (r * 7 + c * 13 + z) % 250 + 1, dtype="uint8")
"""
#: runs a command and prints its peak RSS (KB) and seconds as JSON on the last line
MEASURE = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
           "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
           "print(p.stdout[-400:], p.stderr[-2000:], file=sys.stderr); "
           "print(json.dumps({'rc': p.returncode, 'seconds': time.perf_counter() - t, "
           "'kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")


def measured(args: list[str], env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, env=env)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    if got["rc"]:
        sys.exit(f"{' '.join(args[:3])} failed:\n{done.stderr}")
    return got


def pyramid(folder: Path, tiles: int, env: dict[str, str]) -> Path:
    """A tile directory of about `tiles` 64 x 64 uint8 GeoTIFF tiles at zoom 12 (no input)."""
    side = math.ceil(math.sqrt(tiles))
    size = 180 / 2**12
    (folder / "proc.py").write_text(PROC)
    recipe = folder / "recipe.yaml"
    recipe.write_text(textwrap.dedent(f"""
        process: proc.py
        zoom_levels: [12, 12]
        pyramid: {{grid: geodetic, tile_size: 64}}
        bounds: [0, 0, {side * size - size / 2}, {side * size - size / 2}]
        output: {{path: '{folder / "tiles"}', dtype: uint8, nodata: 0}}
    """))
    subprocess.run([ZIGGURAT, "execute", str(recipe), "-w", "2", "--no-progress"], env=env, check=True,
                   capture_output=True)
    return folder / "tiles"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiles", type=int, default=10_000)
    args = parser.parse_args()
    with moto_bucket() as base_env:
        env = {**base_env, "AWS_ALLOW_HTTP": "true"}
        with tempfile.TemporaryDirectory(prefix="ziggurat-bench-tiles-") as tmp:
            folder = Path(tmp)
            env["ZIGGURAT_STATE_DIR"] = str(folder / "state")
            src = pyramid(folder, args.tiles, env)
            n = sum(1 for _ in src.rglob("*.tif"))
            base = measured([ZIGGURAT, "--version"], env)
            print(f"# {n:,} tiles of 64 x 64 uint8 GeoTIFF; the interpreter with ziggurat's CLI alone: "
                  f"{base['kb'] / 1024:.0f} MB")
            steps = [
                ("cp folder -> folder", [ZIGGURAT, "cp", str(src), str(folder / "copy"), "-z", "12"]),
                ("cp again (all there)", [ZIGGURAT, "cp", str(src), str(folder / "copy"), "-z", "12"]),
                ("cp folder -> bucket", [ZIGGURAT, "cp", str(src), "s3://bench/copy", "-z", "12"]),
                ("cp bucket -> folder", [ZIGGURAT, "cp", "s3://bench/copy", str(folder / "back"), "-z", "12"]),
                ("index (gpkg, vrt, txt)", [ZIGGURAT, "index", str(folder / "copy"), "--gpkg", "--vrt", "--txt"]),
                ("rm folder (no records)", [ZIGGURAT, "rm", str(folder / "copy"), "-z", "12", "-f"]),
                ("rm bucket (no records)", [ZIGGURAT, "rm", "s3://bench/copy", "-z", "12", "-f"]),
                ("rm an output (records)", [ZIGGURAT, "rm", str(src), "-z", "12", "-f"]),
            ]
            print(f"{'command':<24} {'seconds':>8} {'tiles/s':>8} {'peak RSS':>9}")
            for name, command in steps:
                got = measured(command, env)
                print(f"{name:<24} {got['seconds']:8.2f} {n / got['seconds']:8.0f} {got['kb'] / 1024:7.0f} MB",
                      flush=True)


if __name__ == "__main__":
    main()
