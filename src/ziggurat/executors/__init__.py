"""Executors by name; the Python API and the CLI share this table."""

from __future__ import annotations

from ziggurat.errors import ExecutorError
from ziggurat.executors.base import Executor, default_workers
from ziggurat.executors.local import SequentialExecutor, ThreadExecutor

EXECUTORS: dict[str, type[Executor]] = {
    SequentialExecutor.name: SequentialExecutor,
    ThreadExecutor.name: ThreadExecutor,
}


def get_executor(name: str | Executor = "sequential", workers: int | None = None) -> Executor:
    if isinstance(name, Executor):
        return name
    try:
        cls = EXECUTORS[name]
    except KeyError:
        raise ExecutorError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}") from None
    if workers is not None and workers < 1:
        raise ExecutorError(f"workers must be >= 1, got {workers}")
    return cls(workers)


__all__ = ["EXECUTORS", "Executor", "ExecutorError", "SequentialExecutor", "ThreadExecutor",
           "default_workers", "get_executor"]
