"""The run-narrowing arguments as one value: the same nine for `execute`, `dry_run`,
`reproduce`, the manifest and the CLI's shared options."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping, Sequence


def _tuple(value: Any) -> tuple[Any, ...] | None:
    """The CLI gives () for an option not used; None means "not narrowed"."""
    if value is None:
        return None
    value = tuple(value)
    return value or None


@dataclass(frozen=True)
class Selection:
    """Narrows a recipe's zooms and area for one run; all None runs the whole recipe.

    `zoom`: 5, "3,8" or (3, 8), inside the recipe's zoom_levels; `bounds` (W, S, E, N) in
    `bounds_crs` (default: the grid CRS); `tile` (Z, R, C) one tile; `point` (X, Y) in
    `point_crs`: the tile at each zoom; `area`: WKT, GeoJSON or a vector file (a shapely
    polygon from Python) in `area_crs`: only tiles meeting it, rasters masked to it; `part`:
    "I/N", the I-th of N parts of the run for batch systems (see `plan.parts`).
    """

    zoom: Any = None
    bounds: Sequence[float] | None = None
    bounds_crs: str | None = None
    tile: Sequence[int] | None = None
    point: Sequence[float] | None = None
    point_crs: str | None = None
    area: Any = None
    area_crs: str | None = None
    part: str | None = None

    def __post_init__(self) -> None:
        for name in ("bounds", "tile", "point"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        if self.part is not None:
            from ziggurat.plan.parts import Part

            object.__setattr__(self, "part", str(Part.parse(self.part)))

    @classmethod
    def of(cls, selection: Selection | None = None, **narrowing: Any) -> Selection:
        """A selection from another one and/or keyword arguments (the Python API's form)."""
        base = selection if selection is not None else cls()
        unknown = set(narrowing) - NAMES
        if unknown:
            raise TypeError(f"unknown selection argument(s) {', '.join(sorted(unknown))}; "
                            f"expected {', '.join(sorted(NAMES))}")
        return replace(base, **narrowing) if narrowing else base

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Selection:
        """From a run manifest's `options` (other keys there are ignored)."""
        return cls(**{name: options.get(name) for name in NAMES})

    def options(self) -> dict[str, Any]:
        """As recorded in a run manifest."""
        return asdict(self)



NAMES = frozenset(f.name for f in fields(Selection))

__all__ = ["NAMES", "Selection"]
