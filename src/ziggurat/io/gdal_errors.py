"""GDAL's own error state, for writes rasterio does not check.

When GDAL fails to write a block or a directory (a full disk), it records the error but
rasterio's write and close return normally; the error then surfaces in the next, unrelated
call (a read of an *input*). Writers reset the state before writing a file and check it after
closing, so a failed write is that tile's error and the incomplete file is never put in place.
Works with the GDAL inside the rasterio wheels (found next to rasterio); elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import glob
import os
from functools import lru_cache
from typing import Any

CE_FAILURE = 3


@lru_cache(maxsize=2)
def _gdal(package: str = "rasterio") -> Any:
    """The GDAL library of `package`'s wheel (rasterio and fiona each bundle their own)."""
    import importlib

    module = importlib.import_module(package)
    here = os.path.dirname(os.path.dirname(module.__file__ or ""))
    for path in sorted(glob.glob(os.path.join(here, f"{package}.libs", "libgdal*"))):
        try:
            lib = ctypes.CDLL(path)
            lib.CPLGetLastErrorType.restype = ctypes.c_int
            lib.CPLGetLastErrorMsg.restype = ctypes.c_char_p
            return lib
        except (OSError, AttributeError):
            continue
    return None


def reset(package: str = "rasterio") -> None:
    lib = _gdal(package)
    if lib is not None:
        lib.CPLErrorReset()


def failure(package: str = "rasterio") -> str | None:
    """GDAL's last error message on this thread if it was a failure since `reset()`, else None
    (`package`: whose GDAL, "rasterio" or "fiona")."""
    lib = _gdal(package)
    if lib is None or lib.CPLGetLastErrorType() < CE_FAILURE:
        return None
    message = lib.CPLGetLastErrorMsg()
    return message.decode("utf-8", "replace") if message else "GDAL reported a failure"


__all__ = ["failure", "reset"]
