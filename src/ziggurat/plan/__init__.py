"""Stage 5, the plan: which tiles a run covers and in what order, by index arithmetic only."""

from ziggurat.plan.selection import Selection
from ziggurat.plan.tiles import Plan, make_plan

__all__ = ["Plan", "Selection", "make_plan"]
