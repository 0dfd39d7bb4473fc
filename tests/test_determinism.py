"""Tile bytes do not depend on the executor, the number of workers, completion order or time.

Parametrized over `EXECUTORS`, so every executor registered there (sequential, threads,
processes, and any added later) is held to the sequential run's bytes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import rasterio

from ziggurat.engine.run import execute
from ziggurat.executors import EXECUTORS
from ziggurat.recipe import Recipe, load_recipe
from ziggurat.records.provenance import read_tile_records

from provenance_helpers import make_recipe, tile_bytes


def _into(recipe: Recipe, out: Path) -> Recipe:
    return dataclasses.replace(recipe, output=dataclasses.replace(recipe.output, path=out))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Recipe, dict[str, bytes], dict[str, str | None]]:
    """Metatiles cut into output tiles, a pixel buffer, two zooms, empty tiles; run sequentially."""
    folder = tmp_path_factory.mktemp("determinism")
    recipe = load_recipe(make_recipe(folder, metatiling=2, pixelbuffer=2, zooms="[4, 6]"))
    execute(recipe, executor="sequential")
    out = Path(recipe.output.path)
    files = tile_bytes(out)
    assert len(files) >= 6 and any(r.sha256 is None for r in read_tile_records(out).values())
    return recipe, files, {p: r.sha256 for p, r in read_tile_records(out).items()}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("executor", sorted(EXECUTORS))
def test_tile_bytes_are_the_same_for_every_executor_and_worker_count(reference, tmp_path, executor,
                                                                     workers):
    recipe, files, checksums = reference
    out = tmp_path / f"{executor}-{workers}"
    summary = execute(_into(recipe, out), executor=executor, workers=workers)
    assert summary.ok and summary.executor == executor
    assert tile_bytes(out) == files
    assert {p: r.sha256 for p, r in read_tile_records(out).items()} == checksums


@pytest.mark.skipif("processes" not in EXECUTORS, reason="no process pool executor")
def test_tiles_written_by_the_parent_have_the_same_bytes_and_checksums(reference, tmp_path):
    recipe, files, checksums = reference
    out = tmp_path / "parent"
    execute(_into(recipe, out), executor="processes", workers=2, write_in="parent")
    assert tile_bytes(out) == files
    assert {p: r.sha256 for p, r in read_tile_records(out).items()} == checksums


def test_tiles_carry_no_timestamp_and_a_later_run_writes_the_same_bytes(reference, tmp_path):
    recipe, files, _ = reference
    out = tmp_path / "later"
    execute(_into(recipe, out), executor="threads", workers=2)
    assert tile_bytes(out) == files
    for path in list(out.glob("[0-9]*/[0-9]*/*.tif"))[:3]:
        with rasterio.open(path) as src:
            assert "TIFFTAG_DATETIME" not in src.tags()
