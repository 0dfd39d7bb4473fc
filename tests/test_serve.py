"""The preview server: every endpoint over HTTP, path traversal refused, tiles processed on demand,
and the page in a real browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from starlette.testclient import TestClient

from ziggurat.engine.run import execute
from ziggurat.serve import create

from conftest import REPO, _free_port
from pyramid_helpers import make_recipe

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo recipe's output (hillshade of the Dallas DEM, zooms 8..10)."""
    root = tmp_path_factory.mktemp("demo")
    recipes = root / "recipes"
    shutil.copytree(REPO / "recipes", recipes)
    (recipes / "hillshade.yaml").write_text((recipes / "hillshade.yaml").read_text()
                                            .replace("${ZIGGURAT_OUTPUT:-../output}", str(root)))
    execute(recipes / "hillshade.yaml", executor="sequential")
    return root / "hillshade"


@pytest.fixture(scope="module")
def client(demo) -> TestClient:
    return TestClient(create(demo))


def first_tile(out: Path, zoom: int) -> tuple[int, int, int]:
    path = sorted(out.glob(f"{zoom}/*/*.tif"))[0]
    return zoom, int(path.parent.name), int(path.stem)


def test_the_page_and_its_vendored_libraries(client):
    page = client.get("/")
    assert page.status_code == 200 and "static/vendor/ol.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")       # nothing from a CDN
    ol = client.get("/static/vendor/ol.js")
    assert ol.status_code == 200 and len(ol.content) > 500_000
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/favicon.ico").status_code == 204


def test_info_describes_the_grid_and_the_data(client, demo):
    info = client.get("/api/info").json()
    assert info["crs"] == "EPSG:4326" and info["zooms"] == [8, 9, 10] and info["tms"] == "WorldCRS84Quad"
    assert info["levels"][10]["resolution"] == pytest.approx(180 / 2 ** 10 / 256)
    assert info["levels"][10]["origin"] == [-180.0, 90.0] and info["levels"][10]["tile_size"] == [256, 256]
    assert info["dtype"] == "uint8" and info["nodata"] == 0 and info["bands"] == 1 and not info["rgb"]
    assert "viridis" in info["colormaps"] and info["stretch"][0] < info["stretch"][1]


def test_tiles_render_with_the_chosen_colormap_and_stretch(client, demo):
    z, row, col = first_tile(demo, 10)
    png = client.get(f"/tiles/{z}/{row}/{col}.png?colormap=greys&min=0&max=255")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    with rasterio.MemoryFile(png.content) as mem, mem.open() as img:
        rgba = img.read()
    with rasterio.open(demo / str(z) / str(row) / f"{col}.tif") as src:
        data = src.read(1, masked=True)
    from rio_tiler.colormap import cmap

    greys = cmap.get("greys")
    r, c = np.argwhere(~np.ma.getmaskarray(data))[100]
    assert tuple(rgba[:3, r, c]) == tuple(greys[int(data[r, c])][:3])
    assert (rgba[3] == np.where(np.ma.getmaskarray(data), 0, 255)).all()   # nodata is transparent
    other = client.get(f"/tiles/{z}/{row}/{col}.png?colormap=viridis").content
    assert other != png.content
    assert client.get("/tiles/10/0/0.png").status_code == 204               # no tile there: no data
    assert client.get("/tiles/10/1024/0.png").status_code == 404            # outside the matrix
    assert client.get("/tiles/99/0/0.png").status_code == 404
    assert client.get(f"/map/tiles/WorldCRS84Quad/{z}/{row}/{col}.png").content == \
        client.get(f"/tiles/{z}/{row}/{col}.png").content                    # OGC API - Tiles path
    assert client.get(f"/map/tiles/WebMercatorQuad/{z}/{row}/{col}.png").status_code == 404


def test_values_tile_status_progress_and_quicklook(client, demo):
    z, row, col = first_tile(demo, 10)
    res = 180 / 2 ** 10 / 256
    x, y = -180 + col * 256 * res + 10.5 * res, 90 - row * 256 * res - 20.5 * res
    value = client.get(f"/api/value?zoom={z}&x={x}&y={y}").json()
    with rasterio.open(demo / str(z) / str(row) / f"{col}.tif") as src:
        expected = int(src.read(1)[20, 10])
    assert value == {"zoom": z, "row": row, "col": col, "inside": True, "pixel": [20, 10],
                     "values": [expected if expected != 0 else None]}
    assert client.get("/api/value?zoom=10&x=500&y=0").json()["inside"] is False
    assert client.get("/api/value?zoom=ten").status_code == 400
    status = client.get(f"/api/tile/{z}/{row}/{col}").json()
    assert status["status"] == "written" and status["on_disk"] and len(status["sha256"]) == 64
    assert client.get("/api/tile/10/0/0").json()["status"] == "not processed"
    progress = client.get("/api/progress").json()
    assert progress["counts"] == {"written": 11} and progress["running"] is False
    ql = client.get("/quicklook.png")
    assert ql.status_code == 200 and ql.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_tilejson_and_ogc_tiles_metadata(client):
    tj = client.get("/tilejson.json").json()
    assert tj["tilejson"] == "3.0.0" and tj["tiles"][0].endswith("/tiles/{z}/{y}/{x}.png")
    assert (tj["minzoom"], tj["maxzoom"]) == (8, 10)
    sets = client.get("/map/tiles").json()["tilesets"][0]
    assert sets["tileMatrixSetId"] == "WorldCRS84Quad"
    tms = client.get("/tileMatrixSets/WorldCRS84Quad").json()
    assert tms["id"] == "WorldCRS84Quad" and len(tms["tileMatrices"]) > 10
    assert client.get("/tileMatrixSets/Other").status_code == 404


