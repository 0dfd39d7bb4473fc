"""User code cannot end the run: sys.exit() and KeyboardInterrupt of a process fail its tile
(or its loading), naming the process; a real Ctrl-C still stops the run."""

from __future__ import annotations

import signal
import threading

import pytest

from ziggurat.audit.report import dry_run
from ziggurat.core import interrupts
from ziggurat.core.errors import ProcessError, ProcessLoadError
from ziggurat.engine.run import execute

from conftest import position_raster

RES = 180 / 256 / 64
ORIGIN = 896 * RES


def _recipe(tmp_path, write_recipe, process):
    src = tmp_path / "src.tif"
    position_raster(src, left=ORIGIN, top=ORIGIN, res=RES, width=300, height=64)   # 2 tiles at zoom 6
    return write_recipe(f"process: proc.py\nzoom_levels: 6\npyramid: {{grid: geodetic}}\ninput: {{src: {src}}}\n"
                        f"output: {{path: {tmp_path / 'out'}, dtype: float32, nodata: -9999}}\n", process=process)


EXITS = {
    "sys.exit": "import sys\n\ndef execute(src, tile):\n    if tile.col % 2:\n        sys.exit(3)\n"
                "    return src.read()\n",
    "SystemExit": "def execute(src, tile):\n    if tile.col % 2:\n        raise SystemExit(0)\n    return src.read()\n",
    "KeyboardInterrupt": "def execute(src, tile):\n    if tile.col % 2:\n        raise KeyboardInterrupt\n"
                         "    return src.read()\n",
}


@pytest.mark.parametrize("executor", ["sequential", "threads", "processes"])
@pytest.mark.parametrize("kind", sorted(EXITS))
def test_an_exit_in_execute_fails_its_tile_and_keep_going_runs_the_rest(tmp_path, write_recipe, kind, executor):
    recipe = _recipe(tmp_path, write_recipe, EXITS[kind])
    summary = execute(recipe, executor=executor, workers=1, keep_going=True)
    assert len(summary.failed) == 1 and summary.written >= 1
    (failed,) = summary.failed
    assert "proc.py" in failed.error and ("sys.exit" in failed.error or "KeyboardInterrupt" in failed.error)
    with pytest.raises(ProcessError, match=r"zoom 6, row \d+, col \d+.*proc\.py"):
        execute(recipe, executor=executor, workers=1, overwrite=True)


@pytest.mark.parametrize("code", ["import sys\nsys.exit(2)\n", "raise SystemExit('bye')\n",
                                  "raise KeyboardInterrupt\n"])
def test_an_exit_at_import_is_a_load_error_naming_the_process(tmp_path, write_recipe, code):
    recipe = _recipe(tmp_path, write_recipe, code + "\ndef execute(src):\n    return src.read()\n")
    with pytest.raises(ProcessLoadError, match=r"process 'proc\.py': importing .*proc\.py"):
        execute(recipe, executor="sequential")
    assert not (tmp_path / "out" / "6").exists()


def test_a_real_ctrl_c_still_stops_the_run(tmp_path, write_recipe):
    """SIGINT delivered while a process runs: the run stops with KeyboardInterrupt, as before."""
    process = ("import os, signal, time\n\ndef execute(src, tile):\n"
               "    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(0.2)\n    return src.read()\n")
    recipe = _recipe(tmp_path, write_recipe, process)
    assert threading.current_thread() is threading.main_thread()
    with pytest.raises(KeyboardInterrupt):
        execute(recipe, executor="sequential")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored
    assert interrupts.signalled()   # it was told apart from a process's own KeyboardInterrupt


@pytest.mark.slow
def test_ctrl_c_with_a_tile_that_never_returns_in_a_thread_exits(tmp_path, write_recipe):
    """-e threads: a tile hanging in a thread cannot be stopped, but Ctrl-C ends the CLI (exit 130)."""
    import json
    import subprocess
    import sys
    import time
    from pathlib import Path

    recipe = _recipe(tmp_path, write_recipe, "import time\n\ndef execute(src):\n    time.sleep(1000)\n")
    exe = Path(sys.executable).parent / "ziggurat"
    proc = subprocess.Popen([str(exe), "execute", str(recipe), "-e", "threads", "-w", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = tmp_path / "out" / ".ziggurat" / "manifest.json"
    deadline = time.monotonic() + 60
    while not manifest.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)   # the tiles are sleeping in their threads
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the CLI did not exit after Ctrl-C")
    assert proc.returncode == 130 and "Interrupted" in err and "Traceback" not in err
    assert json.loads(manifest.read_text())["status"] == "interrupted"


@pytest.mark.parametrize("code, message", [
    ("import os\nos._exit(4)\n", r"ended the interpreter with exit status 4 \(os\._exit at import\?\)"),
    ("import os\nos.abort()\n", r"killed the interpreter \(SIGABRT\)"),
    ("import ctypes\nctypes.string_at(0)\n", r"killed the interpreter \(SIGSEGV\)"),
    ("while True:\n    pass\n", r"did not finish within 2 s \(an endless loop at import\?"),
])
def test_a_module_that_kills_or_hangs_the_interpreter_at_import_is_named(tmp_path, write_recipe, monkeypatch,
                                                                         code, message):
    monkeypatch.setenv("ZIGGURAT_IMPORT_TIMEOUT", "2")
    recipe = _recipe(tmp_path, write_recipe, code + "\ndef execute(src):\n    return src.read()\n")
    with pytest.raises(ProcessLoadError, match=r"process 'proc\.py': importing it " + message):
        execute(recipe, executor="sequential")
    assert not (tmp_path / "out" / "6").exists()
    with pytest.raises(ProcessLoadError, match=r"process 'proc\.py': importing it " + message):
        dry_run(recipe)   # `ziggurat plan` survives it too
