"""PMTiles archives packed from mercator raster tile directories: read back by the `pmtiles`
package (tile ids, header, metadata), served by `ziggurat serve out.pmtiles`."""

from __future__ import annotations

import subprocess
import sys
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile
from starlette.testclient import TestClient

from ziggurat import engine
from ziggurat.core.errors import OutputError
from ziggurat.serve import create
from ziggurat.serve.pmtiles import pack_pmtiles

from conftest import SAMPLE_DEM

pmtiles_reader = pytest.importorskip("pmtiles.reader")
ZIGGURAT = Path(sys.executable).with_name("ziggurat")


def _pyramid(tmp: Path, name: str, grid: str = "mercator", fmt: str = "PNG_hillshade") -> Path:
    recipe = tmp / f"{name}.yaml"
    process, extra = ("hillshade", "") if fmt == "PNG_hillshade" else ("convert", "  dtype: float32\n")
    recipe.write_text(f"""process: {process}
zoom_levels: [7, 10]
pyramid: {{grid: {grid}, pixelbuffer: 1}}
input: {{{'dem' if process == 'hillshade' else 'inp'}: {SAMPLE_DEM}}}
output:
  path: {name}
  format: {fmt}
{extra}""")
    engine.execute(recipe, executor="sequential")
    return tmp / name


def _all(archive: Path) -> dict[tuple[int, int, int], bytes]:
    with open(archive, "rb") as f:
        return {zxy: data for zxy, data in pmtiles_reader.all_tiles(pmtiles_reader.MmapSource(f))}


def test_png_tiles_are_packed_as_they_are(tmp_path):
    out = _pyramid(tmp_path, "shade")
    result = pack_pmtiles(out)
    assert result.archive == tmp_path / "shade.pmtiles" and result.zooms == [7, 8, 9, 10]
    stored = {(int(p.parts[-3]), int(p.stem), int(p.parts[-2])): p.read_bytes() for p in out.glob("*/*/*.png")}
    assert _all(result.archive) == stored   # (z, x=col, y=row): XYZ addressing
    with open(result.archive, "rb") as f:
        reader = pmtiles_reader.Reader(pmtiles_reader.MmapSource(f))
        header, meta = reader.header(), reader.metadata()
    assert (header["min_zoom"], header["max_zoom"]) == (7, 10)
    with rasterio.open(SAMPLE_DEM) as src:
        b = src.bounds
    w, s, e, n = (header[k] / 1e7 for k in ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7"))
    assert w <= b.left and s <= b.bottom and e >= b.right and n >= b.top   # whole tiles around the DEM
    assert e - w < 3 and meta["format"] == "png" and meta["ziggurat"]["tile_format"] == "PNG_hillshade"


def test_geotiff_tiles_are_rendered_to_png(tmp_path):
    out = _pyramid(tmp_path, "dem", fmt="GTiff")
    archive = tmp_path / "web" / "dem.pmtiles"
    result = subprocess.run([str(ZIGGURAT), "pmtiles", str(out), "-o", str(archive), "-z", "9,10",
                             "--colormap", "terrain"], capture_output=True, text=True, check=True)
    assert str(archive) in result.stdout
    tiles = _all(archive)
    assert tiles and {z for z, _, _ in tiles} == {9, 10}
    assert len(tiles) == len(list(out.glob("9/*/*.tif")) + list(out.glob("10/*/*.tif")))
    for data in tiles.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with MemoryFile(BytesIO(data).read()) as mem, mem.open() as png:
                rgba = png.read()
        assert png.driver == "PNG" and rgba.shape == (4, 256, 256)
        assert (rgba[3] == 255).any()   # drawn where there is data


def test_a_grid_pmtiles_cannot_hold_is_refused(tmp_path):
    out = _pyramid(tmp_path, "geo", grid="geodetic")
    with pytest.raises(OutputError, match="WebMercatorQuad"):
        pack_pmtiles(out)
    assert not (tmp_path / "geo.pmtiles").exists()


def test_serve_an_archive(tmp_path):
    archive = pack_pmtiles(_pyramid(tmp_path, "shade")).archive
    client = TestClient(create(archive))
    tj = client.get("/tilejson.json").json()
    assert tj["minzoom"] == 7 and tj["maxzoom"] == 10 and tj["tiles"][0].endswith("/tiles/{z}/{y}/{x}.png")
    (z, x, y), data = next(iter(_all(archive).items()))
    got = client.get(f"/tiles/{z}/{y}/{x}.png")
    assert got.status_code == 200 and got.content == data and got.headers["content-type"] == "image/png"
    assert client.get(f"/tiles/{z}/{y + 1}/{x + 1}.png").status_code == 204   # not in the archive
    assert client.get(f"/tiles/{z}/{2 ** z}/{x}.png").status_code == 204      # not on the grid
    assert "pmtiles" in client.get("/").text.lower()
    assert np.frombuffer(got.content[:8], np.uint8).tolist() == [137, 80, 78, 71, 13, 10, 26, 10]
