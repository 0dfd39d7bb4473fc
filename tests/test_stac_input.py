"""`stac` inputs (a STAC catalog as a time series) and the `composite` process, on a synthetic
catalog of 14 scenes with moving clouds (recipes/data/make_scenes.py): filters, items outside a
tile never opened, exact recovery of the clear ground, solar-day grouping, a catalog over HTTP."""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import json
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import rasterio

from ziggurat import engine
from ziggurat.core.errors import RecipeError
from ziggurat.core.grid import Grid
from ziggurat.io import open_input
from ziggurat.io.inputs.stac_items import records
from ziggurat.recipe import InputConfig

from conftest import REPO

_spec = importlib.util.spec_from_file_location("make_scenes", REPO / "recipes" / "data" / "make_scenes.py")
assert _spec is not None and _spec.loader is not None
scenes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scenes)

ASSETS = ("B02", "B03", "B04", "B08", "SCL")
SEASON = {"datetime": ("2024-06-01T00:00:00+00:00", "2024-08-31T23:59:59.999999+00:00")}
QUERY = {"query": {"eo:cloud_cover": {"lt": 60}}}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return scenes.make_catalog(tmp_path_factory.mktemp("scenes"))


def _options(catalog: Path, **extra) -> dict:
    return {"stac": str(catalog), "assets": ASSETS, "group_by": "none", "resampling": "nearest",
            "asset_resampling": {}, **extra}


def _recipe(tmp: Path, catalog: Path | str, extra_input: str = "", zooms: str = "[12, 12]") -> Path:
    path = tmp / "composite.yaml"
    path.write_text(f"""process: composite
zoom_levels: {zooms}
pyramid: {{grid: geodetic}}
input:
  scenes:
    stac: {catalog}
    assets: [B02, B03, B04, B08, SCL]
    datetime: 2024-06-01/2024-08-31
    query: {{eo:cloud_cover: {{lt: 60}}}}
{extra_input}output:
  path: out
  dtype: uint16
  nodata: 0
  bands: [B02, B03, B04, B08, count]
""")
    return path


def test_search_filters_by_datetime_and_query(catalog):
    assert len(records("s", _options(catalog), None)) == 14
    assert len(records("s", _options(catalog, **SEASON), None)) == 13
    assert len(records("s", _options(catalog, **QUERY), None)) == 13
    found = records("s", _options(catalog, **SEASON, **QUERY), None)
    assert len(found) == 12 and [r.datetime for r in found] == sorted(r.datetime for r in found)
    assert all(Path(r.assets["SCL"]).is_file() for r in found)


def test_items_outside_a_tile_are_never_opened(catalog):
    grid = Grid.from_name("geodetic")
    inp = open_input(InputConfig("scenes", catalog.parent, "stac", _options(catalog, **SEASON, **QUERY)), grid)
    west, east = grid.tile_at(scenes.LON + 0.01, scenes.LAT - 0.01, 12), None
    east = grid.tile(12, west.row, west.col + 1)
    stack = inp.for_tile(east).read()
    assert stack.shape == (8, 5, 256, 256) and len(stack.item_ids) == 8   # scenes 8-11 cover the west only
    opened = {Path(h).parent.name for h in inp.opened}
    assert len(opened) == 8 and not opened & {r.id for r in inp.records[8:]}
    assert len(inp.opened) == 8 * 5
    assert inp.for_tile(west).read().shape[0] == 12
    assert inp.for_tile(grid.tile(12, west.row + 5, west.col)).is_empty()
    inp.close()


