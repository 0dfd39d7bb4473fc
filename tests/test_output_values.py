"""Output values: nodata defaults that cannot eat data, casts that round and say what they clip."""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml

from ziggurat import ProcessError
from ziggurat.engine.run import execute

TILE = (6, 10, 20)
#: values encode row and col; a masked square in the corner; the first row spans -300..300
PROCESS = """
import numpy as np

def execute(tile, scale=1.0, offset=0.0):
    rows, cols = np.mgrid[0:256, 0:256]
    data = (rows * 0.25 + cols * 0.5) * scale + offset
    data[0] = np.linspace(-300, 300, 256)
    data[5, 5] = 0.0                          # a real zero (slope 0 deg, elevation 0 m)
    mask = np.zeros(data.shape, bool)
    mask[200:, 200:] = True
    return np.ma.masked_array(data, mask)
"""


BOUNDS = (-123.75, 56.25, -118.125, 61.875)   # tiles 6/10..11/20..21


def cast_counts(lo: int, hi: int, nodata: int, scale: float = 1.0, offset: float = 0.0) -> tuple[int, int]:
    """(clipped, valid pixels equal to nodata) of one tile of PROCESS cast to lo..hi, by numpy."""
    rows, cols = np.mgrid[0:256, 0:256]
    data = (rows * 0.25 + cols * 0.5) * scale + offset
    data[0] = np.linspace(-300, 300, 256)
    data[5, 5] = 0.0
    valid = np.ones(data.shape, bool)
    valid[200:, 200:] = False
    rounded = np.rint(data)
    clipped = int((((rounded < lo) | (rounded > hi)) & valid).sum())
    return clipped, int(((np.clip(rounded, lo, hi) == nodata) & valid).sum())


def write_recipe(tmp_path: Path, output: dict[str, Any], **params: Any) -> Path:
    (tmp_path / "values.py").write_text(textwrap.dedent(PROCESS))
    recipe = {"process": "values.py", "zoom_levels": [6, 6], "pyramid": {"grid": "geodetic"},
              "output": {"path": str(tmp_path / "out"), **output}, "process_parameters": params}
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def read_tile(tmp_path: Path) -> tuple[np.ndarray, Any]:
    with rasterio.open(tmp_path / "out" / "6" / "10" / "20.tif") as src:
        return src.read(1), src.nodata


def test_float_outputs_default_to_nan_so_zero_stays_data(tmp_path):
    execute(write_recipe(tmp_path, {"dtype": "float32"}), executor="sequential", tile=TILE)
    data, nodata = read_tile(tmp_path)
    assert math.isnan(nodata)
    assert data[5, 5] == 0.0 and np.isnan(data[200:, 200:]).all() and not np.isnan(data[:200]).any()


def test_nodata_nan_spelled_as_a_word(tmp_path):
    execute(write_recipe(tmp_path, {"dtype": "float32", "nodata": "nan"}), executor="sequential", tile=TILE)
    assert math.isnan(read_tile(tmp_path)[1])


def test_masked_integer_data_without_nodata_is_an_error_with_the_fix(tmp_path):
    recipe = write_recipe(tmp_path, {"dtype": "uint16"}, offset=400.0)
    with pytest.raises(ProcessError) as info:
        execute(recipe, executor="sequential", tile=TILE)
    message = str(info.value)
    assert info.value.tile == TILE
    assert "3136 pixel(s) are masked" in message and "no nodata value for uint16" in message
    assert "set output.nodata" in message and "nodata: 0" in message and "nodata: null" in message
    assert not (tmp_path / "out" / "6").exists()   # nothing half-written


def test_nodata_null_writes_masked_pixels_as_zero_on_purpose(tmp_path):
    execute(write_recipe(tmp_path, {"dtype": "uint16", "nodata": None}, offset=400.0), executor="sequential",
            tile=TILE)
    data, nodata = read_tile(tmp_path)
    assert nodata is None and (data[200:, 200:] == 0).all()


def test_casts_round_and_one_warning_per_run_counts_clipped_and_nodata_pixels(tmp_path, caplog):
    recipe = write_recipe(tmp_path, {"dtype": "uint8", "nodata": 0})
    with caplog.at_level(logging.WARNING):
        summary = execute(recipe, executor="sequential", zoom=6, bounds=BOUNDS)
    assert summary.written == 4
    data, nodata = read_tile(tmp_path)
    assert nodata == 0
    rows, cols = np.mgrid[0:256, 0:256]
    expected = np.rint(rows * 0.25 + cols * 0.5)
    expected[5, 5] = 0
    np.testing.assert_array_equal(data[1:200, :200], expected[1:200, :200])   # rounded, not truncated
    assert data[0, 0] == 0 and data[0, -1] == 255                             # clipped
    clipped, zeros = cast_counts(0, 255, 0)
    assert clipped > 100 and zeros > 100
    assert summary.cast == {"clipped": 4 * clipped, "nodata": 4 * zeros}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "pixel(s)" in r.getMessage()]
    assert len(warnings) == 2, warnings   # one per kind, for the whole run
    assert f"{4 * clipped:,} pixel(s) were outside the range of uint8 and were clipped" in warnings[0]
    assert f"{4 * zeros:,} valid pixel(s) equal the nodata value 0" in warnings[1]


def test_cast_counts_travel_from_pool_workers(tmp_path):
    recipe = write_recipe(tmp_path, {"dtype": "uint8", "nodata": 255}, offset=1.0)
    summary = execute(recipe, executor="processes", workers=2, zoom=6, bounds=BOUNDS)
    clipped, full = cast_counts(0, 255, 255, offset=1.0)
    assert summary.written == 4 and summary.cast == {"clipped": 4 * clipped, "nodata": 4 * full}


def test_a_cast_keeps_masked_pixels_invalid_and_counts_valid_pixels_equal_to_nodata():
    """Masked pixels stay invalid even with a nodata the dtype cannot hold (float32 and 1e40: it
    is stored as inf), and valid pixels that read back as nodata become invalid and are counted."""
    from ziggurat.io.common import to_dtype

    data = np.ma.masked_array(np.array([[1.0, 2.0, 3.0]], dtype=np.float32), mask=[[True, False, False]])
    notes: dict[str, int] = {}
    out, valid = to_dtype(data, np.dtype("float32"), 1e40, notes)
    assert valid.tolist() == [[False, True, True]] and np.isinf(out[0, 0]) and notes == {}
    data = np.ma.masked_array(np.array([[7, 0, 5, 0]], dtype=np.int16), mask=[[True, False, False, False]])
    out, valid = to_dtype(data, np.dtype("uint8"), 0, notes)
    assert out.tolist() == [[0, 0, 5, 0]] and valid.tolist() == [[False, False, True, False]]
    assert notes == {"nodata": 2}
