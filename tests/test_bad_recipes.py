"""Hostile recipe files: each one a clear RecipeError naming the file, quickly."""

from __future__ import annotations

import os
import time

import pytest

from ziggurat.core.errors import RecipeError
from ziggurat.recipe import load_recipe

MINIMAL = "process: my_pkg.my_process\nzoom_levels: 0,2\npyramid:\n  grid: geodetic\noutput:\n  path: out\n"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "recipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(RecipeError, match=r"recipe\.yaml: expected a recipe file, found a FIFO"):
        load_recipe(fifo)


def test_a_folder_and_a_device_are_refused(tmp_path):
    with pytest.raises(RecipeError, match="expected a recipe file, found a folder"):
        load_recipe(tmp_path)
    with pytest.raises(RecipeError, match="expected a recipe file, found a character device"):
        load_recipe("/dev/zero")


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(5 * 1024 * 1024)   # sparse: nothing is written
    with pytest.raises(RecipeError, match=r"big\.yaml: a recipe file of 5,242,880 bytes"):
        load_recipe(big)


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    path = tmp_path / "bomb.yaml"
    path.write_text(MINIMAL + "process_parameters:\n" + "".join(f"  {line}\n" for line in lines))
    start = time.perf_counter()
    with pytest.raises(RecipeError, match=r"bomb\.yaml:\d+: .*expands to more than 100,000 values"):
        load_recipe(path)
    assert time.perf_counter() - start < 30   # 10^8 values otherwise; a generous bound on a busy machine


def test_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(MINIMAL + "process_parameters:\n  p: " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(RecipeError, match=r"deep\.yaml:\d+: .*nested deeper than 64 levels"):
        load_recipe(path)


def test_an_impossible_tagged_value_names_its_line(tmp_path):
    path = tmp_path / "tag.yaml"
    path.write_text(MINIMAL + "process_parameters:\n  p: !!float abc\n")
    with pytest.raises(RecipeError, match=r"tag\.yaml:8: invalid YAML value 'abc' for tag .*float"):
        load_recipe(path)


def test_a_path_over_the_name_limit_is_named_not_a_traceback(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text(MINIMAL.replace("path: out", "path: " + "x" * 5000))
    with pytest.raises(RecipeError, match=r"long\.yaml: a path in the recipe cannot be used: File name too long: "
                                          r".*\(5\d\d\d characters\)"):
        load_recipe(path)


def test_a_binary_file_given_as_grid_is_named(tmp_path):
    (tmp_path / "grid.bin").write_bytes(bytes(range(256)) * 8)
    path = tmp_path / "g.yaml"
    path.write_text(MINIMAL.replace("grid: geodetic", "grid: ./grid.bin"))
    with pytest.raises(RecipeError, match=r"g\.yaml:4: pyramid\.grid: expected a TileMatrixSet JSON file, "
                                          r"'\./grid\.bin' is not text"):
        load_recipe(path)


def test_zoom_30_over_an_area_is_refused_at_once_not_planned_for_minutes(tmp_path):
    from ziggurat.engine.run import plan

    area = tmp_path / "aoi.geojson"
    area.write_text('{"type": "Polygon", "coordinates": [[[165, -89], [177, -89], [177, -72], [165, -72], '
                    '[165, -89]]]}')
    path = tmp_path / "z.yaml"
    path.write_text(MINIMAL.replace("zoom_levels: 0,2", "zoom_levels: [0, 30]") + f"area: {area}\n")
    start = time.perf_counter()
    with pytest.raises(RecipeError, match=r"z\.yaml:2 key zoom_levels: zoom 30 has 7\.\de\+15 tiles .* lower "
                                          r"zoom_levels or narrow the area"):
        plan(load_recipe(path))
    assert time.perf_counter() - start < 10


def test_control_characters_name_their_line(tmp_path):
    path = tmp_path / "ctl.yaml"
    path.write_text(MINIMAL + "process_parameters:\n  p: a\x0fb\n")
    with pytest.raises(RecipeError, match=r"ctl\.yaml:8: invalid YAML: character #x000f is not allowed"):
        load_recipe(path)


def test_a_fifo_or_a_device_as_an_input_is_refused_at_load(tmp_path):
    fifo = tmp_path / "in.tif"
    os.mkfifo(fifo)
    for where, kind in ((fifo, "a FIFO"), ("/dev/zero", "a character device")):
        path = tmp_path / "i.yaml"
        path.write_text(MINIMAL + f"input:\n  dem: {where}\n")
        with pytest.raises(RecipeError, match=rf"i\.yaml:8: input\.dem: expected a file or a folder, found {kind}"):
            load_recipe(path)


def test_an_input_that_cannot_be_read_is_named_not_a_traceback(tmp_path):
    """/proc/self/mem is a regular file to stat() and an I/O error to read()."""
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "proc.py").write_text("def execute(dem):\n    return None\n")
    path = tmp_path / "i.yaml"
    path.write_text(MINIMAL.replace("my_pkg.my_process", "proc.py") + "input:\n  dem: /proc/self/mem\n")
    proc = subprocess.run([str(Path(sys.executable).parent / "ziggurat"), "execute", str(path), "-e", "sequential",
                           "--no-progress"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ZIGGURAT_STATE_DIR": str(tmp_path / "state")})
    assert proc.returncode not in (0, 4) and "Traceback" not in proc.stderr, proc.stderr
    assert "/proc/self/mem" in proc.stderr and "dem" in proc.stderr
