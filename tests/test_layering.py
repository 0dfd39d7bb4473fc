"""The architecture as tests: imports point one way, drivers implement the seams, no probing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from ziggurat.grid import Grid
from ziggurat.io import (
    INPUT_FORMATS,
    OUTPUT_FORMATS,
    Input,
    Output,
    OutputCapabilities,
    SingleFileOutput,
    TileInput,
    open_input,
    open_output,
)
from ziggurat.recipe import InputConfig, OutputConfig

from conftest import REPO

SRC = REPO / "src" / "ziggurat"

#: The stages in the order a run passes them (ARCHITECTURE.md); a module may import its own
#: stage and earlier ones, never a later one.
STAGES: list[tuple[str, ...]] = [
    ("ziggurat", "ziggurat.errors", "ziggurat.bounds", "ziggurat.grid", "ziggurat.geometry", "ziggurat.tasks",
     "ziggurat.location", "ziggurat.mapchete_grid", "ziggurat.tilelayout", "ziggurat.interrupts"),
    ("ziggurat.recipe",),
    ("ziggurat.io",),
    ("ziggurat.process", "ziggurat.compat"),
    ("ziggurat.records",),
    ("ziggurat.plan",),
    ("ziggurat.executors",),
    ("ziggurat.engine", "ziggurat.slowtiles", "ziggurat.summary"),
    ("ziggurat.reproduce", "ziggurat.status", "ziggurat.remote_checks", "ziggurat.scaffold"),
    ("ziggurat.serve",),
    ("ziggurat.cli",),
]


def stage_of(module: str) -> int:
    """Index of the stage a dotted module belongs to (the longest matching prefix)."""
    best, best_len = None, -1
    for index, prefixes in enumerate(STAGES):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"module {module} belongs to no stage; add it to STAGES and ARCHITECTURE.md")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) for every ziggurat import, also those inside functions (lazy imports)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "ziggurat"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "ziggurat":
            for alias in node.names:  # `from ziggurat.cli import commands` imports a module
                candidate = f"{node.module}.{alias.name}"
                out.append((node.lineno, candidate if candidate in known else node.module))
    return out


def violations(modules: dict[str, str]) -> list[str]:
    """`importer:line imports module (stage a < stage b)` for every import of a later stage."""
    known = set(modules)
    found = []
    for name, source in sorted(modules.items()):
        here = stage_of(name)
        for line, target in imported_modules(source, known):
            there = stage_of(target)
            if there > here:
                found.append(f"{name}:{line} imports {target} (stage {STAGES[there][0]} comes after "
                             f"{STAGES[here][0]})")
    return found


def _sources() -> dict[str, str]:
    return {module_name(p): p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}


def test_imports_point_one_way():
    assert violations(_sources()) == []


def test_the_layering_check_catches_an_import_of_a_later_stage():
    modules = {"ziggurat.io.raster": "from ziggurat.engine import execute\n",
               "ziggurat.records.stac": "def f():\n    import ziggurat.cli\n",
               "ziggurat.engine": "from ziggurat.io import open_output\n",
               "ziggurat.cli": "from ziggurat.cli import commands\n", "ziggurat.cli.commands": ""}
    found = violations(modules)
    assert len(found) == 2
    assert found[0].startswith("ziggurat.io.raster:1 imports ziggurat.engine")
    assert found[1].startswith("ziggurat.records.stac:2 imports ziggurat.cli")
    with pytest.raises(AssertionError, match="belongs to no stage"):
        stage_of("other.module")


def test_every_module_belongs_to_a_stage_and_stays_small():
    for path in SRC.rglob("*.py"):
        stage_of(module_name(path))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 440, f"{path.relative_to(REPO)} has {lines} lines: split it (about 400 at most)"


def test_the_engine_and_records_never_probe_outputs_or_executors():
    pattern = re.compile(r"getattr\((output|self\.output|self\.pool|pool|sink|inp)\b")
    probes = [f"{p.relative_to(REPO)}:{n}" for p in SRC.rglob("*.py")
              for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert probes == []


# -- the seams ---------------------------------------------------------------------------------
def _output_config(tmp_path: Path, fmt: str, name: str) -> OutputConfig:
    options = {"schema": {"geometry": "Polygon", "properties": {}}} if fmt in ("GeoJSON", "FlatGeobuf", "GeoParquet") \
        else {}
    dtype = "uint8" if fmt.startswith("PNG") else "float32"
    bands = 4 if fmt == "PNG_RGBA" else 1   # mapchete's PNG: RGBA
    compress = "zstd" if fmt == "Zarr" else "deflate"   # gzip chunks are not reproducible: Zarr refuses them
    return OutputConfig(tmp_path / name, fmt, dtype, bands, 0, compress, 1, options)


@pytest.mark.parametrize("fmt,name", [*((f, f"out_{f}") for f in OUTPUT_FORMATS), ("GTiff", "one.tif")])
def test_every_output_driver_implements_the_output_protocol(tmp_path, fmt, name):
    output = open_output(_output_config(tmp_path, fmt, name), Grid.from_name("geodetic"))
    assert isinstance(output, Output)
    assert isinstance(output.capabilities, OutputCapabilities)
    caps = output.capabilities
    if caps.writes_in_parent:
        assert caps.parent_writes and not caps.tile_files
    if caps.overviews or caps.stac:
        assert caps.kind == "raster" and caps.tile_files
    assert isinstance(output, SingleFileOutput) == name.endswith(".tif")
    assert not list(tmp_path.iterdir())  # opening an output writes nothing; `prepare` does


def test_single_file_output_is_not_a_tile_directory():
    from ziggurat.io.folder import TileFolder

    assert not issubclass(SingleFileOutput, TileFolder)


def test_every_input_driver_implements_the_input_protocol(tmp_path):
    import rasterio
    from affine import Affine

    path = tmp_path / "src.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=Affine(1, 0, 0, 0, -1, 4)) as dst:
        dst.write(np.ones((1, 4, 4), "uint8"))
    vector = tmp_path / "v.geojson"
    vector.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
                      '"geometry": {"type": "Point", "coordinates": [1, 1]}}]}')
    grid = Grid.from_name("geodetic")
    tested = set()
    for fmt, source, options in (("raster", path, {}), ("vector", vector, {}),
                                 ("mosaic", tmp_path, {"mosaic": ({"path": str(path)},), "priority": "first"})):
        inp = open_input(InputConfig("x", source, fmt, options), grid)
        assert isinstance(inp, Input)
        assert isinstance(inp.for_tile(grid.tile(5, 2, 32)), TileInput)
        inp.close()
        inp.close()  # twice is fine
        tested.add(fmt)
        assert isinstance(INPUT_FORMATS[fmt].fingerprint(InputConfig("x", source, fmt, options)), dict)
    assert tested | {"tiledir", "stac"} == set(INPUT_FORMATS)  # see test_io_tiledir and test_stac_input
