"""Everything that can be checked before the first tile is checked before anything touches the
disk, and errors keep their causes (`--debug` shows the whole chain)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ziggurat.core.errors import ExecutorError, OutputError, RecipeError
from ziggurat.engine.run import execute
from ziggurat.recipe import load_recipe

from provenance_helpers import make_recipe

ZIGGURAT = str(Path(sys.executable).parent / "ziggurat")


def _outputs(folder: Path) -> list[str]:
    """What a run left in `folder` besides the recipe, process and source it was given."""
    return sorted(p.name for p in folder.iterdir() if p.name not in ("recipe.yaml", "proc.py", "src.tif"))


@pytest.mark.parametrize("out,extra,message", [
    ("out", "stac: {id: 5}\n", "expected a string"),
    ("out", "stac: {colour: red}\n", "unknown key 'stac.colour'"),
    ("one.tif", "baselevels: {min: 6}\n", "overview zooms .* need a raster tile directory output"),
    ("out_fgb", "baselevels: {max: 5}\n", "overview zooms .* need a raster tile directory output"),
])
def test_bad_recipes_fail_at_load_naming_the_key(tmp_path, out, extra, message):
    if out == "out_fgb":
        recipe = make_recipe(tmp_path, out="out_fgb", extra=extra)
        text = recipe.read_text().replace("dtype: float32, nodata: -9999",
                                          "format: FlatGeobuf, schema: {geometry: Polygon}")
        recipe.write_text(text)
    else:
        recipe = make_recipe(tmp_path, out=out, extra=extra)
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(recipe)
    assert "recipe.yaml:" in str(info.value)  # the file and the line
    with pytest.raises(RecipeError):
        execute(recipe, executor="sequential")
    assert _outputs(tmp_path) == []


def test_run_time_checks_run_before_anything_is_written(tmp_path):
    recipe = make_recipe(tmp_path, out="one.tif")
    with pytest.raises(OutputError, match="holds one zoom level"):  # zooms 5..6 into one file
        execute(recipe, executor="sequential")
    assert _outputs(tmp_path) == []
    vector = make_recipe(tmp_path, out="out_fgb")
    vector.write_text(vector.read_text().replace("dtype: float32, nodata: -9999",
                                                 "format: FlatGeobuf, schema: {geometry: Polygon}"))
    with pytest.raises(OutputError, match="written by the workers"):
        execute(vector, executor="processes", workers=1, write_in="parent")
    assert _outputs(tmp_path) == []


def test_debug_shows_the_whole_cause_chain(tmp_path):
    recipe = make_recipe(tmp_path, extra="area: missing.geojson\n")
    plain = subprocess.run([ZIGGURAT, "execute", str(recipe)], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert "missing.geojson" in plain.stderr
    debug = subprocess.run([ZIGGURAT, "execute", str(recipe), "--debug"], capture_output=True, text=True,
                           timeout=120)
    assert debug.returncode != 0
    assert "The above exception was the direct cause of the following exception" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("ziggurat.core.errors.RecipeError")


def test_an_input_error_in_the_pool_workers_is_reported_as_itself(tmp_path):
    from ziggurat.core.errors import ProcessError

    recipe = make_recipe(tmp_path)
    (tmp_path / "src.tif").write_bytes(b"this is not a GeoTIFF")   # it exists, but no worker can open it
    with pytest.raises(ProcessError) as info:
        execute(recipe, executor="processes", workers=2)
    assert "cannot open" in str(info.value) and "src.tif" in str(info.value)
    assert "WorkerDied" not in str(info.value)
    summary = execute(recipe, executor="processes", workers=2, keep_going=True)
    assert summary.failed and all(o.exc_type == "InputError" for o in summary.failed)


HANGS = """
import time
from ziggurat import Empty

def execute(src, tile):
    if tile.zoom == 6 and tile.row == 10 and tile.col == 21:
        time.sleep(600)                     # hangs
    data = src.read(1)
    if data.mask.all():
        raise Empty
    return data
