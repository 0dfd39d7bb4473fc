"""Storage locations: URLs and GDAL paths are never mangled; credentials never leak."""

from __future__ import annotations

from pathlib import Path

import pytest

from ziggurat.core.errors import RecipeError
from ziggurat.core.location import Location, gdal_path
from ziggurat.io.storage.options import gdal_options, normalise, obstore_config
from ziggurat.recipe import load_recipe


@pytest.mark.parametrize("text, scheme, bucket, key, gdal", [
    ("s3://bucket/a/b.tif", "s3", "bucket", "a/b.tif", "/vsis3/bucket/a/b.tif"),
    ("/vsis3/bucket/a/b.tif", "s3", "bucket", "a/b.tif", "/vsis3/bucket/a/b.tif"),
    ("gs://b/k", "gs", "b", "k", "/vsigs/b/k"),
    ("az://container/k/", "az", "container", "k", "/vsiaz/container/k"),
    ("https://example.org/x/y.tif", "https", "example.org", "x/y.tif", "/vsicurl/https://example.org/x/y.tif"),
    ("/vsicurl/https://example.org/y.tif", "https", "example.org", "y.tif", "/vsicurl/https://example.org/y.tif"),
    ("/vsizip//data/a.zip/b.tif", "vsi", "", "/vsizip//data/a.zip/b.tif", "/vsizip//data/a.zip/b.tif"),
])
def test_parse_keeps_every_spelling(text: str, scheme: str, bucket: str, key: str, gdal: str) -> None:
    loc = Location.parse(text)
    assert (loc.scheme, loc.bucket, loc.key, loc.gdal) == (scheme, bucket, key, gdal)
    assert gdal_path(text) == gdal


def test_join_relative_and_local_paths(tmp_path: Path) -> None:
    out = Location.parse("s3://bucket/out")
    tile = out.join("3", "5", "7.tif")
    assert tile.url == "s3://bucket/out/3/5/7.tif" and out.relative(tile) == "3/5/7.tif" and tile.name == "7.tif"
    with pytest.raises(ValueError):
        out.relative(Location.parse("s3://other/out/1.tif"))
    local = Location.parse("sub/x.tif", base=tmp_path)
    assert local.is_local and local.path == tmp_path / "sub" / "x.tif"
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        Location.parse("ftp://host/x.tif")


def test_storage_options_spellings_meet_in_one_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_S3_ENDPOINT", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    opts = {"key": "K", "secret": "S", "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}, "anon": False}
    assert normalise(opts) == {"access_key_id": "K", "secret_access_key": "S",
                               "endpoint": "http://127.0.0.1:9000", "anonymous": False}
    config, client = obstore_config(Location.parse("s3://b/k"), opts)
    assert config["endpoint"] == "http://127.0.0.1:9000" and client["allow_http"] is True
    gdal = gdal_options(Location.parse("s3://b/k"), opts)
    assert gdal["AWS_S3_ENDPOINT"] == "127.0.0.1:9000" and gdal["AWS_HTTPS"] == "NO"
    assert gdal["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR" and gdal["AWS_ACCESS_KEY_ID"] == "K"


def test_recipe_errors_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text("def execute():\n    return None\n")
    base = "process: p.py\nzoom_levels: 1\npyramid: {grid: geodetic}\nbounds: [0, 0, 1, 1]\n"
    for output, message in [
        ("{path: 'https://example.org/out'}", "HTTP is read-only"),
        ("{path: 's3://bucket'}", "expected a folder inside the bucket"),
        ("{path: 's3://bucket/x.tif', format: PNG, dtype: uint8}", "expected GTiff for a single-file output"),
        ("{path: 's3://bucket/out', storage_options: 5}", "storage_options"),
    ]:
        recipe = tmp_path / "r.yaml"
        recipe.write_text(base + f"output: {output}\n")
        with pytest.raises(RecipeError, match=message) as info:
            load_recipe(recipe)
        assert "r.yaml:5" in str(info.value)


def test_a_remote_output_keeps_its_state_in_the_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZIGGURAT_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "p.py").write_text("def execute():\n    return None\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("process: p.py\nzoom_levels: 1\npyramid: {grid: geodetic}\nbounds: [0, 0, 1, 1]\n"
                      "output: {path: 's3://bucket/deep/out', storage_options: {secret: s3cr3t-v4lue}}\n")
    out = load_recipe(recipe).output
    assert out.url == "s3://bucket/deep/out" and out.path.name == "out"
    assert (tmp_path / "state") in out.path.parents
    assert "s3cr3t-v4lue" not in repr(out) and out.storage_options["secret"] == "s3cr3t-v4lue"
    recipe.write_text("process: p.py\nzoom_levels: 1\npyramid: {grid: geodetic}\nbounds: [0, 0, 1, 1]\n"
                      "output: {path: /vsis3/bucket/deep/out}\n")
    assert load_recipe(recipe).output.url == "s3://bucket/deep/out"  # GDAL's spelling
