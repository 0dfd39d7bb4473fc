"""Outputs and inputs on object storage, against a real S3 server (moto's, on 127.0.0.1)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import boto3
import numpy as np
import pytest
import rasterio

from ziggurat.core.errors import OutputError
from ziggurat.engine.run import execute

from conftest import S3_ENV, position_raster
from polling import wait_until

pytestmark = pytest.mark.usefixtures("s3_server")
ZIGGURAT = str(Path(sys.executable).parent / "ziggurat")


def s3() -> Any:
    return boto3.client("s3", endpoint_url=S3_ENV["AWS_ENDPOINT_URL"])


def objects(bucket: str, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for page in s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            try:
                out[item["Key"]] = s3().get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            except s3().exceptions.NoSuchKey:  # removed meanwhile (a run's lock)
                continue
    return out


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "state"
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(folder))
    return folder


def dem(tmp_path: Path) -> Path:
    path = tmp_path / "dem.tif"
    position_raster(path, left=0.0, top=1.0, res=1 / 512, width=512, height=512)
    return path


def recipe_text(inp: str, out: str, zooms: str = "[0, 2]", extra: str = "", process: str = "proc.py") -> str:
    return f"""
process: {process}
zoom_levels: {zooms}
pyramid: {{grid: geodetic, metatiling: 1}}
input: {{dem: {inp}}}
output: {{path: {out}, dtype: float32, nodata: -9999{extra}}}
"""


PROC = """
def execute(dem):
    if dem.is_empty():
        return None
    return dem.read() + 1
