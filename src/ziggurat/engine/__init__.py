"""Stage 8, the engine: `execute()` wires recipe, plan, executor, output and records into one
run; outcomes flow to subscribers (`outcomes`); slow tiles are named; the summary is returned."""

from ziggurat.engine.run import execute, load, plan, prepare, process_error
from ziggurat.engine.summary import ProgressEvent, RunSummary

__all__ = ["ProgressEvent", "RunSummary", "execute", "load", "plan", "prepare", "process_error"]
