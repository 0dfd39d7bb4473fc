"""The CLI: summaries, and one clear message (no traceback) per user error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ziggurat.cli import main
from ziggurat.core.version import __version__

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


def test_progress_lines_for_batch_jobs_and_json_for_schedulers(tmp_path):
    """Away from a terminal: a line every interval, also while no tile finishes (a slow tile does not
    look like a hung job), and one at the end; --progress json writes the same as JSON lines."""
    import io
    import json as _json
    import time as _time
    from types import SimpleNamespace

    from ziggurat.cli.progress import Reporter
    from ziggurat.core.tasks import FAILED, WRITTEN

    stream = io.StringIO()
    reporter = Reporter("log", 0.2, stream)
    reporter.update(SimpleNamespace(done=1, total=4, outcome=SimpleNamespace(status=WRITTEN)))
    reporter.update(SimpleNamespace(done=2, total=4, outcome=SimpleNamespace(status=FAILED)))
    _time.sleep(1.3)                       # no tile finishes: lines keep coming
    reporter.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("progress: 2/4 tiles (50%)") for line in lines)
    assert "1 failed" in lines[-1] and "ETA" in lines[-1] and "tiles/s" in lines[-1]
    assert "last tile" in lines[-2]        # says how long ago the last tile finished

    stream = io.StringIO()
    reporter = Reporter("json", 10, stream)
    reporter.update(SimpleNamespace(done=3, total=3, outcome=SimpleNamespace(status=WRITTEN)))
    reporter.close()
    final = _json.loads(stream.getvalue().splitlines()[-1])
    assert final["done"] == final["total"] == 3 and final["percent"] == 100.0 and final["final"] is True
    assert set(final) >= {"rate", "eta_s", "elapsed_s", "failed"}


def test_execute_progress_json_on_stderr(tmp_path):
    import json as _json

    from pyramid_helpers import make_recipe

    recipe, _ = make_recipe(tmp_path, "geodetic", zooms=(6, 6))
    result = CliRunner().invoke(main, ["execute", str(recipe), "-e", "sequential", "--progress", "json",
                                       "--progress-interval", "0.2"])
    assert result.exit_code == 0, result.output
    lines = [_json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["final"] and lines[-1]["done"] == lines[-1]["total"] == 9


def test_create_writes_a_process_and_a_recipe_that_run_as_they_are(tmp_path):
    result = CliRunner().invoke(main, ["create", "ndvi_like", "-d", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ndvi_like.py").is_file() and (tmp_path / "ndvi_like.yaml").is_file()
    run = CliRunner().invoke(main, ["execute", str(tmp_path / "ndvi_like.yaml"), "-e", "sequential"])
    assert run.exit_code == 0, run.output
    tiles = list((tmp_path / "ndvi_like_output").glob("*/*/*.tif"))
    assert len(tiles) > 3
    import numpy as np
    import rasterio

    with rasterio.open(tiles[0]) as src:
        assert src.descriptions == ("surface",) and np.isfinite(src.read(1)).all()
    again = CliRunner().invoke(main, ["create", "ndvi_like", "-d", str(tmp_path)])
    assert again.exit_code == 1 and "already exist" in again.output
    bad = CliRunner().invoke(main, ["create", "2fast", "-d", str(tmp_path)])
    assert bad.exit_code == 1 and "not a valid process name" in bad.output


def test_processes_name_formats_version_and_exit_codes(tmp_path):
    shown = CliRunner().invoke(main, ["processes", "hillshade"])
    assert shown.exit_code == 0 and "azimuth: float  (default 315.0)" in shown.output
    assert "dem" in shown.output and "Horn's method" in shown.output
    listed = CliRunner().invoke(main, ["processes"])
    assert "hillshade" in listed.output and "convert" in listed.output
    missing = CliRunner().invoke(main, ["processes", "no_such_process"])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    fmts = CliRunner().invoke(main, ["formats"])
    assert fmts.exit_code == 0 and "GTiff" in fmts.output and "tiledir" in fmts.output and "FlatGeobuf" in fmts.output
    version = CliRunner().invoke(main, ["--version"])
    assert version.exit_code == 0 and "GDAL 3." in version.output and "PROJ" in version.output \
        and "rasterio" in version.output
    assert CliRunner().invoke(main, ["no-such-command"]).exit_code == 2         # usage errors: 2, as click/rio
    assert CliRunner().invoke(main, ["execute"]).exit_code == 2
    assert CliRunner().invoke(main, ["plan", "x.yaml", "-t", "1", "2"]).exit_code == 2
    from pyramid_helpers import make_recipe

    recipe, _ = make_recipe(tmp_path, "geodetic", zooms=(6, 6))
    narrowed = CliRunner().invoke(main, ["plan", str(recipe), "-t", "6", "10", "20", "--json"])
    assert narrowed.exit_code == 0, narrowed.output                            # plan takes -t/-p/-a
    assert CliRunner().invoke(main, ["plan", str(recipe), "-p", "-122", "60"]).exit_code == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text("process: [\n")
    assert CliRunner().invoke(main, ["execute", str(broken)]).exit_code == 1   # runtime (user) errors: 1


def test_progress_away_from_a_terminal_starts_early_and_a_zero_width_terminal_gets_lines(monkeypatch):
    """The first line comes after FIRST_LINE_SECONDS, not a whole --progress-interval (30 s) later;
    a terminal that reports 0 columns gets lines instead of a bar that prints nothing."""
    import io
    import time as _time
    from types import SimpleNamespace

    from ziggurat.cli import progress
    from ziggurat.core.tasks import WRITTEN

    monkeypatch.setattr(progress, "FIRST_LINE_SECONDS", 0.2)
    stream = io.StringIO()
    reporter = progress.Reporter("log", 30.0, stream)
    reporter.update(SimpleNamespace(done=1, total=9, outcome=SimpleNamespace(status=WRITTEN)))
    _time.sleep(1.0)
    assert stream.getvalue().startswith("progress: 1/9 tiles")   # well before the 30 s interval
    reporter.close()

    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(progress, "_columns", lambda: 0)
    update, close = progress.progress_reporter("auto", 30.0)
    assert isinstance(getattr(update, "__self__", None), progress.Reporter)   # lines, not a tqdm bar
    close()


def test_a_run_where_every_tile_is_empty_exits_1_unless_allowed(tmp_path, write_recipe):
    """Bounds outside every input wrote nothing and exited 0 (766 empty tiles, no word of it)."""
    recipe = write_recipe(f"""
        process: hillshade
        zoom_levels: 9
        bounds: [10.0, 50.0, 10.6, 50.4]
        pyramid: {{grid: geodetic, pixelbuffer: 1}}
        input: {{dem: {SAMPLE_DEM}}}
        output: {{path: {tmp_path / "out"}, dtype: uint8, nodata: 0}}
        """)
    code, out, err = run("execute", str(recipe), "--no-progress", "-e", "sequential")
    assert code == 1 and "no tile had data: all" in err and "were empty" in err and "--allow-empty" in err, err
    assert "Traceback" not in err and "0 tiles written" in out
    code, out, err = run("execute", str(recipe), "--no-progress", "-e", "sequential", "--allow-empty", "-o")
    assert code == 0, err