def _expected(catalog: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ground, clear-observation count) over the whole 512 x 512 area, from the files."""
    found = records("s", _options(catalog, **SEASON, **QUERY), None)
    count = np.zeros((512, 512), dtype=int)
    for r in found:
        with rasterio.open(r.assets["SCL"]) as src:
            scl = src.read(1)
        count[:, :scl.shape[1]] += scl == scenes.CLEAR
    return scenes.ground(512, 512), count


def test_composite_recovers_the_clear_ground_exactly(tmp_path, catalog):
    summary = engine.execute(_recipe(tmp_path, catalog), executor="processes", workers=2)
    assert summary.written == 4
    ground, count = _expected(catalog)
    grid = Grid.from_name("geodetic")
    origin = grid.tile_at(scenes.LON + 0.01, scenes.LAT - 0.01, 12)
    checked = 0
    for dr in (0, 1):
        for dc in (0, 1):
            with rasterio.open(tmp_path / "out" / "12" / str(origin.row + dr) / f"{origin.col + dc}.tif") as src:
                out = src.read()
            g = ground[:, dr * 256:(dr + 1) * 256, dc * 256:(dc + 1) * 256]
            n = count[dr * 256:(dr + 1) * 256, dc * 256:(dc + 1) * 256]
            seen = n > 0
            np.testing.assert_array_equal(out[:4][:, seen], g[:, seen])
            np.testing.assert_array_equal(out[4][seen], n[seen])
            assert (out[:, ~seen] == 0).all()
            checked += int(seen.sum())
    assert checked > 0.9 * 512 * 512 and (count == 0).any()   # some pixels never clear: left as nodata


def test_best_pixel_and_quantile(catalog):
    from ziggurat_processes.composite import composite

    grid = Grid.from_name("geodetic")
    inp = open_input(InputConfig("scenes", catalog.parent, "stac", _options(catalog, **SEASON, **QUERY)), grid)
    tile = grid.tile_at(scenes.LON + 0.01, scenes.LAT - 0.01, 12)
    stack = inp.for_tile(tile).read()
    best = composite(stack, stack.bands, method="best", score="(B08 - B04) / (B08 + B04)")
    low = composite(stack, stack.bands, method="quantile", q=0.0)
    median = composite(stack, stack.bands)
    seen = ~np.ma.getmaskarray(median)[0]
    for result in (best, low):   # one ground, so every reduction of clear observations gives it
        np.testing.assert_array_equal(result[:4][:, seen], median[:4][:, seen])
    xr = pytest.importorskip("xarray")
    da = inp.for_tile(tile).read_xarray()
    assert isinstance(da, xr.DataArray) and da.dims == ("time", "band", "y", "x") and list(da.band) == list(ASSETS)
    inp.close()


def test_solar_day_groups_merge_same_day_items(tmp_path, catalog):
    """An ItemCollection where two scenes of the same solar day (one west-only) count once."""
    found = records("s", _options(catalog, **SEASON, **QUERY), None)
    features = []
    for r in (found[0], found[8]):
        item = json.loads((catalog.parent / r.id / f"{r.id}.json").read_text())
        item["properties"]["datetime"] = "2024-06-01T10:30:00Z" if r is found[0] else "2024-06-01T10:31:00Z"
        item["assets"] = {k: {**v, "href": str(catalog.parent / r.id / Path(v["href"]).name)}
                          for k, v in item["assets"].items()}
        item["links"] = []
        features.append(item)
    coll = tmp_path / "items.json"
    coll.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    grid = Grid.from_name("geodetic")
    tile = grid.tile_at(scenes.LON + 0.01, scenes.LAT - 0.01, 12)
    apart = open_input(InputConfig("s", tmp_path, "stac", _options(coll)), grid).for_tile(tile).read()
    merged = open_input(InputConfig("s", tmp_path, "stac", _options(coll, group_by="solar_day")), grid
                        ).for_tile(tile).read()
    assert apart.shape[0] == 2 and merged.shape[0] == 1 and merged.item_ids == [f"{found[0].id}+{found[8].id}"]
    first = ~np.ma.getmaskarray(apart[0])
    np.testing.assert_array_equal(merged[0].data[first], apart[0].data[first])   # the first item wins
    fill = ~first & ~np.ma.getmaskarray(apart[1])
    np.testing.assert_array_equal(merged[0].data[fill], apart[1].data[fill])


@contextlib.contextmanager
def _served(handler: Any) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 for the test's duration; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _tiles(out: Path) -> dict[Path, bytes]:
    return {p.relative_to(out): p.read_bytes() for p in out.glob("12/*/*.tif")}


def _local_tiles(tmp_path: Path, catalog: Path) -> dict[Path, bytes]:
    """The same recipe over the local catalog: what a remote catalog or an API must give."""
    local = tmp_path / "local"
    local.mkdir()
    engine.execute(_recipe(local, catalog), executor="sequential")
    return _tiles(local / "out")


def test_a_catalog_over_http_is_searched_once_and_read_like_a_local_one(tmp_path, catalog):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(catalog.parent))
    handler.log_message = lambda *a: None   # type: ignore[attr-defined]
    with _served(handler) as base:
        summary = engine.execute(_recipe(tmp_path, base + "catalog.json"), executor="sequential")
        assert summary.written == 4
        cached = list((tmp_path / "out" / ".ziggurat" / "cache").glob("stac-*.json"))
        assert len(cached) == 1 and len(json.loads(cached[0].read_text())) == 12
    local = tmp_path / "local"
    assert _tiles(tmp_path / "out") == _local_tiles(tmp_path, catalog)
    manifest = json.loads((local / "out" / ".ziggurat" / "manifest.json").read_text())
    assert "stac" in json.dumps(manifest) and '"items": 12' in json.dumps(manifest)


@pytest.mark.parametrize("extra,match", [
    ("    query: {eo:cloud_cover: {below: 60}}\n", r"input\.scenes\.query\.eo:cloud_cover\.below: expected one of eq"),
    ("    datetime: June\n", r"input\.scenes\.datetime: expected an RFC 3339 date"),
    ("    group_by: orbit\n", r"input\.scenes\.group_by: expected one of solar_day, none"),
    ("    asset_resampling: {B05: bilinear}\n", r"input\.scenes\.asset_resampling\.B05: expected one of the assets"),
])
def test_bad_stac_settings_name_the_key(tmp_path, catalog, extra, match):
    text = _recipe(tmp_path, catalog).read_text()
    text = text.replace("    datetime: 2024-06-01/2024-08-31\n", "").replace(
        "    query: {eo:cloud_cover: {lt: 60}}\n", "") + ""
    text = text.replace("output:\n", extra + "output:\n", 1)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=match):
        engine.load(path)


def test_periods_make_a_band_per_time_step_named_by_date(tmp_path, catalog):
    recipe = _recipe(tmp_path, catalog).read_text().replace("  bands: [B02, B03, B04, B08, count]\n", """  bands:
    - {name: B04 2024-06, description: June}
    - {name: count 2024-06}
    - {name: B04 2024-07, description: July}
    - {name: count 2024-07}
