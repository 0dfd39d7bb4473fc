"""The CLI: summaries, and one clear message (no traceback) per user error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ziggurat import __version__
from ziggurat.cli import main

from conftest import REPO, SAMPLE_DEM, read_tile


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _hillshade_recipe(write_recipe, tmp_path: Path, **over: str) -> Path:
    keys = dict(process="hillshade", zoom_levels="9", grid="geodetic", dem=str(SAMPLE_DEM),
                out=str(tmp_path / "out"), params="{azimuth: 315}")
    keys.update(over)
    return write_recipe(f"""
        process: {keys['process']}
        zoom_levels: {keys['zoom_levels']}
        pyramid:
          grid: {keys['grid']}
          pixelbuffer: 1
        input:
          dem: {keys['dem']}
        output:
          path: {keys['out']}
          dtype: uint8
          nodata: 0
        process_parameters: {keys['params']}
        """)


def test_execute_prints_summary_and_writes_tiles(tmp_path, write_recipe):
    recipe = _hillshade_recipe(write_recipe, tmp_path)
    code, out, err = run("execute", str(recipe), "-b", "-97.4", "32.6", "-97.2", "32.8", "--no-progress")
    assert code == 0, err
    assert "tiles written" in out and str(tmp_path / "out") in out
    tiles = sorted((tmp_path / "out" / "9").rglob("*.tif"))
    assert tiles
    arr, profile = read_tile(tiles[0])
    assert profile["dtype"] == "uint8" and arr.max() > 0
    code, out, _ = run("execute", str(recipe), "-b", "-97.4", "32.6", "-97.2", "32.8", "--no-progress")
    assert code == 0 and f"0 tiles written, 0 empty, {len(tiles)} skipped" in out


def test_tile_and_point_options(tmp_path, write_recipe):
    recipe = _hillshade_recipe(write_recipe, tmp_path)
    code, out, err = run("execute", str(recipe), "-t", "9", "162", "235", "--no-progress")
    assert code == 0, err
    assert (tmp_path / "out" / "9" / "162" / "235.tif").exists()
    assert len(list((tmp_path / "out").rglob("*.tif"))) == 1
    code, out, err = run("execute", str(recipe), "-p", "-97.1", "32.7", "--no-progress", "--overwrite")
    assert code == 0, err
    assert out.startswith("1 tiles written")


def test_version_and_processes():
    code, out, _ = run("--version")
    assert code == 0 and __version__ in out
    code, out, _ = run("processes")
    assert code == 0 and "hillshade" in out and "convert" in out


@pytest.mark.parametrize("case,expected", [
    ("bad_yaml", ["recipe.yaml:", "line"]),
    ("unknown_key", ["recipe.yaml", "zoom_level", "zoom_levels"]),
    ("missing_input", ["dem", "nowhere.tif"]),
    ("missing_process", ["no_such_process"]),
    ("parameter_mismatch", ["azimut", "azimuth"]),
    ("bad_grid", ["grid", "geodesic"]),
])
def test_user_errors_are_one_clear_message(tmp_path, write_recipe, case, expected):
    if case == "bad_yaml":
        recipe = write_recipe("process: hillshade\nzoom_levels: [9\npyramid: {grid: geodetic}\n")
    elif case == "unknown_key":
        recipe = write_recipe(f"""
            process: hillshade
            zoom_level: 9
            pyramid: {{grid: geodetic}}
            output: {{path: {tmp_path / 'out'}}}
            """)
    elif case == "missing_input":
        recipe = _hillshade_recipe(write_recipe, tmp_path, dem=str(tmp_path / "nowhere.tif"))
    elif case == "missing_process":
        recipe = _hillshade_recipe(write_recipe, tmp_path, process="no_such_process")
    elif case == "parameter_mismatch":
        recipe = _hillshade_recipe(write_recipe, tmp_path, params="{azimut: 300}")
    else:
        recipe = _hillshade_recipe(write_recipe, tmp_path, grid="geodesic")
    code, out, err = run("execute", str(recipe), "--no-progress")
    assert code == 1
    assert "Traceback" not in err + out
    for text in expected:
        assert text in err, (text, err)


def test_failing_process_via_cli_names_the_tile(tmp_path, write_recipe):
    recipe = write_recipe(f"""
        process: fail.py
        zoom_levels: 9
        pyramid: {{grid: geodetic}}
        input: {{dem: {SAMPLE_DEM}}}
        output: {{path: {tmp_path / 'out'}}}
        """, process="def execute(dem):\n    raise RuntimeError('kaputt')\n", process_name="fail.py")
    code, out, err = run("execute", str(recipe), "-t", "9", "162", "235", "--no-progress")
    assert code == 1 and "Traceback" not in err
    assert "zoom 9, row 162, col 235" in err and "kaputt" in err
    result = CliRunner().invoke(main, ["execute", str(recipe), "-t", "9", "162", "235", "--no-progress", "--debug"])
    assert result.exit_code != 0 and "kaputt" in result.stderr + str(result.exception)


def test_console_script_runs_the_demo_recipe(tmp_path):
    """The installed `ziggurat` command on the real demo recipe, as `make demo` runs it."""
    exe = Path(sys.executable).parent / "ziggurat"
    proc = subprocess.run([str(exe), "execute", str(REPO / "recipes" / "hillshade.yaml"), "-z", "9",
                           "-b", "-97.4", "32.6", "-97.2", "32.8", "--overwrite"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ZIGGURAT_OUTPUT": str(tmp_path)})  # not into the checkout
    assert proc.returncode == 0, proc.stderr
    assert "tiles written" in proc.stdout
