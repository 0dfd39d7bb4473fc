"""A bucket output's compacted ledger in shards (zoom x 256 x 256 tiles), against a real S3 server:
compaction rewrites only the shards a run touched, a reader may fetch only the shards it wants, a
ledger from before shards is still read and moves to shards at its next compaction."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from ziggurat.core.grid import TileIndex
from ziggurat.core.location import Location
from ziggurat.records.ledger import Ledger
from ziggurat.records.ledger_queries import TileRecord
from ziggurat.records.remote import RemoteRecords, pulled
from ziggurat.records.segments import pack

from conftest import S3_ENV

pytestmark = pytest.mark.usefixtures("s3_server")

A = [(9, r, c) for r in range(3) for c in range(4)]            # shard z9-0-0
B = [(9, r, c) for r in range(3) for c in range(256, 259)]     # shard z9-0-1
C = [(3, 1, 2), (3, 1, 3)]                                    # shard z3-0-0


def _s3() -> Any:
    return boto3.client("s3", endpoint_url=S3_ENV["AWS_ENDPOINT_URL"])


def _ledger_objects(bucket: str) -> dict[str, bytes]:
    got = _s3().list_objects_v2(Bucket=bucket, Prefix="out/.ziggurat/ledger/")
    return {i["Key"][len("out/"):]: _s3().get_object(Bucket=bucket, Key=i["Key"])["Body"].read()
            for i in got.get("Contents", [])}


def _index(bucket: str) -> dict[str, Any]:
    return dict(json.loads(_ledger_objects(bucket)[".ziggurat/ledger/index.json"]))


def _records(bucket: str, root: Path) -> RemoteRecords:
    return RemoteRecords(Location.parse(f"s3://{bucket}/out"), None, root)


def _run(bucket: str, root: Path, tiles: list[tuple[int, int, int]], run: str, *, finish: bool = True) -> RemoteRecords:
    """What a run does with its records: pull, record its tiles, publish them, finish."""
    records = _records(bucket, root)
    records.pull()
    with Ledger(root) as ledger:
        records.attach(ledger, run=run)
        for z, r, c in tiles:
            ledger.record_process(TileIndex(z, r, c), "written", run, key="k1")
            ledger.record_outputs([TileRecord(f"{z}/{r}/{c}.tif", f"{run}-{z}-{r}-{c}", TileIndex(z, r, c), run)])
        ledger.record_key("k1", "{}")
        ledger.commit()
    if finish:
        records.finish()
    return records


def _rows(root: Path) -> set[tuple[Any, ...]]:
    with Ledger(root, create=False) as ledger:
        return {tuple(op[:4]) if op[0] == "p" else tuple(op) for op in ledger.snapshot_ops()
                if op[0] in ("p", "o", "k")}


def test_a_first_run_ends_with_one_shard_per_block_and_no_delta(tmp_path: Path, bucket: str) -> None:
    _run(bucket, tmp_path / "a" / "out", A + B + C, "r1")
    index = _index(bucket)
    assert set(index["shards"]) == {"meta", "z9-0-0", "z9-0-1", "z3-0-0"}
    objects = _ledger_objects(bucket)
    assert set(objects) == {".ziggurat/ledger/index.json", *(e["key"] for e in index["shards"].values())}
    ops = [json.loads(line) for line in gzip.decompress(objects[index["shards"]["z9-0-1"]["key"]]).splitlines()]
    assert sorted(tuple(op[1:4]) for op in ops if op[0] == "p") == sorted(B)
    assert index["shards"]["z9-0-1"]["ops"] == 2 * len(B)


def test_compaction_rewrites_only_the_shards_a_run_touched(tmp_path: Path, bucket: str) -> None:
    _run(bucket, tmp_path / "a" / "out", A + B + C, "r1")
    before = _index(bucket)["shards"]
    records = _run(bucket, tmp_path / "a" / "out", [A[0]], "r2", finish=False)
    records.publish()
    records.compact()
    after = _index(bucket)["shards"]
    assert after["z9-0-0"]["key"] != before["z9-0-0"]["key"]
    assert {n: e["key"] for n, e in after.items() if n != "z9-0-0"} == {
        n: e["key"] for n, e in before.items() if n != "z9-0-0"}
    objects = _ledger_objects(bucket)
    # no delta, no old shard
    assert set(objects) == {".ziggurat/ledger/index.json", *(e["key"] for e in after.values())}
    # another machine rebuilds exactly this ledger from the shards
    with pulled(f"s3://{bucket}/out", must_exist=False) as fresh:
        assert _rows(fresh) == _rows(tmp_path / "a" / "out")
        assert ("o", "9/0/0.tif", 9, 0, 0, "r2-9-0-0", "r2") in _rows(fresh)


def test_a_one_tile_rerun_adds_a_delta_and_rewrites_no_shard(tmp_path: Path, bucket: str) -> None:
    many = [(9, r, c) for r in range(40) for c in range(40)]
    _run(bucket, tmp_path / "a" / "out", many, "r1")
    before = _index(bucket)
    _run(bucket, tmp_path / "b" / "out", [many[5]], "r2")   # another machine: a full pull, then one tile
    assert _index(bucket) == before
    deltas = [k for k in _ledger_objects(bucket) if "/shards/" not in k and not k.endswith("index.json")]
    assert len(deltas) == 1
    with pulled(f"s3://{bucket}/out", must_exist=False) as fresh:   # the shards, then the delta on top
        assert _rows(fresh) == _rows(tmp_path / "b" / "out")
        assert ("o", "9/0/5.tif", 9, 0, 5, "r2-9-0-5", "r2") in _rows(fresh)


def test_a_reader_fetches_only_the_shards_it_wants(tmp_path: Path, bucket: str) -> None:
    _run(bucket, tmp_path / "a" / "out", A + B + C, "r1")
    _run(bucket, tmp_path / "a" / "out", [A[1], B[1]], "r2")   # a delta touching both blocks
    with pulled(f"s3://{bucket}/out", must_exist=False, want=lambda shard: shard == (9, 0, 1)) as part:
        rows = _rows(part)
    tiles = {row[1:4] for row in rows if row[0] == "p"}
    assert tiles == set(B) and ("k", "k1", "{}") in rows
    assert ("o", f"9/{B[1][1]}/{B[1][2]}.tif", *B[1], f"r2-9-{B[1][1]}-{B[1][2]}", "r2") in rows


def test_a_ledger_from_before_shards_is_read_and_moves_to_shards(tmp_path: Path, bucket: str) -> None:
    ops: list[list[Any]] = [["reset"], ["k", "k1", "{}"]]
    for z, r, c in A + B:
        ops.append(["p", z, r, c, "written", "old", 1.0, "k1", None])
        ops.append(["o", f"{z}/{r}/{c}.tif", z, r, c, "sha", "old"])
    _s3().put_object(Bucket=bucket, Key="out/.ziggurat/ledger/00000000000000000001-h-1-compacted.json.gz",
                     Body=pack(ops))
    _run(bucket, tmp_path / "a" / "out", C, "r1")
    index = _index(bucket)
    assert set(index["shards"]) == {"meta", "z9-0-0", "z9-0-1", "z3-0-0"}
    assert not any(k.endswith("-compacted.json.gz") for k in _ledger_objects(bucket))
    with pulled(f"s3://{bucket}/out", must_exist=False) as fresh:
        assert {row[1:4] for row in _rows(fresh) if row[0] == "p"} == set(A + B + C)


def test_a_compaction_that_died_before_its_index_leaves_the_ledger_as_it_was(tmp_path: Path, bucket: str) -> None:
    _run(bucket, tmp_path / "a" / "out", A + B + C, "r1")
    records = _run(bucket, tmp_path / "a" / "out", [A[2]], "r2", finish=False)
    records.publish()

    def died() -> None:
        raise RuntimeError("killed")

    records.fence = died   # the shards are written, the index switch never happens
    with pytest.raises(RuntimeError):
        records.compact()
    with pulled(f"s3://{bucket}/out", must_exist=False) as fresh:
        assert _rows(fresh) == _rows(tmp_path / "a" / "out")
    orphans = len(_ledger_objects(bucket))
    _run(bucket, tmp_path / "b" / "out", [B[2]], "r3", finish=False).compact()
    assert len(_ledger_objects(bucket)) < orphans   # the next compaction removes what the dead one left
    with pulled(f"s3://{bucket}/out", must_exist=False) as fresh:
        assert {row[1:4] for row in _rows(fresh) if row[0] == "p"} == set(A + B + C)


def test_a_reader_that_meets_a_compaction_reads_the_ledger_again(tmp_path: Path, bucket: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _run(bucket, tmp_path / "a" / "out", A + B + C, "r1")
    records = _records(bucket, tmp_path / "reader" / "out")
    real = records.store.get_file
    calls = {"n": 0}

    def once_gone(rel: str, path: Path) -> bool:   # the first shard read finds its object replaced
        if "/shards/" in rel and calls["n"] == 0:
            calls["n"] += 1
            return False
        return real(rel, path)

    monkeypatch.setattr(records.store, "get_file", once_gone)
    records.pull()
    assert calls["n"] == 1 and _rows(tmp_path / "reader" / "out") == _rows(tmp_path / "a" / "out")
