"""The architecture as tests: imports point one way, drivers implement the seams, no probing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from ziggurat.core.grid import Grid
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

SRC = REPO / "src"

#: The stages in the order a run passes them (ARCHITECTURE.md and each package's docstring say the
#: same); a module may import its own stage and earlier ones, never a later one, and no module
#: may reach itself through imports (lazy ones included).
STAGES: list[tuple[str, ...]] = [
    ("ziggurat_boot",),                      # 0: signals and the forkserver, standard library only
    ("ziggurat.core", "ziggurat.kernels"),   # 1: shared values, the format table; compiled kernels
    ("ziggurat.recipe",),                    # 2: YAML -> a validated, frozen Recipe
    ("ziggurat.io",),                        # 3: storage/, outputs/, inputs/, the driver registries
    ("ziggurat.process",),                   # 4: the process module and mapchete's API (compat/)
    ("ziggurat.plan",),                      # 5: which tiles, in which order
    ("ziggurat.executors",),                 # 6: where tiles run
    ("ziggurat.records",),                   # 7: ledger, provenance, lock, remote copy; catalog/
    ("ziggurat.engine",),                    # 8: execute(): outcomes to their subscribers
    ("ziggurat.audit",),                     # 9: plan report, verify, reproduce, status
    ("ziggurat.serve",),                     # 10: the preview web map
    ("ziggurat.cli", "ziggurat_command"),    # 11: the command line and its entry point
    ("ziggurat",),                           # 12: the curated public API (`ziggurat/__init__.py` only)
]
MAX_LINES = 400
MAX_FUNCTION_LINES = 60


def stage_of(module: str) -> int:
    """Index of the stage a dotted module belongs to (the longest matching prefix; the root
    package itself only by its exact name)."""
    best, best_len = None, -1
    for index, prefixes in enumerate(STAGES):
        for prefix in prefixes:
            match = module == prefix or (prefix != "ziggurat" and module.startswith(prefix + "."))
            if match and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"module {module} belongs to no stage; add it to STAGES and ARCHITECTURE.md")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _ours(name: str) -> bool:
    return name.split(".")[0] in ("ziggurat", "ziggurat_boot", "ziggurat_command")


def imported_modules(source: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) for every import of our modules, also those inside functions (lazy imports)
    and under `if TYPE_CHECKING:`."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if _ours(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _ours(node.module):
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


def cycles(modules: dict[str, str]) -> list[list[str]]:
    """Every group of modules that reach each other through imports (strongly connected
    components of more than one module, or a module importing itself), sorted."""
    known = set(modules)
    graph = {name: sorted({target for _, target in imported_modules(source, known) if target in known})
             for name, source in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):   # Tarjan's algorithm, iterative (no recursion limit on long chains)
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(graph[node]):
                work.append((node, i + 1))
                nxt = graph[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in graph[node]:
                    found.append(sorted(group))
    return sorted(found)


def _sources() -> dict[str, str]:
    return {module_name(p): p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}


def test_every_module_under_src_is_scanned():
    names = set(_sources())
    assert {"ziggurat_boot", "ziggurat_command", "ziggurat", "ziggurat.engine.run"} <= names


def test_imports_point_one_way():
    assert violations(_sources()) == []


def test_no_import_cycle_anywhere():
    assert cycles(_sources()) == []


def test_the_layering_check_catches_an_import_of_a_later_stage():
    modules = {"ziggurat.io.inputs.raster": "from ziggurat.engine.run import execute\n",
               "ziggurat.records.catalog.stac": "def f():\n    import ziggurat.cli\n",
               "ziggurat.engine.run": "from ziggurat.io import open_output\n",
               "ziggurat.cli": "from ziggurat.cli import commands\n", "ziggurat.cli.commands": "",
               "ziggurat_boot": "from ziggurat.core.grid import Grid\n"}
    found = violations(modules)
    assert len(found) == 3
    assert found[0].startswith("ziggurat.io.inputs.raster:1 imports ziggurat.engine.run")
    assert found[1].startswith("ziggurat.records.catalog.stac:2 imports ziggurat.cli")
    assert found[2].startswith("ziggurat_boot:1 imports ziggurat.core.grid")
    with pytest.raises(AssertionError, match="belongs to no stage"):
        stage_of("other.module")
    assert stage_of("ziggurat") == len(STAGES) - 1 and stage_of("ziggurat.core.grid") == 1


def test_the_cycle_check_catches_a_planted_cycle_even_inside_a_stage_and_through_lazy_imports():
    modules = {name: "" for name in _sources()}
    assert cycles(modules) == []
    planted = dict(modules)
    planted["ziggurat.recipe.model"] = "from ziggurat.recipe.inputs import InputSection\n"
    planted["ziggurat.recipe.inputs"] = "def load():\n    from ziggurat.recipe import model\n"
    planted["ziggurat.core.grid"] = "import ziggurat.core.grid\n"
    assert cycles(planted) == [["ziggurat.core.grid"], ["ziggurat.recipe.inputs", "ziggurat.recipe.model"]]
    planted = {"a.x": "", "ziggurat.io.x": "from ziggurat.io.y import f\n",
               "ziggurat.io.y": "from ziggurat.io.z import g\n", "ziggurat.io.z": "import ziggurat.io.x\n"}
    assert cycles(planted) == [["ziggurat.io.x", "ziggurat.io.y", "ziggurat.io.z"]]


def test_every_module_belongs_to_a_stage_and_stays_small():
    for path in SRC.rglob("*.py"):
        stage_of(module_name(path))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines: split it (at most {MAX_LINES})"


def test_functions_stay_short():
    long = [f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in SRC.rglob("*.py")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_every_package_says_its_stage_in_the_order_of_the_architecture():
    """Each stage package's docstring names its stage number, as ARCHITECTURE.md and STAGES do."""
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for number, prefixes in enumerate(STAGES):
        for prefix in prefixes:
            if prefix.startswith("ziggurat.") and prefix.count(".") == 1:
                init = SRC / Path(*prefix.split(".")) / "__init__.py"
                doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
                assert doc.startswith(f"Stage {number},"), f"{init.relative_to(REPO)}: expected 'Stage {number}, ...'"
                assert f"{number:>2}  {prefix.split('.')[1]}/" in text, f"ARCHITECTURE.md: stage {number} {prefix}"


