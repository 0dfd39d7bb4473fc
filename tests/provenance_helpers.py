"""A small real run for the provenance, reproduce and determinism tests.

A 512 x 512 source covers geodetic zoom-6 tiles rows 10-11, cols 20-21; the recipe's bounds
cover rows 10-12, cols 20-22, so 4 tiles hold data and 5 are empty at zoom 6. Paths in the
recipe are relative to its folder.
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

from ziggurat import Grid

from conftest import position_raster

Z = 6
RES = 180 / 2**Z / 256
GRID = Grid.from_name("geodetic")

PROCESS = """
import numpy as np
from ziggurat import Empty

def execute(src, tile, gain: float = 1.0, skip_col: int = -1, fail_col: int = -1):
    if tile.col == fail_col:
        raise RuntimeError("boom")
    if tile.col == skip_col:
        raise Empty
    data = src.read(1)
    if data.mask.all():
        raise Empty
    return np.ma.sqrt(np.ma.abs(data) + 1.0) * gain
"""


def make_source(folder: Path, name: str = "src.tif", offset: float = 0.0) -> Path:
    """The source raster; `offset` is added to the top-left 256 x 256 pixels (tile 6/10/20)."""
    t = GRID.tile(Z, 10, 20)
    path = folder / name
    data = position_raster(path, left=t.bounds.left, top=t.bounds.top, res=RES, width=512, height=512)
    if offset:
        import rasterio

        data = data.copy()
        data[0, :256, :256] += offset
        with rasterio.open(path, "r+") as dst:
            dst.write(data)
    return path


def bounds_text() -> str:
    a, b = GRID.tile(Z, 10, 20).bounds, GRID.tile(Z, 12, 22).bounds
    return f"[{a.left}, {b.bottom}, {b.right}, {a.top}]"


def make_recipe(folder: Path, *, name: str = "recipe.yaml", out: str = "out", zooms: str = "[5, 6]",
                metatiling: int = 1, pixelbuffer: int = 1, params: str = "{gain: 2.0}",
                process: str = PROCESS, extra: str = "") -> Path:
    """Write src.tif (if missing), proc.py and a recipe into `folder`; return the recipe path."""
    if not (folder / "src.tif").exists():
        make_source(folder)
    (folder / "proc.py").write_text(textwrap.dedent(process))
    path = folder / name
    path.write_text(textwrap.dedent(f"""\
        process: proc.py
        zoom_levels: {zooms}
        pyramid: {{grid: geodetic, metatiling: {metatiling}, pixelbuffer: {pixelbuffer}}}
        input:
          src: src.tif
        output: {{path: {out}, dtype: float32, nodata: -9999}}
        bounds: {bounds_text()}
        process_parameters: {params}
        """) + textwrap.dedent(extra))
    return path


def tile_bytes(out: Path) -> dict[str, bytes]:
    """Every tile file under out/{zoom}/{row}/ by relative path."""
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.glob("[0-9]*/[0-9]*/*.tif"))}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


__all__ = ["GRID", "PROCESS", "RES", "Z", "bounds_text", "make_recipe", "make_source", "sha256",
           "tile_bytes"]
