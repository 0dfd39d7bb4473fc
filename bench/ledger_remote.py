"""The bucket's copy of a ledger at scale: peak memory and seconds of compaction (publishing the
whole ledger as shards of 256 x 256 tiles) and of a pull (rebuilding the ledger on another
machine), at 10^5 and 10^6 tile rows, against a real S3 server (moto_server, its own process on
127.0.0.1); then what moves for a one-tile rerun where the last run finished, for a rerun of one
block of 65,536 tiles (its compaction rewrites that shard only) and for a reader of one window
(`plan` of a region: one shard fetched).

Each step runs in its own child process, so its peak RSS (`ru_maxrss`) is its own; the
baseline is the same child importing everything and doing nothing. Segments are gzip'd JSON
lines, streamed both ways (cursor -> gzip file -> multipart upload; download -> gzip -> apply),
so memory should not grow with the ledger. Prints figures; asserts nothing. Usage:

    python bench/ledger_remote.py [--rows 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from s3 import moto_bucket  # noqa: E402

BUCKET = "bench"


def _rows(n: int):   # one process tile and one output tile per row, as a real run records them
    side = int(n ** 0.5) + 1
    for i in range(n):
        r, c = divmod(i, side)
        yield ["p", 14, r, c, "written", "20261207T000000.000000Z", 1796000000.0, "k" * 16, None]
        yield ["o", f"14/{r}/{c}.tif", 14, r, c, f"{i:064x}", "20261207T000000.000000Z"]


def child(step: str, rows: int, folder: Path) -> None:
    from ziggurat.core.location import Location
    from ziggurat.records.ledger import Ledger
    from ziggurat.records.remote import RemoteRecords

    location = Location.parse(f"s3://{BUCKET}/out{rows}")
    start = time.perf_counter()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if step == "build":   # the local ledger of a finished run (not measured)
        with Ledger(folder / "a" / f"out{rows}") as ledger:
            ledger.apply(_rows(rows))
    elif step == "compact":
        records = RemoteRecords(location, None, folder / "a" / f"out{rows}")
        records.compact(whole=True)
    elif step == "pull":
        records = RemoteRecords(location, None, folder / "b" / f"out{rows}")
        records.pull()
    elif step == "rerun":   # a one-tile run where the last one finished: pull, record, publish
        moved = _one_tile_run(location, folder / "b" / f"out{rows}")
        start = time.perf_counter()
        moved = _one_tile_run(location, folder / "b" / f"out{rows}")
        print(json.dumps({"seconds": time.perf_counter() - start, "moved": moved}), flush=True)
        return
    elif step == "region":   # a rerun of one block: its compaction rewrites one shard
        moved = _one_tile_run(location, folder / "b" / f"out{rows}", tiles=256)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": time.perf_counter() - start, "moved": moved, "rss_mb": peak}), flush=True)
        return
    elif step == "window":   # a reader of one window (`plan` of a region)
        from ziggurat.io.storage.store import STATS
        from ziggurat.records.remote import pulled

        STATS.take()
        with pulled(location.url, must_exist=False, want=lambda shard: shard == (14, 1, 1)):
            pass
        counts = STATS.take()
        moved = sum(v for k, v in counts.items() if k.endswith(("bytes_in", "bytes_out")))
        print(json.dumps({"seconds": time.perf_counter() - start, "moved": moved}), flush=True)
        return
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.perf_counter() - start, "rss_mb": peak, "base_mb": base}), flush=True)


def _one_tile_run(location, root: Path, tiles: int = 1) -> int:
    """Bytes in and out of one run that records `tiles` x `tiles` tiles (the state folder kept
    from the last)."""
    from ziggurat.io.storage.store import STATS
    from ziggurat.records.ledger import Ledger
    from ziggurat.records.remote import RemoteRecords

    STATS.take()
    records = RemoteRecords(location, None, root)
    records.pull()
    with Ledger(root) as ledger:
        records.attach(ledger)
        for r in range(tiles):
            for c in range(tiles):
                ledger.record_process((14, r, c), "written", "rerun", "k" * 16)
            ledger.commit()
    records.finish()
    counts = STATS.take()
    return sum(v for k, v in counts.items() if k.endswith(("bytes_in", "bytes_out")))


def run(step: str, rows: int, folder: Path, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", step, "--n", str(rows), "--folder", str(folder)],
                          capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{step} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child")
    parser.add_argument("--n", type=int)
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.folder)
        return
    with moto_bucket(BUCKET) as moto:
        env = {**moto, "AWS_ALLOW_HTTP": "true"}
        import boto3

        print("rows        step      seconds   peak RSS   (baseline: the same child doing nothing)")
        for rows in args.rows:
            with tempfile.TemporaryDirectory(prefix="ziggurat-bench-ledger-") as tmp:
                folder = Path(tmp)
                run("build", rows, folder, env)
                for step in ("compact", "pull"):
                    r = run(step, rows, folder, env)
                    print(f"{rows:>10,}  {step:<8} {r['seconds']:8.1f} s {r['rss_mb']:7.0f} MB   "
                          f"(+{r['rss_mb'] - r['base_mb']:.0f} MB over {r['base_mb']:.0f} MB)")
                s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="bench",
                                  aws_secret_access_key="bench", region_name="us-east-1")
                listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"out{rows}/.ziggurat/ledger/").get("Contents", [])
                size = sum(o["Size"] for o in listed) or None
                r = run("rerun", rows, folder, env)
                print(f"{rows:>10,}  one-tile rerun where the last run finished: {r['seconds']:.1f} s, "
                      f"{r['moved']:,} bytes moved" + (f" ({r['moved'] / size:.2%} of the ledger)" if size else ""))
                r = run("region", rows, folder, env)
                print(f"{rows:>10,}  a rerun of one 256 x 256 block (its shard compacted): {r['seconds']:.1f} s, "
                      f"{r['moved']:,} bytes moved" + (f" ({r['moved'] / size:.1%} of the ledger)" if size else "")
                      + f", {r['rss_mb']:.0f} MB peak RSS")
                r = run("window", rows, folder, env)
                print(f"{rows:>10,}  a reader of one window (one shard): {r['seconds']:.1f} s, "
                      f"{r['moved']:,} bytes moved" + (f" ({r['moved'] / size:.1%} of the ledger)" if size else ""))


if __name__ == "__main__":
    main()
