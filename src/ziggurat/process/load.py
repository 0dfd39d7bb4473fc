"""Finding and importing process modules, once per worker (`call` checks and calls them).

A process is imported once per worker (cached by its reference) and called by keyword:
inputs and parameters by name, plus `tile` if `execute` asks for it. Annotations are never
evaluated, so `from __future__ import annotations` in a process file is harmless.

A mapchete-style process (it takes `mp`, or the recipe is a `.mapchete` file) is called by
mapchete's rules (`ProcessFunc.analyze_parameters`/`filter_parameters`): it receives only the
inputs and parameters its signature names, parameters it does not take are a warning, and
parameters annotated with mapchete's markers (`Tile`, `OutputNodataValue`, ...) get those values.
`process: mapchete.processes.<name>` runs ziggurat's ready-made process under mapchete's
parameter names (`ziggurat_processes.mapchete_processes`).
"""

from __future__ import annotations

import ast
import faulthandler
import hashlib
import importlib
import importlib.util
import inspect
import logging
import os
import pkgutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

from ziggurat.core import interrupts
from ziggurat.core.errors import ProcessLoadError
from ziggurat.process.compat.types import special_kind

READY_MADE_PACKAGE = "ziggurat_processes"
#: mapchete's ready-made processes, run by ziggurat's implementations with mapchete's parameters
MAPCHETE_PROCESSES = ("mapchete.processes.", f"{READY_MADE_PACKAGE}.mapchete_processes.")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessRef:
    """Where a process comes from: the recipe's `process:` string and the recipe folder."""

    spec: str
    base_dir: str
    #: the module's source when the recipe gives it as code lines (mapchete's list form), or
    #: a process file's source shipped to workers that cannot see the file
    code: str | None = None
    #: the file `code` was read from (tracebacks name it)
    origin: str | None = None

    @classmethod
    def of(cls, recipe: Any) -> "ProcessRef":
        return cls(recipe.process, str(recipe.base_dir), recipe.process_code)

    @property
    def is_file(self) -> bool:
        return self.code is None and (self.spec.endswith(".py") or "/" in self.spec or "\\" in self.spec)


@dataclass(frozen=True)
class LoadedProcess:
    ref: ProcessRef
    module: ModuleType
    func: Callable[..., Any]
    names: tuple[str, ...]          # keyword parameters execute() accepts
    required: frozenset[str]        # those without a default
    accepts_var_kwargs: bool
    source_path: Path | None
    #: parameter -> the special value its annotation asks for (mapchete's Tile, OutputPath, ...)
    special: Mapping[str, str] = field(default_factory=dict)
    #: exceptions that mean "no data here" besides ziggurat.Empty (an installed mapchete's)
    empty_types: tuple[type[BaseException], ...] = ()

    @property
    def wants_tile(self) -> bool:
        return "tile" in self.names or self.accepts_var_kwargs

    @property
    def wants_mp(self) -> bool:
        return "mp" in self.names

    def mapchete_style(self, recipe: Any) -> bool:
        """Called by mapchete's rules: it takes `mp` or mapchete's markers, or the recipe is a .mapchete file."""
        return (self.wants_mp or bool(self.special) or recipe.is_mapchete
                or self.ref.spec.startswith(MAPCHETE_PROCESSES))

    def source(self) -> str:
        """The module's source text, for provenance."""
        if self.ref.code is not None:
            return self.ref.code
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
        raise _load_error(ref, f"importing {path}", exc) from exc
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


def _load_error(ref: ProcessRef, doing: str, exc: BaseException) -> BaseException:
    """The error for a process module that failed to load; a real Ctrl-C stays one."""
    if isinstance(exc, KeyboardInterrupt) and interrupts.signalled():
        return exc
    if isinstance(exc, SystemExit):
        return ProcessLoadError(f"process {ref.spec!r}: {doing} called sys.exit({exc.code!r}); a process module "
                                "must not exit at import")
    return ProcessLoadError(f"process {ref.spec!r}: {doing} failed: {type(exc).__name__}: {exc}")