"""


@pytest.mark.slow
def test_a_hanging_tile_times_out_and_is_named_while_the_others_are_written(tmp_path):
    recipe = make_recipe(tmp_path, process=HANGS, params="{}")
    done = subprocess.run([ZIGGURAT, "execute", str(recipe), "-e", "processes", "-w", "2", "--tile-timeout", "2",
                           "--retries", "1", "--keep-going", "--no-progress"],
                          capture_output=True, text=True, timeout=180)   # a hang guard
    assert done.returncode == 1, done.stderr
    assert "zoom 6, row 10, col 21" in done.stderr and "TimedOut" in done.stderr and "Traceback" not in done.stderr
    written = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").glob("6/*/*.tif")}
    assert written == {"6/10/20.tif", "6/11/20.tif", "6/11/21.tif"}
    with pytest.raises(ExecutorError, match="needs the processes or dask executor"):
        execute(recipe, executor="threads", tile_timeout=2)


SLOW_TILES = """
import time
from ziggurat import Empty

def execute(src):
    time.sleep(0.5)
    data = src.read(1)
    if data.mask.all():
        raise Empty
    return data
"""


@pytest.mark.slow
def test_kill_9_of_the_parent_leaves_no_pool_process(tmp_path):
    import os
    import signal

    from polling import session_processes, wait_until

    recipe = make_recipe(tmp_path, process=SLOW_TILES, params="{}")
    run = subprocess.Popen([ZIGGURAT, "execute", str(recipe), "-e", "processes", "-w", "2", "--no-progress"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        # mid-run: workers are writing tiles (a kill while the forkserver starts is not covered)
        assert wait_until(lambda: list((tmp_path / "out").glob("6/*/*.tif")), 60)
        os.kill(run.pid, signal.SIGKILL)                                       # the parent only
        run.wait()
        assert wait_until(lambda: session_processes(run.pid) == [], 30), session_processes(run.pid)
    finally:
        run.stdout.close()
        run.stderr.close()
        for line in session_processes(run.pid):
            os.kill(int(line.split()[0]), signal.SIGKILL)


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_without_a_traceback(tmp_path):
    import os
    import signal
    import time

    from polling import session_processes, wait_until

    recipe = make_recipe(tmp_path, process=SLOW_TILES, params="{}")
    run = subprocess.Popen([ZIGGURAT, "execute", str(recipe), "-e", "processes", "-w", "2", "--write-in", "parent",
                            "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        assert wait_until(lambda: list((tmp_path / "out").glob("6/*/*.tif")), 60)
        os.kill(run.pid, signal.SIGINT)
        time.sleep(0.01)                     # the second one arrives while the first is handled
        os.kill(run.pid, signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        for line in session_processes(run.pid):
            os.kill(int(line.split()[0]), signal.SIGKILL)
    assert run.returncode == 130 and "Traceback" not in err, err
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith(f"ziggurat-{run.pid}-")]
    assert wait_until(lambda: session_processes(run.pid) == [], 30)
    for tile in (tmp_path / "out").glob("6/*/*.tif"):     # what is there is whole
        import rasterio

        with rasterio.open(tile) as src:
            src.read()


@pytest.mark.slow
def test_the_recipe_can_set_the_tile_timeout(tmp_path):
    recipe = make_recipe(tmp_path, process=HANGS, params="{}", extra="tile_timeout: 2\n")
    summary = execute(recipe, executor="processes", workers=2, retries=0, keep_going=True)
    assert [(tuple(o.index), o.exc_type) for o in summary.failed] == [((6, 10, 21), "TimedOut")]
    bad = make_recipe(tmp_path, name="bad.yaml", extra="tile_timeout: -1\n")
    with pytest.raises(RecipeError, match="bad.yaml:.*tile_timeout: expected a number of seconds > 0"):
        execute(bad, executor="sequential")
