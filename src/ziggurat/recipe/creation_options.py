"""GDAL creation options checked at load by the driver that will write the tiles.

GDAL validates creation options against its driver's option list (`DMD_CREATIONOPTIONLIST`:
names, types, allowed values) only when a file is created, and then merely warns and ignores a
bad value (`COMPRESS=FOO`), or fails at the first tile (`PREDICTOR=7`). Creating one small
in-memory file with the recipe's options, through the rasterio that writes the tiles, turns
both into an error at load naming the key.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any, Mapping

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rasterio.session import DummySession

#: GDAL's messages about creation options, as rasterio logs them
_UNEXPECTED = re.compile(r"'(?P<value>[^']*)' is an unexpected value for (?P<name>\w+) creation option"
                         r"(?: of type (?P<type>[\w-]+))?")
_NOT_RECOGNISED = re.compile(r"(?P<name>\w+)=(?P<value>.*?) value not recognised")
_NOT_SUPPORTED = re.compile(r"does not support creation option (?P<name>\w+)")
_PROBE_SIZE = 256


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def probe(driver: str, options: Mapping[str, Any], dtype: str, bands: int) -> list[tuple[str, str]]:
    """(option name, problem) for each option the driver rejects or would ignore; [] if all work."""
    if not options:
        return []
    collect = _Collect()
    logger = logging.getLogger("rasterio._env")
    logger.addHandler(collect)
    problems: list[tuple[str, str]] = []
    profile = {"driver": driver, "width": _PROBE_SIZE, "height": _PROBE_SIZE,
               "count": bands, "dtype": dtype, **{k.upper(): v for k, v in options.items()}}
    try:
        # no AWS session: with AWS credentials in the environment rasterio would build one per Env
        with warnings.catch_warnings(), rasterio.Env(session=DummySession(), GDAL_PAM_ENABLED="NO"), \
                MemoryFile() as mem:
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with mem.open(**profile) as dst:
                dst.write(np.zeros((bands, _PROBE_SIZE, _PROBE_SIZE), dtype=dtype))
    except Exception as exc:   # GDAL refused to create the file: name the option it names
        text = str(exc)
        name = next((n for n in options if re.search(rf"\b{re.escape(n.upper())}\b", text)), None)
        problems.append((name or next(iter(options)), text.split(": ", 1)[-1] if re.search(r"\.\w+: ", text) else text))
    finally:
        logger.removeHandler(collect)
    seen = {name for name, _ in problems}
    for message in collect.messages:
        for pattern in (_UNEXPECTED, _NOT_SUPPORTED, _NOT_RECOGNISED):
            match = pattern.search(message)
            if match is None:
                continue
            name = match.group("name").upper()
            key = next((k for k in options if k.upper() == name), name)
            if key in seen:
                break
            seen.add(key)
            if pattern is _UNEXPECTED:
                kind = f" (type {match.group('type')})" if match.group("type") else ""
                problems.append((key, f"{match.group('value')!r} is not a valid value{kind}; GDAL would ignore it"))
            elif pattern is _NOT_SUPPORTED:
                problems.append((key, "not an option of this GDAL's driver; GDAL would ignore it"))
            else:
                problems.append((key, f"value {match.group('value')!r} not recognised; GDAL would ignore it"))
            break
    return problems


__all__ = ["probe"]
