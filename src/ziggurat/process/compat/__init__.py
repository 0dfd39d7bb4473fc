"""Running mapchete process modules unchanged: the `mp` object, mapchete's input and tile
views, its annotation markers and, when mapchete is not installed, the few names processes
import from it (`ziggurat.process.compat.shim`). Nothing else of mapchete is imitated."""

from ziggurat.process.compat.inputs import MapcheteTile, RasterInputTile, VectorInputTile, adapt, group_of
from ziggurat.process.compat.mp import MapcheteProcess
from ziggurat.process.compat.types import SPECIAL_TYPES, special_kind

__all__ = ["MapcheteProcess", "MapcheteTile", "RasterInputTile", "SPECIAL_TYPES", "VectorInputTile", "adapt",
           "group_of", "special_kind"]