@pytest.mark.parametrize("path", [
    "/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fmetadata.json",
    "/tiles/../metadata.json", "/tiles/10/1/..%2f..%2f..%2fmetadata.json", "/tiles/10/-1/5.png",
    "/quicklook.png/../.ziggurat/ledger.sqlite", "/metadata.json", "/.ziggurat/ledger.sqlite",
    "/static//etc/passwd", "/api/tile/10/1/x",
])
def test_path_traversal_and_other_files_are_refused(client, path):
    response = client.get(path)
    assert response.status_code == 404, (path, response.status_code)
    assert b"root:" not in response.content and b"SQLite" not in response.content


def test_a_recipe_processes_missing_tiles_on_demand_and_execute_then_skips_them(tmp_path):
    recipe, grid = make_recipe(tmp_path, "geodetic", zooms=(6, 6))
    client = TestClient(create(recipe))
    assert client.get("/api/info").json()["zooms"] == []          # nothing written yet
    assert client.get("/api/progress").json()["total"] == 9      # the recipe's tiles
    png = client.get("/tiles/6/10/20.png")
    assert png.status_code == 200
    assert (tmp_path / "out" / "6" / "10" / "20.tif").is_file()
    assert client.get("/api/tile/6/10/20").json()["status"] == "written"
    assert client.get("/api/info").json()["zooms"] == [6]
    assert client.get("/tiles/6/0/0.png").status_code == 204     # outside the recipe's area: not processed
    assert client.get("/api/tile/6/0/0").json()["status"] == "not processed"
    runs = list((tmp_path / "out" / ".ziggurat" / "runs").glob("*.json"))
    assert len(runs) == 1                                        # one on-demand run, for 6/10/20
    summary = execute(recipe, executor="sequential")
    assert summary.skipped == 1 and summary.written + summary.empty == 8   # 6/10/20 was made on demand


def test_serve_refuses_a_taken_port_and_a_single_file(tmp_path, demo):
    import socket

    from click.testing import CliRunner

    from ziggurat.cli import main
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(demo), "--port", str(port)])
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output
    tif = tmp_path / "one.tif"
    tif.write_bytes(b"")
    result = CliRunner().invoke(main, ["serve", str(tif)])
    assert result.exit_code == 1 and "serve shows raster tile directories" in result.output


@pytest.fixture
def server(demo):
    import uvicorn

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create(demo), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(10)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; `make test` "
                                             "installs it where it can)")
def test_the_page_in_a_real_browser_shows_the_tiles(server, demo, tmp_path):
    from playwright.sync_api import sync_playwright
    from rio_tiler.colormap import cmap

    z, row, col = first_tile(demo, 10)
    res = 180 / 2 ** 10 / 256
    # the view at the tiles' own resolution, centred on a known pixel of a known tile
    r0, c0 = 128, 128
    x, y = -180 + (col * 256 + c0 + 0.5) * res, 90 - (row * 256 + r0 + 0.5) * res
    url = f"{server}?colormap=greys&min=0&max=255&level={z}&resolution={res}&x={x}&y={y}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 700}, device_scale_factor=1)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_function("window.zigguratLoaded >= 1", timeout=30000)
        page.wait_for_timeout(500)
        where = page.evaluate(f"window.zigguratMap.getPixelFromCoordinate([{x}, {y}])")
        box = page.evaluate("(() => { const r = document.getElementById('map').getBoundingClientRect();"
                            " return [r.left, r.top]; })()")
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot))
        page.mouse.move(box[0] + where[0], box[1] + where[1])
        page.wait_for_function("document.getElementById('cursor').textContent.includes('row ')", timeout=10000)
        readout = page.evaluate("document.getElementById('cursor').textContent")
        browser.close()
    assert not errors, errors
    with rasterio.open(shot) as img:
        pixels = img.read()
    with rasterio.open(demo / str(z) / str(row) / f"{col}.tif") as src:
        data = src.read(1)
    px, py = round(box[0] + where[0] - 0.5), round(box[1] + where[1] - 0.5)
    got = pixels[:3, py, px].astype(int)
    expected = np.array(cmap.get("greys")[int(data[r0, c0])][:3])
    assert np.abs(got - expected).max() <= 3, (got, expected)
    map_area = pixels[:3, 20:680, 20:700]
    assert map_area.std() > 5                                   # not blank: the relief shows
    assert f"value {int(data[r0, c0])}" in readout and f"row {row} col {col}" in readout


@pytest.mark.parametrize("grid_name,crs", [("mercator", "EPSG:3857"), ("utm", "EPSG:32633")])
def test_other_grids_are_described_for_the_map(tmp_path, grid_name, crs):
    recipe, grid = make_recipe(tmp_path, grid_name, metatiling=2, output_metatiling=2)
    execute(recipe, executor="sequential")
    info = TestClient(create(tmp_path / "out")).get("/api/info").json()
    assert info["crs"] == crs and (info["proj4"] is None) == (grid_name == "mercator")
    if info["proj4"]:
        assert "+proj=utm" in info["proj4"] and "+zone=33" in info["proj4"]
    top = info["zooms"][-1]
    level = info["levels"][top]
    assert level["tile_size"] == [512, 512]                              # output metatiles of 2 x 256 px
    assert level["resolution"] == pytest.approx(grid.resolution(top)[0])
    assert level["origin"] == pytest.approx([grid.bounds(top).left, grid.bounds(top).top])


def test_progress_shows_a_run_holding_the_output(tmp_path, demo):
    from ziggurat.records.lock import RunLock

    client = TestClient(create(demo))
    assert client.get("/api/progress").json()["running"] is False
    with RunLock(demo):
        busy = client.get("/api/progress").json()
    assert busy["running"] is True and busy["run"]["pid"] > 0