""").replace("output:\n", """process_parameters:
  periods: [2024-06-01/2024-06-30, 2024-07-01/2024-07-31]
output:\n""").replace("assets: [B02, B03, B04, B08, SCL]", "assets: [B04, SCL]")
    path = tmp_path / "monthly.yaml"
    path.write_text(recipe)
    summary = engine.execute(path, executor="sequential")
    assert summary.written == 4
    grid = Grid.from_name("geodetic")
    origin = grid.tile_at(scenes.LON + 0.01, scenes.LAT - 0.01, 12)
    with rasterio.open(tmp_path / "out" / "12" / str(origin.row) / f"{origin.col}.tif") as src:
        out, names = src.read(), src.descriptions
    assert names == ("B04 2024-06", "count 2024-06", "B04 2024-07", "count 2024-07")
    found = records("s", _options(catalog, **SEASON, **QUERY), None)
    june = [r for r in found if r.datetime.startswith("2024-06")]
    n = np.zeros((256, 256), dtype=int)
    for r in june:
        with rasterio.open(r.assets["SCL"]) as s:
            n += s.read(1, window=((0, 256), (0, 256))) == scenes.CLEAR
    np.testing.assert_array_equal(out[1], n)
    seen = n > 0
    np.testing.assert_array_equal(out[0][seen], scenes.ground(256, 256)[2][seen])
    item = json.loads(Path(summary.stac_item).read_text())
    assert [b["name"] for b in item["asset_templates"]["data"]["raster:bands"]] == list(names)


def test_the_example_recipe_runs_on_the_generated_catalog(tmp_path, monkeypatch):
    """recipes/composite.yaml as the README runs it: scenes made under ZIGGURAT_OUTPUT, overviews
    from the composite, the count band named."""
    scenes.make_catalog(tmp_path / "scenes")
    monkeypatch.setenv("ZIGGURAT_OUTPUT", str(tmp_path))
    summary = engine.execute(REPO / "recipes" / "composite.yaml", executor="processes", workers=2)
    assert not summary.failed and summary.written > 0
    with rasterio.open(next((tmp_path / "composite" / "10").glob("*/*.tif"))) as src:
        assert src.descriptions[-1] == "count" and src.count == 5
        assert src.read(5).max() > 0


class _StacApi(http.server.BaseHTTPRequestHandler):
    """A small STAC API (landing page + item search, GET and POST) over a static catalog's items:
    what pystac-client talks to, served for real over HTTP."""

    items: list[dict] = []
    searches: list[dict] = []
    CONFORMS = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
                "https://api.stacspec.org/v1.0.0/item-search#query", "https://api.stacspec.org/v1.0.0/item-search#filter",
                "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
                "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2"]

    def log_message(self, *args) -> None:
        pass

    def _send(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        base = f"http://{self.headers['Host']}"
        if self.path.split("?")[0] in ("/", ""):
            self._send({"type": "Catalog", "id": "api", "description": "test API", "stac_version": "1.0.0",
                        "conformsTo": self.CONFORMS,
                        "links": [{"rel": "self", "href": f"{base}/"}, {"rel": "root", "href": f"{base}/"},
                                  {"rel": "search", "href": f"{base}/search", "method": "POST",
                                   "type": "application/geo+json"}]})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).searches.append(body)
        start, _, end = (body.get("datetime") or "../..").partition("/")
        out = []
        for item in self.items:
            when = item["properties"]["datetime"]
            cc = item["properties"]["eo:cloud_cover"]
            if item.get("collection") not in body.get("collections", []):
                continue
            if (start not in ("", "..") and when < start[:19]) or (end not in ("", "..") and when > end[:19]):
                continue
            limit = (body.get("query") or {}).get("eo:cloud_cover", {}).get("lt")
            if limit is not None and not cc < limit:
                continue
            cql = body.get("filter")
            if cql and not (cql["op"] == "<" and cc < cql["args"][1]):
                continue
            out.append(item)
        self._send({"type": "FeatureCollection", "features": out, "links": []})


def test_a_stac_api_search_runs_once_per_run(tmp_path, catalog):
    features = []
    for path in sorted(catalog.parent.glob("S2X_*/*.json")):
        item = json.loads(path.read_text())
        item["collection"] = "synthetic-s2"
        item["assets"] = {k: {**v, "href": str(path.parent / Path(v["href"]).name)} for k, v in item["assets"].items()}
        item["links"] = []
        features.append(item)
    _StacApi.items, _StacApi.searches = features, []
    with _served(_StacApi) as url:
        text = _recipe(tmp_path, url).read_text().replace(
            "    query: {eo:cloud_cover: {lt: 60}}\n",
            "    collections: [synthetic-s2]\n    filter: {op: '<', args: [{property: eo:cloud_cover}, 60]}\n")
        recipe = tmp_path / "api.yaml"
        recipe.write_text(text)
        summary = engine.execute(recipe, executor="processes", workers=2)
        assert summary.written == 4
        assert len(_StacApi.searches) == 1   # the parent's one search; workers read its cache
        assert _StacApi.searches[0]["collections"] == ["synthetic-s2"] and "filter" in _StacApi.searches[0]
    assert _tiles(tmp_path / "out") == _local_tiles(tmp_path, catalog)


def test_api_settings_are_checked(tmp_path, catalog):
    text = _recipe(tmp_path, catalog).read_text().replace("output:\n", "    filter: {op: '<'}\noutput:\n", 1)
    (tmp_path / "f.yaml").write_text(text)
    with pytest.raises(RecipeError, match=r"input\.scenes\.filter: expected 'collections' with 'filter'"):
        engine.load(tmp_path / "f.yaml")
    text = _recipe(tmp_path, catalog).read_text().replace("output:\n", "    collections: [x]\noutput:\n", 1)
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(RecipeError, match=r"input\.scenes\.stac: expected the http\(s\) URL of a STAC API"):
        engine.load(tmp_path / "c.yaml")


def test_workers_read_this_runs_search_not_an_earlier_runs(tmp_path, catalog):
    from ziggurat.io.inputs import stac_items

    options = _options(catalog, **SEASON, **QUERY)
    stale = tmp_path / "cache"
    first = records("s", options, str(stale))
    cache = next(stale.glob("stac-*.json"))
    cache.write_text(json.dumps([first[0]._asdict()]))   # an earlier run's cache, one item
    stac_items._SEARCHED.clear()                         # a new process
    assert len(records("s", options, str(stale), refresh=True)) == 12   # the parent searches again ...
    assert len(json.loads(cache.read_text())) == 12                    # ... and the workers read that
