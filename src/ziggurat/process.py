"""Finding, importing and checking process modules.

A process is imported once per worker (cached by its reference) and called by keyword:
inputs and parameters by name, plus `tile` if `execute` asks for it. Annotations are never
evaluated, so `from __future__ import annotations` in a process file is harmless.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import pkgutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

from ziggurat.errors import ProcessLoadError, RecipeError

READY_MADE_PACKAGE = "ziggurat_processes"


@dataclass(frozen=True)
class ProcessRef:
    """Where a process comes from: the recipe's `process:` string and the recipe folder."""

    spec: str
    base_dir: str

    @property
    def is_file(self) -> bool:
        return self.spec.endswith(".py") or "/" in self.spec or "\\" in self.spec


@dataclass(frozen=True)
class LoadedProcess:
    ref: ProcessRef
    module: ModuleType
    func: Callable[..., Any]
    names: tuple[str, ...]          # keyword parameters execute() accepts
    required: frozenset[str]        # those without a default
    accepts_var_kwargs: bool
    source_path: Path | None

    @property
    def wants_tile(self) -> bool:
        return "tile" in self.names or self.accepts_var_kwargs

    def source(self) -> str:
        """The module's source text, for provenance."""
        if self.source_path is not None:
            return self.source_path.read_text()
        return inspect.getsource(self.module)


#: Keyed by the reference and, for .py files, their (mtime, size): a long-lived worker (Dask,
#: a notebook) picks up an edited process file instead of running stale code.
_cache: dict[tuple[ProcessRef, tuple[int, int] | None], LoadedProcess] = {}
_lock = threading.Lock()


def _module_name_for(path: Path, version: tuple[int, int] | None) -> str:
    digest = hashlib.sha1(f"{path}:{version}".encode()).hexdigest()[:12]
    return f"ziggurat_process_{path.stem}_{digest}"


def _file_version(ref: ProcessRef) -> tuple[int, int] | None:
    if not ref.is_file:
        return None
    try:
        st = (Path(ref.base_dir) / ref.spec).stat()
    except OSError:
        return None  # reported as missing when resolved
    return st.st_mtime_ns, st.st_size


def _import_file(path: Path, ref: ProcessRef) -> ModuleType:
    name = _module_name_for(path, _file_version(ref))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ProcessLoadError(f"process {ref.spec!r}: {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise ProcessLoadError(
            f"process {ref.spec!r}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _import_dotted(name: str, ref: ProcessRef) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            ready = ", ".join(n for n, _ in list_processes()) or "none"
            raise ProcessLoadError(
                f"process {ref.spec!r} not found: not a .py file, not an importable module and "
                f"not a ready-made process (ready-made: {ready})") from exc
        raise ProcessLoadError(f"process {ref.spec!r}: importing {name} failed: {exc}") from exc
    except Exception as exc:
        raise ProcessLoadError(
            f"process {ref.spec!r}: importing {name} failed: {type(exc).__name__}: {exc}") from exc


def _resolve_module(ref: ProcessRef) -> tuple[ModuleType, Path | None]:
    if ref.is_file:
        path = (Path(ref.base_dir) / ref.spec).resolve()
        if not path.is_file():
            raise ProcessLoadError(f"process {ref.spec!r}: file {path} does not exist")
        return _import_file(path, ref), path
    if "." not in ref.spec and importlib.util.find_spec(f"{READY_MADE_PACKAGE}.{ref.spec}") is not None:
        module = _import_dotted(f"{READY_MADE_PACKAGE}.{ref.spec}", ref)
    else:
        module = _import_dotted(ref.spec, ref)
    file = getattr(module, "__file__", None)
    return module, Path(file) if file else None


def load_process(ref: ProcessRef) -> LoadedProcess:
    """Import a process once per interpreter and describe its `execute` signature."""
    with _lock:
        key = (ref, _file_version(ref))
        cached = _cache.get(key)
        if cached is not None:
            return cached
        module, path = _resolve_module(ref)
        func = getattr(module, "execute", None)
        if not callable(func):
            raise ProcessLoadError(f"process {ref.spec!r} ({path or module.__name__}) has no execute() function")
        try:
            sig = inspect.signature(func)  # does not evaluate string annotations
        except (TypeError, ValueError) as exc:
            raise ProcessLoadError(f"process {ref.spec!r}: cannot read the signature of execute(): {exc}") from exc
        names: list[str] = []
        required: set[str] = set()
        var_kwargs = False
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                var_kwargs = True
            elif p.kind is p.VAR_POSITIONAL:
                continue
            elif p.kind is p.POSITIONAL_ONLY:
                raise ProcessLoadError(
                    f"process {ref.spec!r}: execute() parameter {p.name!r} is positional-only; "
                    "inputs and parameters are passed by keyword")
            else:
                names.append(p.name)
                if p.default is p.empty:
                    required.add(p.name)
        loaded = LoadedProcess(ref, module, func, tuple(names), frozenset(required), var_kwargs, path)
        _cache[key] = loaded
        return loaded


def check_signature(loaded: LoadedProcess, recipe: Any) -> None:
    """Report, before any tile runs, recipe inputs/parameters that don't fit `execute()`."""
    given_inputs = set(recipe.inputs)
    param_names: set[str] = set(recipe.parameters)
    clash = given_inputs & param_names
    if clash:
        name = sorted(clash)[0]
        raise RecipeError(f"{recipe.describe_key('process_parameters', name)}: {name!r} is both an input "
                          "and a process parameter; rename one of them")
    where = loaded.source_path or loaded.module.__name__
    for name in sorted(param_names | given_inputs):
        if name not in loaded.names and not loaded.accepts_var_kwargs:
            section = "input" if name in given_inputs else "process_parameters"
            accepted = ", ".join(n for n in loaded.names if n != "tile") or "nothing"
            raise RecipeError(f"{recipe.describe_key(section, name)}: process {loaded.ref.spec!r} ({where}) "
                              f"does not take {name!r}; execute() accepts: {accepted}")
    missing = sorted(loaded.required - param_names - given_inputs - {"tile"})
    if missing:
        kind = "inputs or process_parameters"
        raise RecipeError(f"{recipe.describe_key('process_parameters')}: process {loaded.ref.spec!r} ({where}) "
                          f"requires {', '.join(map(repr, missing))}, which the recipe does not give "
                          f"(expected in {kind})")


def call_kwargs(loaded: LoadedProcess, inputs: Mapping[str, Any], parameters: Mapping[str, Any],
                tile: Any) -> dict[str, Any]:
    kwargs = {**parameters, **inputs}
    if loaded.wants_tile and "tile" not in kwargs:
        kwargs["tile"] = tile
    return kwargs


def _summary(path: str) -> str:
    try:
        doc = ast.get_docstring(ast.parse(Path(path).read_text()))
    except (OSError, SyntaxError, ValueError):
        return ""
    return doc.strip().splitlines()[0] if doc else ""


def list_processes() -> list[tuple[str, str]]:
    """Ready-made processes with the first line of their docstring, without importing them."""
    try:
        package = importlib.import_module(READY_MADE_PACKAGE)
    except ImportError:
        return []
    out = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        spec = importlib.util.find_spec(f"{READY_MADE_PACKAGE}.{info.name}")
        out.append((info.name, _summary(spec.origin) if spec and spec.origin else ""))
    return sorted(out)
