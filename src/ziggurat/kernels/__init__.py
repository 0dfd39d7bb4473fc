"""Stage 1, kernels: compiled numerical kernels (numba) for the ready-made processes and for
process authors: `from ziggurat.kernels import hillshade, slope, aspect, focal`.

Terrain (`hillshade`, `slope`, `aspect`) follows gdaldem's Horn algorithms; `focal` computes
moving-window statistics; `median`, `quantile` and `best` reduce a time series per pixel and
`gapfill` fills its missing steps from their neighbours in time. Each
kernel is compiled once and cached on disk (`_jit.cache_dir`), so pool workers load it instead
of compiling it; only numpy and numba are imported, numba on a kernel's first call (the loops
live in `_terrain`, `_focal` and `_temporal`): a parent that loads a process module to check it,
and never calls its kernels, does not pay for importing numba.
"""

from ziggurat.kernels.focal import SHAPES, STATISTICS, focal, window_offsets
from ziggurat.kernels.temporal import best, gapfill, median, quantile
from ziggurat.kernels.terrain import EARTH_RADIUS, aspect, hillshade, slope

__all__ = ["EARTH_RADIUS", "SHAPES", "STATISTICS", "aspect", "best", "focal", "gapfill", "hillshade", "median",
           "quantile", "slope", "window_offsets"]
