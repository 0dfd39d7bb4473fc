"""A tile that runs far longer than the others is named while the run goes on."""

from __future__ import annotations

import logging
import textwrap
import time
from pathlib import Path

import pytest

from ziggurat.core.grid import TileIndex
from ziggurat.engine import slowtiles
from ziggurat.engine.run import execute

SLOW = """
import time
import numpy as np

def execute(tile):
    if (tile.zoom, tile.row, tile.col) == (5, 9, 33):
        time.sleep(2.5)
    else:
        time.sleep(0.01)
    return np.full(tile.shape, 1.0)
"""


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_the_slow_tile_is_named_during_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture, executor: str) -> None:
    """Only the slow tile: not the tiles of its run queued behind it in the same worker."""
    monkeypatch.setattr(slowtiles, "MIN_SECONDS", 0.5)
    monkeypatch.setattr(slowtiles, "CHECK_SECONDS", 0.1)
    (tmp_path / "slow.py").write_text(SLOW)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(f"""
        process: slow.py
        zoom_levels: 5
        pyramid: {{grid: geodetic}}
        bounds: [5, 30, 30, 40]
        output: {{path: {tmp_path / 'out'}, dtype: float32}}
    """))
    with caplog.at_level(logging.WARNING, logger="ziggurat.engine.run"):
        summary = execute(recipe, executor=executor, workers=2)
    assert summary.ok and summary.written > 10
    lines = [r.getMessage() for r in caplog.records if "has been running for" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("tile 5 9 33 has been running"), lines


def test_the_watch_waits_for_a_median_and_names_a_tile_once() -> None:
    watch = slowtiles.SlowTileWatch(workers=2, window=4)
    watch.out(TileIndex(1, 2, 3))
    assert watch.check() == []  # no median yet
    for n in range(5):
        watch.out(TileIndex(0, 0, n))
        watch.back(TileIndex(0, 0, n), 0.001)
    slowtiles_min = slowtiles.MIN_SECONDS
    try:
        slowtiles.MIN_SECONDS = 0.0
        time.sleep(0.05)  # 50 x the median
        assert watch.check() == [TileIndex(1, 2, 3)]
        assert watch.check() == []
    finally:
        slowtiles.MIN_SECONDS = slowtiles_min