"""


def test_tiles_to_a_bucket_match_a_local_run(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path]) -> None:
    src = dem(tmp_path)
    local = execute(write_recipe(recipe_text(str(src), str(tmp_path / "local")), "local.yaml", PROC),
                    executor="sequential")
    remote = execute(write_recipe(recipe_text(str(src), f"s3://{bucket}/out"), "remote.yaml", PROC),
                     executor="sequential")
    assert remote.output_tiles == local.output_tiles > 0
    got = objects(bucket, "out/")
    tiles = {k[len("out/"):]: v for k, v in got.items() if k[len("out/")].isdigit()}
    on_disk = {p.relative_to(tmp_path / "local").as_posix(): p.read_bytes()
               for p in (tmp_path / "local").rglob("*.tif")}
    assert tiles == on_disk  # deterministic bytes, same keys
    assert "out/metadata.json" in got and "out/out.json" in got  # metadata and the STAC item
    assert any(k.startswith("out/.ziggurat/ledger/") for k in got)
    assert "out/.ziggurat/lock" not in got
    counts = remote.requests[f"s3://{bucket}"]
    assert counts["PUT"] >= len(tiles) and counts.get("HEAD", 0) == 0


def remote_recipe(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path], zooms: str = "[0, 3]",
                  extra: str = "") -> Path:
    return write_recipe(recipe_text(str(dem(tmp_path)), f"s3://{bucket}/out", zooms, extra), "remote.yaml", PROC)


def test_resume_from_a_fresh_machine_is_a_constant_few_requests(tmp_path: Path, bucket: str,
                                                                 write_recipe: Callable[..., Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = remote_recipe(tmp_path, bucket, write_recipe)
    first = execute(recipe, executor="sequential")
    before = objects(bucket, "out/")
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "elsewhere"))  # no local state at all
    again = execute(recipe, executor="sequential")
    assert again.skipped == first.written + first.empty and again.written == 0
    counts = again.requests[f"s3://{bucket}"]
    assert counts.get("HEAD", 0) == 0
    # not proportional to the tiles: the records, the ledger's index and one shard per zoom (and meta)
    assert counts["PUT"] + counts["GET"] + counts["LIST"] < 25 + 4
    after = objects(bucket, "out/")
    tiles = [k for k in before if k[4].isdigit()]
    assert {k: after[k] for k in tiles} == {k: before[k] for k in tiles}


def test_verify_and_status_read_the_bucket(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path]) -> None:
    from ziggurat.audit.checks import status, verify

    execute(remote_recipe(tmp_path, bucket, write_recipe), executor="sequential")
    result = verify(f"s3://{bucket}/out")
    assert result.ok and result.identical > 0, result.describe()
    key = sorted(k for k in objects(bucket, "out/") if k[4].isdigit())[0]
    s3().put_object(Bucket=bucket, Key=key, Body=b"not a tile")
    s3().put_object(Bucket=bucket, Key="out/9/9/9.tif", Body=b"stray")
    bad = verify(f"s3://{bucket}/out")
    assert not bad.ok and [r.path for r, _ in bad.changed] == [key[4:]] and bad.extra == ["9/9/9.tif"]
    report = status(f"s3://{bucket}/out")
    assert sum(z.written for z in report.zooms) > 0
    import subprocess

    cli = subprocess.run([ZIGGURAT, "verify", f"s3://{bucket}/out"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and cli.stdout.startswith("FAILED") and "9/9/9.tif" in cli.stdout, cli.stderr
    cli = subprocess.run([ZIGGURAT, "status", f"s3://{bucket}/out"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and f"s3://{bucket}/out" in cli.stdout, cli.stderr
    # one zoom at a time: only its ledger shards and its objects are looked at
    zoom = int(key[4:].split("/")[0])
    others = [z for z in range(4) if z != zoom]
    fine = verify(f"s3://{bucket}/out", zooms=others)
    assert fine.ok and 0 < fine.identical < result.identical, fine.describe()
    one = verify(f"s3://{bucket}/out", zooms=[zoom])
    assert [r.path for r, _ in one.changed] == [key[4:]] and fine.identical + one.identical == result.identical - 1
    assert one.extra == (["9/9/9.tif"] if zoom == 9 else [])
    cli = subprocess.run([ZIGGURAT, "verify", f"s3://{bucket}/out", "-z", f"{others[0]},{others[-1]}"],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == (1 if zoom in range(others[0], others[-1] + 1) else 0), cli.stdout + cli.stderr


def test_a_second_run_into_the_same_bucket_output_is_refused(tmp_path: Path, bucket: str,
                                                              write_recipe: Callable[..., Path]) -> None:
    from ziggurat.io.storage.atomic import HOST

    recipe = remote_recipe(tmp_path, bucket, write_recipe)
    holder = {"pid": 1, "host": HOST + "-other", "started": "2026-12-01T00:00:00+00:00",
              "expires": time.time() + 60}
    s3().put_object(Bucket=bucket, Key="out/.ziggurat/lock", Body=json.dumps(holder).encode())
    with pytest.raises(OutputError, match=r"being written by another run \(pid 1 on .*-other"):
        execute(recipe, executor="sequential")
    assert [k for k in objects(bucket, "out/") if k[4].isdigit()] == []  # refused before any tile
    holder["expires"] = 1.0  # expired: a run that is gone
    s3().put_object(Bucket=bucket, Key="out/.ziggurat/lock", Body=json.dumps(holder).encode())
    assert execute(recipe, executor="sequential").written > 0


def test_a_missing_bucket_is_one_clear_error_before_any_tile(tmp_path: Path, s3_server: Any,
                                                             write_recipe: Callable[..., Path]) -> None:
    recipe = remote_recipe(tmp_path, "no-such-bucket-here", write_recipe)
    with pytest.raises(OutputError, match=r"cannot write to s3://no-such-bucket-here/out: the bucket does not exist"):
        execute(recipe, executor="sequential")
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("*.tif"))


def test_gdal_opens_the_stac_item_in_the_bucket(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path]) -> None:
    execute(remote_recipe(tmp_path, bucket, write_recipe, zooms="[2, 3]"), executor="sequential")
    # GDAL reaches the server through the environment (AWS_S3_ENDPOINT, AWS_HTTPS, AWS_VIRTUAL_HOSTING)
    with rasterio.open(f"STACTA:/vsis3/{bucket}/out/out.json:data") as src:
        assert src.count == 1 and src.width > 0
        window = src.read(1, masked=True)
    assert window.count() > 100 and 1 <= float(window.min()) <= float(window.max()) <= 511 * 1000 + 511 + 1


def test_ledger_segments_are_compacted_into_shards(tmp_path: Path, bucket: str,
                                                   write_recipe: Callable[..., Path]) -> None:
    recipe = remote_recipe(tmp_path, bucket, write_recipe)
    execute(recipe, executor="sequential")
    execute(recipe, executor="sequential", overwrite=True)
    ledger = objects(bucket, "out/.ziggurat/ledger/")
    index = json.loads(ledger.pop("out/.ziggurat/ledger/index.json"))
    assert all(k.startswith("out/.ziggurat/ledger/shards/") for k in ledger)   # no delta left
    assert sorted(e["key"] for e in index["shards"].values()) == sorted(k[len("out/"):] for k in ledger)
    assert set(index["shards"]) == {"meta", "z0-0-0", "z1-0-0", "z2-0-0", "z3-0-0"}
    ops = {name: [json.loads(line) for line in gzip.decompress(ledger[f"out/{e['key']}"]).decode().splitlines()]
           for name, e in index["shards"].items()}   # one operation per line: read and written as streams
    assert {op[0] for op in ops["meta"]} == {"k"} and {op[0] for op in ops["z3-0-0"]} == {"p", "o"}
    assert all(op[1] == 3 for op in ops["z3-0-0"] if op[0] == "p")


def test_storage_options_never_reach_provenance(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    extra = (", storage_options: {key: test-key, secret: sup3r-s3cret-value, "
             f"client_kwargs: {{endpoint_url: '{S3_ENV['AWS_ENDPOINT_URL']}'}}}}")
    execute(remote_recipe(tmp_path, bucket, write_recipe, extra=extra), executor="sequential")
    published = objects(bucket, "out/")
    assert any(k.endswith("recipe.yaml") for k in published)
    for key, data in published.items():
        assert b"sup3r-s3cret-value" not in (gzip.decompress(data) if key.endswith(".gz") else data), key
    local = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
    assert b"sup3r-s3cret-value" not in local




def upload(bucket: str, key: str, path: Path) -> str:
    s3().upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def tile_objects(bucket: str, prefix: str) -> dict[str, bytes]:
    return {k[len(prefix):]: v for k, v in objects(bucket, prefix).items() if k[len(prefix)].isdigit()}


@pytest.mark.slow
def test_s3_input_and_output_with_the_process_pool_and_dask(tmp_path: Path, bucket: str,
                                                            write_recipe: Callable[..., Path]) -> None:
    import subprocess

    from ziggurat.executors.dask import DaskExecutor

    src = upload(bucket, "inputs/dem.tif", dem(tmp_path))
    local = execute(write_recipe(recipe_text(str(dem(tmp_path)), str(tmp_path / "local")), "local.yaml", PROC),
                    executor="sequential")
    pool_recipe = write_recipe(recipe_text(src, f"s3://{bucket}/pool"), "pool.yaml", PROC)
    done = subprocess.run([ZIGGURAT, "execute", str(pool_recipe), "-e", "processes", "-w", "2", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Unsupported option" not in done.stderr and "Warning" not in done.stderr
    assert f"s3://{bucket}:" in done.stdout and "0 HEAD" not in done.stdout  # the request line
    dask_recipe = write_recipe(recipe_text(src, f"s3://{bucket}/dask"), "dask.yaml", PROC)
    summary = execute(dask_recipe, executor=DaskExecutor(2, dashboard_address=":0"))
    assert summary.ok and summary.requests[f"s3://{bucket}"]["PUT"] >= summary.output_tiles
    on_disk = {p.relative_to(tmp_path / "local").as_posix(): p.read_bytes()
               for p in (tmp_path / "local").rglob("*.tif")}
    assert tile_objects(bucket, "pool/") == on_disk == tile_objects(bucket, "dask/")
    assert local.output_tiles == len(on_disk)


SLOW_PROC = """
import time

