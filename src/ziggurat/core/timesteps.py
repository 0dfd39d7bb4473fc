"""An output's time axis (`output.time`): the run's time steps, fixed by the recipe so every tile
fills the same ones.

A step is a half-open UTC interval [start, end). `{start, end, every}` cuts the span from `start`
to `end` (a date: its whole day included) into steps of `every` (``1 month``, ``16 days``,
``1 year``, ``2 weeks``); a list of intervals (``2024-01-01/2024-03-31``, a bare date being its
whole day) gives them one by one. A step is named by its start (``2024-03-01``).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

UNITS = ("day", "week", "month", "year")
_DURATION = re.compile(r"^\s*(\d+)\s*(day|week|month|year)s?\s*$", re.IGNORECASE)
#: days of a month or a year where a duration is a span of time (`max_gap`)
_MEAN_DAYS = {"day": 1.0, "week": 7.0, "month": 30.436875, "year": 365.2425}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class TimeSpecError(ValueError):
    """A malformed `output.time`; `key` is where below it (a tuple of keys and indexes)."""

    def __init__(self, key: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


def parse_duration(text: Any) -> tuple[int, str]:
    """``16 days`` -> (16, "day"); ValueError for anything else."""
    found = _DURATION.match(str(text)) if isinstance(text, str) else None
    if found is None or int(found.group(1)) < 1:
        raise ValueError(f"expected a duration such as '1 month', '16 days', '1 year' or '2 weeks', got {text!r}")
    return int(found.group(1)), found.group(2).lower()


def duration_days(text: Any) -> float:
    """A duration as days (a month is 30.44 days, a year 365.24): what `max_gap` compares."""
    n, unit = parse_duration(text)
    return n * _MEAN_DAYS[unit]


def instant(value: Any, *, end: bool = False) -> dt.datetime:
    """A YAML date, datetime or ISO string as an aware UTC datetime; as an `end`, a bare date is
    the end of its day (exclusive: the next midnight)."""
    if isinstance(value, dt.datetime):
        out = value
    elif isinstance(value, dt.date):
        out = dt.datetime(value.year, value.month, value.day)
        if end:
            out += dt.timedelta(days=1)
    elif isinstance(value, str):
        text = value.strip()
        try:
            out = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"expected a date or an ISO 8601 time, got {value!r}") from None
        if end and "T" not in text and " " not in text:
            out += dt.timedelta(days=1)
    else:
        raise ValueError(f"expected a date or an ISO 8601 time, got {value!r}")
    return out.replace(tzinfo=dt.timezone.utc) if out.tzinfo is None else out.astimezone(dt.timezone.utc)


def add(when: dt.datetime, n: int, unit: str) -> dt.datetime:
    """`when` moved by n units; months and years keep the day of the month where it exists."""
    if unit in ("day", "week"):
        return when + dt.timedelta(days=n * (7 if unit == "week" else 1))
    months = when.month - 1 + n * (12 if unit == "year" else 1)
    year, month = when.year + months // 12, months % 12 + 1
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Step:
    start: dt.datetime
    end: dt.datetime

    @property
    def label(self) -> str:
        """The start's date, or its full time where that is not midnight."""
        if self.start.time() == dt.time(0):
            return self.start.date().isoformat()
        return self.start.strftime("%Y-%m-%dT%H%M%SZ")

    @property
    def centre_days(self) -> float:
        """The middle of the step in days since 1970-01-01 (where interpolation places it)."""
        return ((self.start - EPOCH) + (self.end - self.start) / 2) / dt.timedelta(days=1)

    def holds(self, when: dt.datetime) -> bool:
        return self.start <= when < self.end


@dataclass(frozen=True)
class TimeSteps:
    steps: tuple[Step, ...]

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __getitem__(self, i: int) -> Step:
        return self.steps[i]

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.steps]

    @property
    def start(self) -> dt.datetime:
        return self.steps[0].start

    @property
    def end(self) -> dt.datetime:
        return self.steps[-1].end

    def to_json(self) -> list[list[str]]:
        return [[s.start.isoformat(), s.end.isoformat()] for s in self.steps]

    @classmethod
    def from_json(cls, value: Sequence[Sequence[str]]) -> "TimeSteps":
        return cls(tuple(Step(instant(a), instant(b)) for a, b in value))

    @classmethod
    def parse(cls, spec: Any) -> "TimeSteps":
        """`output.time` as a recipe gives it; TimeSpecError names the key that is wrong."""
        if isinstance(spec, dict) or hasattr(spec, "keys"):
            if "intervals" in spec:
                return cls._intervals(spec["intervals"], ("intervals",))
            return cls._every(spec)
        if isinstance(spec, (list, tuple)):
            return cls._intervals(spec, ())
        raise TimeSpecError((), "expected {start, end, every} (e.g. every: 1 month) or a list of "
                                "start/end intervals")

    @classmethod
    def _every(cls, spec: Any) -> "TimeSteps":
        unknown = sorted(set(spec) - {"start", "end", "every"})
        if unknown:
            raise TimeSpecError((unknown[0],), f"unknown key {unknown[0]!r} (expected start, end, every; "
                                               "or intervals)")
        for key in ("start", "end", "every"):
            if key not in spec:
                raise TimeSpecError((key,), f"missing key {key!r} (time: {{start, end, every}})")
        try:
            start = instant(spec["start"])
        except ValueError as exc:
            raise TimeSpecError(("start",), str(exc)) from None
        try:
            end = instant(spec["end"], end=True)
        except ValueError as exc:
            raise TimeSpecError(("end",), str(exc)) from None
        try:
            n, unit = parse_duration(spec["every"])
        except ValueError as exc:
            raise TimeSpecError(("every",), str(exc)) from None
        if end <= start:
            raise TimeSpecError(("end",), f"expected an end after the start ({spec['start']})")
        steps = []
        while start < end:
            nxt = add(start, n, unit)
            steps.append(Step(start, min(nxt, end)))
            start = nxt
            if len(steps) > 100_000:
                raise TimeSpecError(("every",), "more than 100,000 time steps")
        return cls(tuple(steps))

    @classmethod
    def _intervals(cls, items: Any, key: tuple[Any, ...]) -> "TimeSteps":
        if not isinstance(items, (list, tuple)) or not items:
            raise TimeSpecError(key, "expected a non-empty list of intervals (start/end, or a date)")
        steps: list[Step] = []
        for i, item in enumerate(items):
            text = item.isoformat() if isinstance(item, (dt.date, dt.datetime)) else item
            if not isinstance(text, str):
                raise TimeSpecError(key + (i,), f"expected an interval start/end or a date, got {item!r}")
            a, _, b = text.partition("/")
            try:
                step = Step(instant(a), instant(b if b else a, end=True))
            except ValueError as exc:
                raise TimeSpecError(key + (i,), str(exc)) from None
            if step.end <= step.start:
                raise TimeSpecError(key + (i,), f"interval {text!r} ends before it starts")
            if steps and step.start < steps[-1].end:
                raise TimeSpecError(key + (i,), f"interval {text!r} starts before the one before it ends "
                                                "(intervals go in time order, without overlap)")
            steps.append(step)
        return cls(tuple(steps))


__all__ = ["Step", "TimeSpecError", "TimeSteps", "add", "duration_days", "instant", "parse_duration"]
