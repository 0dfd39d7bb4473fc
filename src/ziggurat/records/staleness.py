"""Whether a recorded tile is done or stale: the one decision continue mode makes, shared by a run
(`RunRecorder`) and by `ziggurat plan`, which walks the run's task source with it, so what plan
says a run would do is what the run does (overview tiles above rebuilt ones included)."""

from __future__ import annotations

import json
from typing import Any, Callable

from ziggurat.core.grid import Tile, TileIndex
from ziggurat.records.keys import RunKeys, reason
from ziggurat.records.ledger import DONE, Ledger, ProcessRow


class Staleness:
    """Answers per tile from the ledger and the run's keys; reads only."""

    def __init__(self, ledger: Ledger, keys: RunKeys, interrupted: Any = None,
                 legacy: Callable[[Tile], bool] | None = None) -> None:
        """`interrupted`: the extent of an --overwrite run that was cut short (its tiles older than
        it are stale); `legacy`: for an output without a ledger, whether a tile's files exist."""
        self.ledger, self.keys, self.interrupted, self.legacy = ledger, keys, interrupted, legacy
        self._old_parts: dict[str, Any] = {}
        self._reasons: dict[tuple[str | None, int], str] = {}   # (old key, zoom) -> why it is stale

    def is_done(self, tile: Tile) -> bool:
        """The ledger has the tile (written or empty) as this run would make it (same key and deps)."""
        row = self.ledger.row(tile.index)
        if row is None or row.status not in DONE:
            return self.legacy is not None and self.legacy(tile)
        return self.reason(tile, row) is None

    def reason(self, tile: Tile, row: ProcessRow) -> str | None:
        """Why a recorded tile is stale, or None when it is not."""
        if self.interrupted is not None and self.interrupted.covers(tile) and (row.run or "") < self.interrupted.run:
            return "an interrupted --overwrite run had not redone it"
        if row.key != self.keys.key(tile.zoom):
            why = self._reasons.get((row.key, tile.zoom))
            if why is None:
                why = self._reasons[(row.key, tile.zoom)] = reason(self._parts_of(row.key), self.keys.parts(tile.zoom))
            return why
        if row.deps != self.keys.deps(tile):
            return "input files it reads changed"
        return None

    def recorded_reason(self, index: TileIndex) -> str | None:
        """The reason a tile that has a ledger row is stale (None: no row, or not stale)."""
        row = self.ledger.row(index)
        if row is None or row.status not in DONE:
            return None
        return self.reason(self.keys.recipe.grid.tile(*index), row)

    def _parts_of(self, key: str | None) -> Any:
        if key is None:
            return None
        if key not in self._old_parts:
            text = self.ledger.key_parts(key)
            self._old_parts[key] = None if text is None else json.loads(text)
        return self._old_parts[key]


__all__ = ["Staleness"]