#: a format name or file suffix as a string literal
FORMAT_LITERAL = re.compile(r"""(["'])(GTiff|COG|PNG|PNG_hillshade|PNG_RGBA|GeoJSON|FlatGeobuf|GeoParquet|Zarr|"""
                            r"""\.tiff?|\.png|\.geojson|\.fgb|\.parquet|\.zarr)\1""")
#: where format knowledge lives: the format table and the drivers
FORMAT_HOMES = ("ziggurat/core/formats.py", "ziggurat/io/outputs/", "ziggurat/io/inputs/")


def test_format_names_live_in_the_format_table_and_the_drivers():
    found = [f"{p.relative_to(REPO)}:{n}: {line.strip()}" for p in SRC.rglob("*.py")
             if not p.relative_to(SRC).as_posix().startswith(FORMAT_HOMES)
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if FORMAT_LITERAL.search(line)]
    assert found == []
    assert FORMAT_LITERAL.search('fmt == "GTiff"') and FORMAT_LITERAL.search("suffix == '.tif'")


def test_every_format_of_the_table_has_exactly_one_driver():
    from ziggurat.core.formats import FORMATS

    assert list(OUTPUT_FORMATS) == list(FORMATS)


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
    if caps.overviews or output.stored.is_raster:
        assert caps.kind == "raster" and caps.tile_files
    assert isinstance(output, SingleFileOutput) == name.endswith(".tif")
    assert not list(tmp_path.iterdir())  # opening an output writes nothing; `prepare` does


def test_single_file_output_is_not_a_tile_directory():
    from ziggurat.io.outputs.folder import TileFolder

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