def execute(dem):
    if dem.is_empty():
        return None
    time.sleep(0.4)
    return dem.read() + 1
"""


@pytest.mark.slow
def test_kill_9_then_a_rerun_from_a_fresh_machine_gives_identical_objects(tmp_path: Path, bucket: str,
                                                                         write_recipe: Callable[..., Path]) -> None:
    import os
    import signal
    import subprocess

    src = str(dem(tmp_path))
    clean = write_recipe(recipe_text(src, f"s3://{bucket}/clean", "[8, 10]", process="slow.py"), "clean.yaml",
                         SLOW_PROC, "slow.py")
    assert execute(clean, executor="threads").ok
    recipe = write_recipe(recipe_text(src, f"s3://{bucket}/out", "[8, 10]", process="slow.py"), "out.yaml",
                          SLOW_PROC, "slow.py")
    env = {**os.environ, "ZIGGURAT_STATE_DIR": str(tmp_path / "machine-1")}
    proc = subprocess.Popen([ZIGGURAT, "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (len(tile_objects(bucket, "out/")) >= 12
                                          and objects(bucket, "out/.ziggurat/ledger/")):  # a published segment
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = tile_objects(bucket, "out/")
    assert 12 <= len(partial) < len(tile_objects(bucket, "clean/"))
    env["ZIGGURAT_STATE_DIR"] = str(tmp_path / "machine-2")  # no local state from the killed run
    again = subprocess.run([ZIGGURAT, "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "skipped" in again.stdout and " 0 skipped" not in again.stdout  # it resumed
    assert tile_objects(bucket, "out/") == tile_objects(bucket, "clean/")
    from ziggurat.audit.checks import verify

    assert verify(f"s3://{bucket}/out").ok


class LocalServer:
    """A real HTTP server on 127.0.0.1 (a free port), serving from a thread until `close`."""

    def serve(self, handler: Any) -> None:
        import http.server
        import threading

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FaultyProxy(LocalServer):
    """A real HTTP proxy in front of the S3 server that answers some requests with S3 errors:
    every `every`-th PUT of a tile gets ``503 SlowDown``; buckets in `denied` get ``403 AccessDenied``."""

    def __init__(self, every: int = 0, denied: tuple[str, ...] = (), fail_lists: tuple[int, ...] = ()) -> None:
        import http.client
        import http.server
        import urllib.parse

        proxy = self
        self.every, self.denied, self.puts, self.refused = every, denied, 0, 0
        self.fail_lists, self.lists = fail_lists, 0  # these listing requests (0-based) answer 503
        target = urllib.parse.urlsplit(S3_ENV["AWS_ENDPOINT_URL"])

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _error(self, status: int, code: str) -> None:
                body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{code}</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if any(self.path.startswith(f"/{b}") for b in proxy.denied):
                    return self._error(403, "AccessDenied")
                if self.command == "GET" and "list-type" in self.path:
                    proxy.lists += 1
                    if proxy.lists - 1 in proxy.fail_lists:
                        proxy.refused += 1
                        return self._error(503, "SlowDown")
                if self.command == "PUT" and ".tif" in self.path:
                    proxy.puts += 1
                    if proxy.every and proxy.puts % proxy.every == 0:
                        proxy.refused += 1
                        return self._error(503, "SlowDown")
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = target.netloc
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.serve(Handler)


def test_throttling_is_retried_and_counted(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path]) -> None:
    proxy = FaultyProxy(every=3)
    try:
        extra = f", storage_options: {{endpoint_url: '{proxy.url}'}}"
        summary = execute(remote_recipe(tmp_path, bucket, write_recipe, extra=extra), executor="threads")
    finally:
        proxy.close()
    assert summary.ok and proxy.refused > 0
    assert summary.requests[f"s3://{bucket}"]["retries"] == proxy.refused
    manifest = next((tmp_path / "state").rglob("runs/*.json"))
    assert json.loads(manifest.read_text())["requests"][f"s3://{bucket}"]["retries"] == proxy.refused
    local = execute(write_recipe(recipe_text(str(dem(tmp_path)), str(tmp_path / "local"), "[0, 3]"), "l.yaml", PROC),
                    executor="sequential")
    assert len(tile_objects(bucket, "out/")) == local.output_tiles


def test_access_denied_is_one_clear_error_before_any_tile(tmp_path: Path, bucket: str,
                                                          write_recipe: Callable[..., Path]) -> None:
    import subprocess

    proxy = FaultyProxy(denied=(bucket,))
    try:
        extra = f", storage_options: {{endpoint_url: '{proxy.url}'}}"
        recipe = remote_recipe(tmp_path, bucket, write_recipe, extra=extra)
        done = subprocess.run([ZIGGURAT, "execute", str(recipe), "-e", "sequential", "--no-progress"],
                              capture_output=True, text=True, timeout=120)
    finally:
        proxy.close()
    assert done.returncode != 0, done.stderr
    assert f"cannot write to s3://{bucket}/out: access denied" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert objects(bucket) == {}


class RangeServer(LocalServer):
    """A real HTTP server for a folder, with the Range requests GDAL's /vsicurl/ makes."""

    def __init__(self, folder: Path) -> None:
        import functools
        import http.server

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def send_head(self) -> Any:
                rng = self.headers.get("Range")
                path = Path(self.translate_path(self.path))
                if not rng or not path.is_file():
                    return super().send_head()
                size = path.stat().st_size
                start_text, _, end_text = rng.removeprefix("bytes=").partition("-")
                start, end = int(start_text), min(int(end_text or size - 1), size - 1)
                with path.open("rb") as fh:
                    fh.seek(start)
                    body = fh.read(end - start + 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                import io

                return io.BytesIO(body)

        self.serve(functools.partial(Handler, directory=str(folder)))


def test_http_inputs_raster_and_tile_directory_without_warning_noise(tmp_path: Path,
                                                                     write_recipe: Callable[..., Path]) -> None:
    import subprocess

    web = tmp_path / "web"
    web.mkdir()
    dem(web)
    base = execute(write_recipe(recipe_text(str(web / "dem.tif"), str(web / "pyramid"), "[0, 3]"), "b.yaml", PROC),
                   executor="sequential")
    server = RangeServer(web)
    try:
        over_http = write_recipe(recipe_text(f"{server.url}/dem.tif", str(tmp_path / "from-http"), "[0, 3]"),
                                 "h.yaml", PROC)
        done = subprocess.run([ZIGGURAT, "execute", str(over_http), "-e", "sequential", "--no-progress"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == ""  # no "Unsupported option: http" flood
        ident = "def execute(dem):\n    return None if dem.is_empty() else dem.read()\n"
        from_dir = write_recipe(recipe_text(f"{server.url}/pyramid", str(tmp_path / "from-dir"), "[0, 3]",
                                            process="ident.py"), "d.yaml", ident, "ident.py")
        summary = execute(from_dir, executor="sequential")
    finally:
        server.close()
    tiles = {p.relative_to(web / "pyramid").as_posix(): p for p in (web / "pyramid").rglob("*.tif")}
    assert base.output_tiles == len(tiles) == summary.output_tiles
    for rel, path in tiles.items():
        with rasterio.open(path) as a, rasterio.open(tmp_path / "from-http" / rel) as b, \
                rasterio.open(tmp_path / "from-dir" / rel) as c:
            assert np.array_equal(a.read(), b.read()) and np.array_equal(a.read(), c.read())


def test_a_bucket_output_is_the_input_of_another_recipe(tmp_path: Path, bucket: str,
                                                        write_recipe: Callable[..., Path]) -> None:
    execute(remote_recipe(tmp_path, bucket, write_recipe), executor="sequential")
    ident = "def execute(dem):\n    return None if dem.is_empty() else dem.read() * 2\n"
    second = write_recipe(recipe_text(f"s3://{bucket}/out", f"s3://{bucket}/doubled", "[0, 3]", process="ident.py"),
                          "second.yaml", ident, "ident.py")
    summary = execute(second, executor="sequential")
    first, doubled = tile_objects(bucket, "out/"), tile_objects(bucket, "doubled/")
    assert summary.ok and set(first) == set(doubled) and first
    for rel in first:
        with rasterio.MemoryFile(first[rel]) as a, rasterio.MemoryFile(doubled[rel]) as b:
            with a.open() as ra, b.open() as rb:
                x, y = ra.read(masked=True), rb.read(masked=True)
                assert np.array_equal(x.mask, y.mask) and np.allclose(x.compressed() * 2, y.compressed())


def test_a_replaced_input_object_makes_its_tiles_stale(tmp_path: Path, bucket: str,
                                                       write_recipe: Callable[..., Path]) -> None:
    src = upload(bucket, "inputs/dem.tif", dem(tmp_path))
    recipe = write_recipe(recipe_text(src, f"s3://{bucket}/out", "[0, 2]"), "r.yaml", PROC)
    first = execute(recipe, executor="sequential")
    assert execute(recipe, executor="sequential").skipped == first.written + first.empty
    other = tmp_path / "other.tif"
    position_raster(other, left=0.0, top=1.0, res=1 / 512, width=512, height=512, nodata=-1.0)
    upload(bucket, "inputs/dem.tif", other)
    again = execute(recipe, executor="sequential")
    assert again.written == first.written and again.skipped == 0
    assert any("dem" in why for why in again.stale), again.stale


VECTOR_PROC = """
import shapely

def execute(tile):
    b = tile.bounds
    return [{"geometry": shapely.box(b.left, b.bottom, b.left + 0.1, b.bottom + 0.1),
             "properties": {"name": f"{tile.zoom}-{tile.row}-{tile.col}"}}]
"""


@pytest.mark.parametrize("fmt, suffix", [("GeoJSON", ".geojson"), ("FlatGeobuf", ".fgb")])
def test_vector_tiles_to_a_bucket_match_a_local_run(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path],
                                                    fmt: str, suffix: str) -> None:
    def text(out: str) -> str:
        return f"""
process: vec.py
zoom_levels: [3, 5]
pyramid: {{grid: geodetic}}
bounds: [0, 0, 10, 10]
output: {{path: '{out}', format: {fmt}, schema: {{geometry: Polygon, properties: {{name: str}}}}}}
"""
    local = execute(write_recipe(text(str(tmp_path / "local")), "l.yaml", VECTOR_PROC, "vec.py"), executor="sequential")
    remote = execute(write_recipe(text(f"s3://{bucket}/vec"), "r.yaml", VECTOR_PROC, "vec.py"), executor="threads")
    on_disk = {p.relative_to(tmp_path / "local").as_posix(): p.read_bytes()
               for p in (tmp_path / "local").rglob(f"*{suffix}")}
    assert remote.output_tiles == local.output_tiles == len(on_disk) > 0
    assert tile_objects(bucket, "vec/") == on_disk
    from ziggurat.audit.checks import verify

    assert verify(f"s3://{bucket}/vec").ok


@pytest.mark.slow
def test_two_concurrent_runs_the_second_refuses(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path]) -> None:
    import os
    import subprocess

    recipe = write_recipe(recipe_text(str(dem(tmp_path)), f"s3://{bucket}/out", "[8, 10]", process="slow.py"),
                          "out.yaml", SLOW_PROC, "slow.py")
    first = subprocess.Popen([ZIGGURAT, "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"],
                             env={**os.environ, "ZIGGURAT_STATE_DIR": str(tmp_path / "m1")},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and "out/.ziggurat/lock" not in objects(bucket, "out/.ziggurat/"):
        time.sleep(0.05)
    second = subprocess.run([ZIGGURAT, "execute", str(recipe), "-e", "sequential", "--no-progress"],
                            env={**os.environ, "ZIGGURAT_STATE_DIR": str(tmp_path / "m2")},
                            capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode != 0 and "is being written by another run" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    from ziggurat.audit.checks import verify

    assert verify(f"s3://{bucket}/out").ok


def test_plan_reads_the_bucket_records_and_checks_the_bucket(tmp_path: Path, bucket: str,
                                                             write_recipe: Callable[..., Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from ziggurat.audit.report import dry_run

    recipe = remote_recipe(tmp_path, bucket, write_recipe)
    assert sum(z.recorded for z in dry_run(recipe).zooms) == 0  # nothing there yet: not an error
    summary = execute(recipe, executor="sequential")
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "elsewhere"))
    report = dry_run(recipe)
    assert sum(z.recorded for z in report.zooms) == summary.written + summary.empty
    assert not (tmp_path / "elsewhere").exists()  # plan never writes a state folder
    with pytest.raises(OutputError, match="the bucket does not exist"):
        dry_run(remote_recipe(tmp_path, "no-such-bucket-plan", write_recipe))


def test_a_mosaic_globbed_in_a_bucket_matches_the_same_files_on_disk(tmp_path: Path, bucket: str,
                                                                    write_recipe: Callable[..., Path]) -> None:
    files = tmp_path / "dem"
    files.mkdir()
    for i, left in enumerate((0.0, 0.5)):  # two halves, 1/512 degree, values encode row/col
        position_raster(files / f"part{i}.tif", left=left, top=1.0, res=1 / 512, width=256, height=512)
        upload(bucket, f"dem/part{i}.tif", files / f"part{i}.tif")
    upload(bucket, "dem/readme.txt", dem(tmp_path))  # not matched by the pattern

    def text(pattern: str, out: str) -> str:
        return f"""
process: convert
zoom_levels: [0, 3]
pyramid: {{grid: geodetic}}
input: {{inp: {{mosaic: ['{pattern}']}}}}
output: {{path: '{out}', dtype: float32, nodata: -9999}}
"""
    local = execute(write_recipe(text(str(files / "part*.tif"), str(tmp_path / "local")), "l.yaml"),
                    executor="sequential")
    remote = execute(write_recipe(text(f"s3://{bucket}/dem/part*.tif", f"s3://{bucket}/merged"), "r.yaml"),
                     executor="threads")
    on_disk = {p.relative_to(tmp_path / "local").as_posix(): p.read_bytes()
               for p in (tmp_path / "local").rglob("*.tif")}
    assert remote.output_tiles == local.output_tiles == len(on_disk) > 0
    assert tile_objects(bucket, "merged/") == on_disk
    again = execute(write_recipe(text(f"s3://{bucket}/dem/part*.tif", f"s3://{bucket}/merged"), "r.yaml"),
                    executor="sequential")
    assert again.written == 0 and again.skipped == remote.written + remote.empty


def test_missing_credentials_are_one_clear_error_naming_the_output(tmp_path: Path, bucket: str,
                                                                   write_recipe: Callable[..., Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    with pytest.raises(OutputError, match=rf"cannot write to s3://{bucket}/out: no credentials found: set "
                                          "AWS_ACCESS_KEY_ID"):
        execute(remote_recipe(tmp_path, bucket, write_recipe), executor="sequential")
    assert objects(bucket) == {}


def test_a_single_cog_in_a_bucket(tmp_path: Path, bucket: str, write_recipe: Callable[..., Path],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from ziggurat.audit.checks import verify

    src = str(dem(tmp_path))
    extra = ", cog: true"
    local = execute(write_recipe(recipe_text(src, str(tmp_path / "local.tif"), "9", extra), "l.yaml", PROC),
                    executor="sequential")
    remote = write_recipe(recipe_text(src, f"s3://{bucket}/maps/dem.tif", "9", extra), "r.yaml", PROC)
    summary = execute(remote, executor="sequential")
    assert summary.ok and local.ok
    got = objects(bucket, "maps/")
    assert got["maps/dem.tif"] == (tmp_path / "local.tif").read_bytes()  # one object, the same bytes
    assert any(k.startswith("maps/dem.tif.ziggurat/runs/") for k in got)
    assert any(k.startswith("maps/dem.tif.ziggurat/ledger/") for k in got)
    with rasterio.open(f"/vsis3/{bucket}/maps/dem.tif") as cog:
        assert cog.overviews(1) and cog.read(1).shape == (cog.height, cog.width)
    assert verify(f"s3://{bucket}/maps/dem.tif").ok
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(OutputError, match=rf"output file s3://{bucket}/maps/dem.tif exists; use --overwrite"):
        execute(remote, executor="sequential")
    assert execute(remote, executor="sequential", overwrite=True).ok
    assert objects(bucket, "maps/dem.tif")["maps/dem.tif"] == got["maps/dem.tif"]


def test_a_failed_listing_page_is_retried_from_where_it_stopped(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from ziggurat.core.location import Location
    from ziggurat.io.storage import store as store_module
    from ziggurat.io.storage.store import STATS, ObjectStore

    monkeypatch.setattr(store_module, "LIST_PAGE", 100)  # chunks handed out; S3 pages hold 1,000
    client = s3()
    with ThreadPoolExecutor(16) as pool:  # two S3 pages
        list(pool.map(lambda n: client.put_object(Bucket=bucket, Key=f"many/{n:05d}", Body=b"x"), range(1500)))
    proxy = FaultyProxy(fail_lists=(0, 2))  # the first page's first try, then the second page's
    try:
        STATS.take()
        store = ObjectStore(Location.parse(f"s3://{bucket}/many"), {"endpoint_url": proxy.url})
        listed = [rel for rel, _ in store.list_all("")]
    finally:
        proxy.close()
    assert proxy.refused == 2 and proxy.lists == 4, proxy.lists
    assert listed == [f"{n:05d}" for n in range(1500)], (len(listed), len(set(listed)))
    assert STATS.by_store()[f"s3://{bucket}"]["retries"] == 2


def test_only_real_server_errors_are_transient() -> None:
    from ziggurat.io.storage.store import _transient

    not_found = ("Generic S3 error: Error performing GET http://x/b/k in 5.00312ms - Server returned non-2xx "
                 "status code: 404 Not Found: <Error><Code>NoSuchBucket</Code><RequestId>A503B500</RequestId>")
    assert not _transient(RuntimeError(not_found))
    assert _transient(RuntimeError("... Server returned non-2xx status code: 503 Service Unavailable: SlowDown"))
    assert _transient(RuntimeError("Generic S3 error: error sending request for url (http://127.0.0.1:1/b)"))
    assert not _transient(RuntimeError("... status code: 403 Forbidden: <Code>AccessDenied</Code> in 5.003ms"))


def test_a_changed_upstream_tile_in_a_bucket_makes_only_its_dependents_stale(tmp_path: Path, bucket: str,
                                                                             write_recipe: Callable[..., Path]) -> None:
    execute(remote_recipe(tmp_path, bucket, write_recipe), executor="sequential")
    ident = "def execute(dem):\n    return None if dem.is_empty() else dem.read() * 2\n"
    second = write_recipe(recipe_text(f"s3://{bucket}/out", f"s3://{bucket}/doubled", "[3, 3]", process="ident.py"),
                          "second.yaml", ident, "ident.py")
    first = execute(second, executor="sequential")
    assert first.written >= 1 and execute(second, executor="sequential").written == 0
    upstream = sorted(k for k in objects(bucket, "out/3/"))[0]  # one upstream tile changes
    with rasterio.MemoryFile(objects(bucket, upstream)[upstream]) as mem, mem.open() as src:
        profile, data = src.profile, src.read()
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data + 1)
        s3().put_object(Bucket=bucket, Key=upstream, Body=mem.read())
    again = execute(second, executor="sequential")
    assert again.written == 1 and again.stale == {"input files it reads changed": 1}


def test_plan_says_the_requests_a_bucket_run_will_make(tmp_path: Path, bucket: str,
                                                       write_recipe: Callable[..., Path]) -> None:
    from ziggurat.audit.report import dry_run

    src = upload(bucket, "inputs/dem.tif", dem(tmp_path))
    recipe = write_recipe(recipe_text(src, f"s3://{bucket}/out", zooms="[0, 10]"), "r.yaml", PROC)
    expected = dry_run(recipe)
    assert expected.requests is not None and "requests (estimate):" in expected.describe()
    assert json.loads(json.dumps(expected.to_dict()))["requests"]["PUT"] == expected.requests["PUT"]
    spent = execute(recipe, executor="sequential").requests[f"s3://{bucket}"]
    assert spent["PUT"] > 50
    for kind in ("PUT", "GET", "LIST"):
        assert abs(expected.requests[kind] - spent.get(kind, 0)) <= max(1, 0.1 * spent.get(kind, 0)), (kind, spent)
    again = dry_run(recipe).requests   # nothing left to do: the records' requests only
    assert again is not None and again["PUT"] < 15 and again["bytes_out"] == 0
    local = write_recipe(recipe_text(src, str(tmp_path / "local")), "l.yaml", PROC)
    assert dry_run(local).requests is None   # a local output makes no requests


def test_overwrite_deletes_stale_objects_in_bulk_before_the_ledger_says_they_are_gone(
        tmp_path: Path, bucket: str, write_recipe: Callable[..., Path]) -> None:
    src = upload(bucket, "inputs/dem.tif", dem(tmp_path))
    proc = "def execute(dem, empty=False):\n    return None if empty or dem.is_empty() else dem.read() + 1\n"
    recipe = write_recipe(recipe_text(src, f"s3://{bucket}/out", zooms="[0, 10]"), "r.yaml", proc)
    first = execute(recipe, executor="sequential")
    assert first.output_tiles > 50 and len(tile_objects(bucket, "out/")) == first.output_tiles
    emptied = write_recipe(recipe_text(src, f"s3://{bucket}/out", zooms="[0, 10]",
                                       extra="}\nprocess_parameters: {empty: true"), "r.yaml", proc)
    second = execute(emptied, executor="sequential", overwrite=True)
    assert second.empty == first.written and tile_objects(bucket, "out/") == {}
    # one DeleteObjects for the tiles; the rest are the run lock and the replaced ledger objects
    assert second.requests[f"s3://{bucket}"]["DELETE"] <= 5 < first.output_tiles
    done = subprocess.run([ZIGGURAT, "verify", f"s3://{bucket}/out"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_rerun_on_the_same_machine_pulls_only_what_is_new(tmp_path: Path, bucket: str,
                                                             write_recipe: Callable[..., Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = remote_recipe(tmp_path, bucket, write_recipe, zooms="[0, 8]")
    first = execute(recipe, executor="sequential")
    assert first.written > 10
    # nothing to do, on the machine that ran it: no ledger segment travels, no shard is rewritten
    shards = objects(bucket, "out/.ziggurat/ledger/shards/")
    again = execute(recipe, executor="sequential").requests[f"s3://{bucket}"]
    ledger = objects(bucket, "out/.ziggurat/ledger/")
    assert {k: v for k, v in ledger.items() if "/shards/" in k} == shards
    assert len(ledger) - len(shards) <= 2   # the index and a small new delta
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "fresh"))   # the same, from nothing: a full pull
    fresh = execute(recipe, executor="sequential").requests[f"s3://{bucket}"]
    assert again["GET"] < fresh["GET"] and again.get("bytes_in", 0) < fresh["bytes_in"]
    # a tile rebuilt elsewhere (another state folder) is seen here: the newer segment is pulled
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "elsewhere"))
    tile = sorted(k for k in objects(bucket, "out/") if k[4].isdigit())[0][4:].removesuffix(".tif").split("/")
    execute(recipe, executor="sequential", overwrite=True, tile=tuple(map(int, tile)))
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "state"))
    from ziggurat.audit.checks import verify

    third = execute(recipe, executor="sequential")
    assert third.written == 0 and third.skipped == first.written + first.empty
    assert verify(f"s3://{bucket}/out").ok   # the bucket's ledger agrees with the tiles
    local = tmp_path / "state"
    assert any(local.rglob("ledger.synced.json"))   # what makes the next pull incremental


@pytest.mark.slow
def test_a_paused_writer_that_lost_its_lock_stops_without_publishing(tmp_path: Path, bucket: str,
                                                                     write_recipe: Callable[..., Path]) -> None:
    """Run A is SIGSTOPped past its lock's expiry, run B takes the output over and finishes; when A
    wakes it must not publish over B's records: it stops with a clear error, and the bucket verifies."""
    import os
    import signal

    slow = "import time\n\ndef execute(dem):\n    if dem.is_empty():\n        return None\n" \
           "    time.sleep(0.3)\n    return dem.read() + 1\n"
    recipe = write_recipe(recipe_text(upload(bucket, "inputs/dem.tif", dem(tmp_path)), f"s3://{bucket}/out",
                                      zooms="[0, 8]"), "r.yaml", slow)
    env = {**os.environ, "ZIGGURAT_LOCK_SECONDS": "3"}
    a = subprocess.Popen([ZIGGURAT, "execute", str(recipe), "-e", "sequential", "--no-progress"], text=True,
                         env={**env, "ZIGGURAT_STATE_DIR": str(tmp_path / "a")}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    assert wait_until(lambda: len(tile_objects(bucket, "out/")) >= 2, timeout=60)
    os.killpg(a.pid, signal.SIGSTOP)
    try:
        time.sleep(4)   # past the lock's expiry
        b = subprocess.run([ZIGGURAT, "execute", str(recipe), "-e", "sequential", "--no-progress"],
                           env={**env, "ZIGGURAT_STATE_DIR": str(tmp_path / "b")}, capture_output=True, text=True,
                           timeout=300)
        assert b.returncode == 0, b.stderr
        assert "taking over the lock" in b.stderr
    finally:
        os.killpg(a.pid, signal.SIGCONT)
    out, err = a.communicate(timeout=120)
    assert a.returncode != 0 and "lost its lock" in err and "Traceback" not in err, err
    assert "another run took it over" in err and "run 20" in err, err   # names the run that took over
    verify = subprocess.run([ZIGGURAT, "verify", f"s3://{bucket}/out"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ZIGGURAT_STATE_DIR": str(tmp_path / "v")})
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow
def test_a_resume_after_kill_9_on_the_same_machine_redoes_only_unrecorded_tiles(
        tmp_path: Path, bucket: str, write_recipe: Callable[..., Path]) -> None:
    import os
    import signal
    import sqlite3

    slow = "import time\n\ndef execute(dem):\n    if dem.is_empty():\n        return None\n" \
           "    time.sleep(0.2)\n    return dem.read() + 1\n"
    recipe = write_recipe(recipe_text(upload(bucket, "inputs/dem.tif", dem(tmp_path)), f"s3://{bucket}/out",
                                      zooms="[0, 8]"), "r.yaml", slow)
    state = tmp_path / "state"
    env = {**os.environ, "ZIGGURAT_STATE_DIR": str(state)}
    a = subprocess.Popen([ZIGGURAT, "execute", str(recipe), "-e", "sequential", "--no-progress"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    assert wait_until(lambda: len(tile_objects(bucket, "out/")) >= 5, timeout=60)
    os.killpg(a.pid, signal.SIGKILL)
    a.wait()
    ledger = next(state.rglob("ledger.sqlite"))
    with sqlite3.connect(ledger) as db:   # what the killed run had committed locally
        committed = db.execute("SELECT count(*) FROM process_tiles WHERE status IN ('written', 'empty')").fetchone()[0]
    assert committed >= 5
    resumed = subprocess.run([ZIGGURAT, "execute", str(recipe), "-e", "sequential", "--no-progress"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f" {committed} skipped" in resumed.stdout, (committed, resumed.stdout)   # none of them redone
    verify = subprocess.run([ZIGGURAT, "verify", f"s3://{bucket}/out"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ZIGGURAT_STATE_DIR": str(tmp_path / "v")})
    assert verify.returncode == 0, verify.stdout + verify.stderr   # the bucket's ledger has every tile
