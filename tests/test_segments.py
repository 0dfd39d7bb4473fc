"""Ledger segments as streams: JSON lines through gzip, the older one-array form still read."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ziggurat.core.errors import OutputError
from ziggurat.io.storage.folder_store import FolderStore
from ziggurat.records.segments import fetched, pack, publish_stream, read_file, write_file


def _ops(n: int) -> list[list[object]]:
    return [["p", 12, i // 100, i % 100, "written", "run-1", "2026-12-07T00:00:00Z", "k1", None] for i in range(n)]


def test_a_segment_round_trips_as_one_operation_per_line(tmp_path: Path) -> None:
    ops = _ops(2500)
    path = tmp_path / "s.json.gz"
    assert write_file(iter(ops), path) == 2500
    assert list(read_file(path, "s")) == ops
    assert gzip.decompress(path.read_bytes()).count(b"\n") == 2500
    assert gzip.decompress(pack(ops)) == gzip.decompress(path.read_bytes())   # the same lines either way
    assert pack(ops) == pack(ops)   # no timestamp: same operations, same bytes


def test_older_segments_of_one_json_array_are_still_read(tmp_path: Path) -> None:
    ops = _ops(10)
    path = tmp_path / "old.json.gz"
    path.write_bytes(gzip.compress(json.dumps(ops, separators=(",", ":")).encode()))
    assert list(read_file(path, "old")) == ops


def test_a_broken_segment_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "bad.json.gz"
    path.write_bytes(gzip.compress(b'["p", 1, 2\n'))
    with pytest.raises(OutputError, match="the ledger segment s3://b/x is unreadable"):
        list(read_file(path, "s3://b/x"))


def test_a_store_streams_segments_in_and_out(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "shared")
    assert publish_stream(store, ".ziggurat/ledger/a.json.gz", iter(_ops(3000))) == 3000
    with fetched(store, ".ziggurat/ledger/a.json.gz") as ops:
        assert ops is not None and sum(1 for _ in ops) == 3000
    with fetched(store, ".ziggurat/ledger/gone.json.gz") as ops:
        assert ops is None   # compacted away meanwhile
    assert not list((tmp_path / "shared").rglob(".tmp-*"))