def _import_code(ref: ProcessRef) -> ModuleType:
    assert ref.code is not None
    name = f"ziggurat_process_inline_{hashlib.sha1(ref.code.encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    module = ModuleType(name)
    module.__file__ = ref.origin or f"<process code in the recipe in {ref.base_dir}>"
    sys.modules[name] = module
    try:
        exec(compile(ref.code, module.__file__, "exec"), module.__dict__)
    except BaseException as exc:
        sys.modules.pop(name, None)
        raise _load_error(ref, "running the process code in the recipe", exc) from exc
    return module


def _resolve_module(ref: ProcessRef) -> tuple[ModuleType, Path | None]:
    from ziggurat.process.compat import shim

    shim.install()  # `import mapchete` in a process works without mapchete
    if ref.code is not None:
        return _import_code(ref), None
    if ref.spec.startswith(MAPCHETE_PROCESSES[0]):
        ref = ProcessRef(MAPCHETE_PROCESSES[1] + ref.spec[len(MAPCHETE_PROCESSES[0]):], ref.base_dir)
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


#: seconds a process module may take to import in the probe ($ZIGGURAT_IMPORT_TIMEOUT)
IMPORT_TIMEOUT = 60.0


def probe_import(ref: ProcessRef) -> None:
    """Import a user's process module once in a forked child before the parent does: a module
    that calls os._exit(), aborts, segfaults or never finishes importing then fails the run with a
    message naming it, instead of ending or hanging the CLI. Exceptions are left to the parent's
    own import (which reports them). Ready-made processes and modules already loaded skip it."""
    if ref.spec.startswith((READY_MADE_PACKAGE, MAPCHETE_PROCESSES[0])) or not hasattr(os, "fork"):
        return
    if ref.code is None and "." not in ref.spec and not ref.is_file:
        return   # a ready-made process by name
    with _lock:
        if (ref, _file_version(ref)) in _cache:
            return
    timeout = float(os.environ.get("ZIGGURAT_IMPORT_TIMEOUT", IMPORT_TIMEOUT))
    pid = os.fork()
    if pid == 0:   # the child: import, and report only how it ended
        code = 0
        faulthandler.disable()   # a crash is reported by the parent, not dumped here: the parent's
        quiet = os.open(os.devnull, os.O_WRONLY)   # own import shows what the module prints
        os.dup2(quiet, 2)
        try:
            _resolve_module(ref)
        except BaseException:
            code = 3
        os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise ProcessLoadError(f"process {ref.spec!r}: importing it did not finish within {timeout:g} s "
                                   "(an endless loop at import? set ZIGGURAT_IMPORT_TIMEOUT for a slow one)")
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise ProcessLoadError(f"process {ref.spec!r}: importing it killed the interpreter ({name}); "
                               "a crash in the module or in a library it loads")
    if os.WEXITSTATUS(status) not in (0, 3):
        raise ProcessLoadError(f"process {ref.spec!r}: importing it ended the interpreter with exit status "
                               f"{os.WEXITSTATUS(status)} (os._exit at import?)")


def _empty_types() -> tuple[type[BaseException], ...]:
    """An installed mapchete's MapcheteNodataTile (a process imported it) means Empty too."""
    errors = sys.modules.get("mapchete.errors")
    if errors is None or errors.__dict__.get("__ziggurat_shim__"):
        return ()
    found = tuple(errors.__dict__[n] for n in ("MapcheteNodataTile", "Empty") if n in errors.__dict__)
    return tuple(t for t in found if isinstance(t, type) and issubclass(t, BaseException))


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
        special: dict[str, str] = {}
        var_kwargs = False
        for p in sig.parameters.values():
            kind = special_kind(p.annotation, module.__dict__) if p.annotation is not p.empty else None
            if kind is not None:
                special[p.name] = kind
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
        loaded = LoadedProcess(ref, module, func, tuple(names), frozenset(required), var_kwargs, path,
                               special, _empty_types())
        _cache[key] = loaded
        return loaded


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
        if info.name.startswith("_") or info.ispkg:  # packages: mapchete's names (mapchete_processes)
            continue
        spec = importlib.util.find_spec(f"{READY_MADE_PACKAGE}.{info.name}")
        out.append((info.name, _summary(spec.origin) if spec and spec.origin else ""))
    return sorted(out)
