"""A single file's quicklook comes from the windows the run wrote, never from decoding the file
again: the same pixels whatever order the tiles arrived in, close to GDAL's average."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from ziggurat.cli import main
from ziggurat.engine.run import execute
from ziggurat.io.outputs.preview import SAMPLES, Preview, preview_shape
from ziggurat.records.catalog import quicklook

from pyramid_helpers import NODATA, make_recipe


def position(height: int, width: int) -> np.ndarray:
    """(1, h, w) float32: row * 1000 + col, a nodata block in the middle."""
    data = (np.arange(height)[:, None] * 1000.0 + np.arange(width)[None, :]).astype(np.float32)[None]
    data[:, height // 3:height // 2, width // 3:width // 2] = NODATA
    return data


def windows(height: int, width: int, size: int, seed: int | None) -> list[tuple[int, int]]:
    """Window origins covering the raster (and reaching past it), in row order or shuffled."""
    origins = [(r, c) for r in range(-size // 2, height, size) for c in range(-size // 3, width, size)]
    if seed is not None:
        np.random.default_rng(seed).shuffle(origins)
    return origins


def gathered(data: np.ndarray, size: int, seed: int | None, nodata: float | None = NODATA) -> np.ma.MaskedArray:
    h, w = data.shape[1:]
    preview = Preview(h, w, [0], data.dtype, nodata, size=size)
    for r, c in windows(h, w, 100, seed):
        window = np.full((1, 100, 100), NODATA if nodata is not None else 0, dtype=data.dtype)
        r0, c0 = max(r, 0), max(c, 0)
        r1, c1 = min(r + 100, h), min(c + 100, w)
        window[:, r0 - r:r1 - r, c0 - c:c1 - c] = data[:, r0:r1, c0:c1]
        preview.add(r, c, window)
    return preview.result()


def test_each_pixel_is_the_mean_of_its_samples_and_the_order_of_the_windows_does_not_matter():
    data = position(1000, 2100)
    ordered, shuffled = gathered(data, 256, None), gathered(data, 256, 7)
    assert ordered.shape == (1, *preview_shape(1000, 2100, 256)) == (1, 122, 256)
    np.testing.assert_array_equal(ordered.filled(-1), shuffled.filled(-1))
    np.testing.assert_array_equal(ordered.mask, shuffled.mask)
    # the samples of pixel (i, j): k x k evenly spread over its footprint; their mean is the value
    # at the footprint's centre, give or take the flooring of sample positions (< 1 px)
    k, (ry, rx) = SAMPLES, (1000 / 122, 2100 / 256)
    for i, j in ((0, 0), (5, 17), (121, 255), (60, 3)):
        rows = np.floor((i + (np.arange(k) + 0.5) / k) * ry).astype(int)
        cols = np.floor((j + (np.arange(k) + 0.5) / k) * rx).astype(int)
        samples = data[0][np.ix_(rows, cols)]
        valid = samples != NODATA
        assert ordered[0, i, j] == pytest.approx(samples[valid].mean(), rel=1e-12)
        centre = (i + 0.5) * ry * 1000 + (j + 0.5) * rx
        assert abs(ordered[0, i, j] - centre) < 1000.0 + 1.0
    # nodata is masked: quicklook pixels whose samples all fall in the nodata block
    assert ordered.mask[0, 122 // 3 + 2:122 // 2 - 2, 256 // 3 + 2:256 // 2 - 2].all()
    assert not ordered.mask[0, :20].any()


def test_a_raster_smaller_than_the_quicklook_is_shown_pixel_for_pixel():
    data = position(90, 130)
    got = gathered(data, 256, 3)
    assert got.shape == data.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got.mask, data == NODATA)
    np.testing.assert_array_equal(got.filled(NODATA), data)


def test_rgb_bytes_stay_bytes_and_a_raster_without_nodata_is_all_valid():
    rgb = np.stack([np.full((800, 600), v, np.uint8) for v in (10, 128, 250)])
    rgb[1, :400] = 129                                     # the top half of the quicklook
    preview = Preview(800, 600, [0, 1, 2], np.dtype(np.uint8), None, size=200)
    for r in range(0, 800, 256):
        for c in range(0, 600, 256):
            preview.add(r, c, rgb[:, r:r + 256, c:c + 256])
    got = preview.result()
    assert got.dtype == np.uint8 and got.shape == (3, 200, 150) and not got.mask.any()
    assert (got[0] == 10).all() and (got[2] == 250).all()
    assert (got[1, :100] == 129).all() and (got[1, 100:] == 128).all()


@pytest.mark.parametrize("executor", ["sequential", "processes"])
def test_a_single_files_run_quicklook_reads_nothing_back(tmp_path, monkeypatch, executor):
    """The run's quicklook of a single file comes from the windows it wrote: the file is not read
    (it used to be decoded whole: hours for a continental file). It matches, within the sampling,
    the on-demand quicklook GDAL averages from the file, and is byte-identical across executors."""
    recipe, _ = make_recipe(tmp_path, "geodetic", zooms=(6, 6), size=(1300, 1100), metatiling=2)
    recipe.write_text(recipe.read_text().replace(str(tmp_path / "out"), str(tmp_path / "one.tif")))

    def refuse(*args: object) -> None:
        raise AssertionError("the run's quicklook read the file back")

    with monkeypatch.context() as patch:
        patch.setattr(quicklook, "_read", refuse)
        summary = execute(recipe, executor=executor, workers=2)
    assert not summary.failed and summary.quicklook is not None
    with rasterio.open(summary.quicklook) as png:
        ours = png.read().astype(int)
    assert ours.shape == (4, 433, 512)                      # the data's 1,300 x 1,100 px, scaled down
    on_demand = CliRunner().invoke(main, ["quicklook", str(tmp_path / "one.tif"), "-o", str(tmp_path / "gdal.png"),
                                          "--size", "512"])
    assert on_demand.exit_code == 0, on_demand.output
    with rasterio.open(tmp_path / "gdal.png") as png:
        gdal = png.read().astype(int)
    assert (ours[3] == gdal[3]).mean() > 0.99               # the same pixels transparent, but at edges
    both = (ours[3] == 255) & (gdal[3] == 255)
    assert np.abs(ours[:3] - gdal[:3])[:, both].mean() < 2.0
    first = summary.quicklook.read_bytes()
    other = execute(recipe, executor="processes" if executor == "sequential" else "sequential", workers=2,
                    overwrite=True)
    assert other.quicklook == summary.quicklook and other.quicklook.read_bytes() == first
