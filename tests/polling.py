"""Waiting in tests without fixed sleeps: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import subprocess
import time
from typing import Callable


def wait_until(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """True as soon as `condition()` is truthy; False once `timeout` seconds passed (a hang guard)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def session_processes(sid: int) -> list[str]:
    """Live processes of a session; zombies have exited (PID 1 here may not reap them)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,stat=,comm="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if line.split()[1] == str(sid) and not line.split()[2].startswith("Z")]
