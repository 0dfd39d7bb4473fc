"""Imported last by the pool's forkserver, once everything it preloads is in memory: those objects
are moved out of the cyclic garbage collector's reach (`gc.freeze`).

Nothing the forkserver preloaded (numpy, GDAL's bindings, numba and its compiled kernels: some
150,000 objects) is ever garbage, yet every full collection walked it again, in each worker the
forkserver forks, and once more when the forkserver exited (0.3 s of a core per process). Frozen,
the workers' collections skip those objects and leave their memory pages shared with the
forkserver instead of touching every page's reference counts (copy-on-write), as Python's `gc`
documentation advises for servers that fork.
"""

from __future__ import annotations

import gc

gc.freeze()

__all__: list[str] = []
