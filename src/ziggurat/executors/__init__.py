"""Stage 6, the executors: where tiles run, by name; the Python API and the CLI share this table."""

from __future__ import annotations

from typing import Any, Callable

from ziggurat.core.errors import ExecutorError
from ziggurat.core.tasks import WAIT
from ziggurat.executors.base import Executor, default_workers
from ziggurat.executors.local import SequentialExecutor, ThreadExecutor
from ziggurat.executors.pool import ProcessExecutor

EXECUTORS: dict[str, type[Executor]] = {
    SequentialExecutor.name: SequentialExecutor,
    ThreadExecutor.name: ThreadExecutor,
    ProcessExecutor.name: ProcessExecutor,
}


def _load_dask() -> Callable[..., Executor]:
    """`distributed` is an optional extra, imported only when the dask executor is asked for."""
    try:
        from ziggurat.executors.dask import DaskExecutor
    except ImportError as exc:
        raise ExecutorError(f"the dask executor needs the 'distributed' package ({exc}): "
                            "pip install ziggurat[dask]") from exc
    return DaskExecutor


#: Executors whose module is imported on first use (optional dependencies); name -> loader of
#: a class taking (workers, *, retries, **options).
LAZY_EXECUTORS: dict[str, Callable[[], Callable[..., Executor]]] = {"dask": _load_dask}


def get_executor(name: str | Executor = "sequential", workers: int | None = None, *,
                 retries: int = 2, write_in: str | None = None, tile_timeout: float | None = None,
                 **options: Any) -> Executor:
    """An executor by name; pool options only apply to the process pool, `options` (e.g.
    `scheduler=` for dask) to the lazily loaded executors."""
    if isinstance(name, Executor):
        return name
    try:
        lazy = LAZY_EXECUTORS[name] if name not in EXECUTORS else None
        cls = EXECUTORS[name] if lazy is None else None
    except KeyError as exc:
        raise ExecutorError(f"unknown executor {name!r}; choose one of: "
                            f"{', '.join([*EXECUTORS, *LAZY_EXECUTORS])}") from exc
    if workers is not None and workers < 1:
        raise ExecutorError(f"workers must be >= 1, got {workers}")
    if retries < 0:
        raise ExecutorError(f"retries must be >= 0, got {retries}")
    if tile_timeout is not None and (tile_timeout <= 0 or name not in (ProcessExecutor.name, "dask")):
        raise ExecutorError("a tile timeout must be > 0 s and needs the processes or dask executor (a thread "
                            f"cannot be stopped), got {tile_timeout} s with {name!r}")
    if lazy is not None:
        if tile_timeout is not None:
            options["tile_timeout"] = tile_timeout
        return lazy()(workers, retries=retries, **options)
    assert cls is not None
    if issubclass(cls, ProcessExecutor):
        if write_in not in (None, "workers", "parent"):
            raise ExecutorError(f"write_in must be 'workers' or 'parent', got {write_in!r}")
        return cls(workers, retries=retries, write_in=write_in or "workers", tile_timeout=tile_timeout)
    return cls(workers)


__all__ = ["EXECUTORS", "LAZY_EXECUTORS", "WAIT", "Executor", "ExecutorError", "ProcessExecutor",
           "SequentialExecutor", "ThreadExecutor", "default_workers", "get_executor"]
