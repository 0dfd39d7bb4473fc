"""The preview server: a Starlette (ASGI) app over one output.

Starlette because it is a small, well-kept ASGI toolkit with no template or ORM layers we do not
need; uvicorn runs it. Routes take integers for tile coordinates (anything else is a 404), and
the only files served are the package's own static files and the output's tiles, looked up by
`StoredOutput.tile_path`: no request path ever becomes a file path.

With a recipe, a tile that is missing and not recorded in the ledger is processed on demand by
the same engine (a one-tile `execute`: ledger, atomic writes, provenance), so a later `execute`
skips it. While another run holds the output's lock, tiles are not processed here; the page shows
that run's progress from the ledger instead.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ziggurat.core.errors import ZigguratError
from ziggurat.core.grid import TileIndex
from ziggurat.recipe import Recipe
from ziggurat.records.catalog.quicklook import quicklook_path
from ziggurat.serve.render import OutputView, Style, tms_json

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_NO_STORE = {"Cache-Control": "no-store"}


class Preview:
    """State of one server: the output, the recipe (for processing on demand), a run lock."""

    def __init__(self, output: Path, recipe: Recipe | None = None) -> None:
        self.output = output
        self.recipe = recipe
        self.view = OutputView(output)
        self.total: int | None = None
        self.extent: Any = None             # the recipe's area: tiles outside it are not processed
        self._run_lock = threading.Lock()   # one on-demand run at a time
        if recipe is not None:
            from ziggurat.engine.run import plan

            try:
                run_plan = plan(recipe)
                self.total, self.extent = run_plan.count(), run_plan.extent
            except ZigguratError as exc:
                log.warning("cannot count the recipe's tiles: %s", exc)

    def refresh(self) -> None:
        """Tiles appeared (a run, on demand): zooms and extent are read again."""
        self.view = OutputView(self.output)

    def process(self, index: TileIndex) -> str:
        """Process the process tile holding output tile `index`; why not, if it was not."""
        if self.recipe is None:
            return "no recipe"
        if index.zoom not in self.recipe.zooms:
            return "not a zoom of the recipe"
        if self.extent is None or not self.view.grid.tile(*index).bounds.intersects(self.extent):
            return "outside the recipe's area"
        status = self.view.tile_status(index, self.recipe.grid)
        if status.get("status") not in ("not processed", None):
            return f"recorded as {status['status']}"
        if not self._run_lock.acquire(blocking=False):
            return "busy"
        try:
            from ziggurat.engine.run import execute

            zoom, row, col = status["process_tile"]
            execute(self.recipe, executor="sequential", tile=(zoom, row, col), quicklook=False)
            self.refresh()
            return "processed"
        except ZigguratError as exc:   # e.g. another run holds the output: show its progress
            log.info("tile %s not processed on demand: %s", index, exc)
            return f"not processed: {exc}"
        finally:
            self._run_lock.release()


def _style(request: Request) -> Style:
    q = request.query_params

    def number(name: str) -> float | None:
        try:
            return float(q[name]) if q.get(name) not in (None, "") else None
        except ValueError:
            return None

    band = q.get("band", "1")
    return Style(q.get("colormap", "viridis"), number("min"), number("max"), int(band) if band.isdigit() else 1)


class _Endpoints:
    """The preview's routes, each answering from the one `Preview`."""

    def __init__(self, preview: Preview) -> None:
        self.preview = preview

    def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_NO_STORE)

    def info(self, request: Request) -> Response:
        data = self.preview.view.info()
        from rio_tiler.colormap import cmap

        recipe = self.preview.recipe
        data.update(output=str(self.preview.output), recipe=str(recipe.path) if recipe is not None else None,
                    colormaps=sorted(cmap.list()), tms=self.preview.view.grid.tms.id)
        return JSONResponse(data, headers=_NO_STORE)

    def tile(self, request: Request) -> Response:
        p = request.path_params
        index = TileIndex(p["zoom"], p["row"], p["col"])
        grid = self.preview.view.grid
        if not grid.minzoom <= index.zoom <= grid.maxzoom:
            return Response(status_code=404)
        rows, cols = grid.matrix_shape(index.zoom)
        if not (0 <= index.row < rows and 0 <= index.col < cols):
            return Response(status_code=404)
        style = _style(request)
        try:
            png = self.preview.view.render(index, style)
            if png is None and self.preview.recipe is not None and request.query_params.get("process", "1") != "0":
                if self.preview.process(index) == "processed":
                    png = self.preview.view.render(index, style)
        except ZigguratError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if png is None:
            return Response(status_code=204, headers=_NO_STORE)
        return Response(png, media_type="image/png", headers=_NO_STORE)

    def value(self, request: Request) -> Response:
        q = request.query_params
        try:
            zoom, x, y = int(q["zoom"]), float(q["x"]), float(q["y"])
        except (KeyError, ValueError):
            return JSONResponse({"error": "expected zoom, x and y (grid CRS)"}, status_code=400)
        return JSONResponse(self.preview.view.value(zoom, x, y), headers=_NO_STORE)

    def tile_info(self, request: Request) -> Response:
        p = request.path_params
        grid = self.preview.recipe.grid if self.preview.recipe is not None else None
        return JSONResponse(self.preview.view.tile_status(TileIndex(p["zoom"], p["row"], p["col"]), grid),
                            headers=_NO_STORE)

    def progress(self, request: Request) -> Response:
        from ziggurat.records.lock import RunLock

        counts = self.preview.view.counts()
        holder = RunLock(self.preview.output).active_holder()
        return JSONResponse({"counts": counts, "done": sum(counts.values()), "total": self.preview.total,
                             "running": holder is not None, "run": holder}, headers=_NO_STORE)

    def quicklook(self, request: Request) -> Response:
        path = quicklook_path(self.preview.output)
        return FileResponse(path, media_type="image/png") if path.is_file() else Response(status_code=404)

    def tilejson(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        zooms = self.preview.view.tiles.limits().zooms or [0]
        data = self.preview.view.info()
        return JSONResponse({
            "tilejson": "3.0.0", "name": self.preview.output.name, "scheme": "xyz",
            "tiles": [f"{base}/tiles/{{z}}/{{y}}/{{x}}.png"], "minzoom": min(zooms), "maxzoom": max(zooms),
            "bounds": data["data_extent"] if data["crs"] == "EPSG:4326" else None,
            "tileMatrixSet": self.preview.view.grid.tms.id, "crs": data["crs"]})

    def tilesets(self, request: Request) -> Response:
        """OGC API - Tiles: the one tileset, its tile matrix set and the tile URL template."""
        base = str(request.base_url).rstrip("/")
        tms = self.preview.view.grid.tms.id
        return JSONResponse({"tilesets": [{
            "title": self.preview.output.name, "dataType": "map", "tileMatrixSetId": tms,
            "links": [{"rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme",
                       "href": f"{base}/tileMatrixSets/{tms}", "type": "application/json"},
                      {"rel": "item", "href": f"{base}/map/tiles/{tms}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}.png",
                       "type": "image/png", "templated": True}]}]})

    def tile_matrix_set(self, request: Request) -> Response:
        if request.path_params["tms"] != self.preview.view.grid.tms.id:
            return Response(status_code=404)
        return JSONResponse(tms_json(self.preview.view.grid))

    def ogc_tile(self, request: Request) -> Response:
        if request.path_params["tms"] != self.preview.view.grid.tms.id:
            return Response(status_code=404)
        return self.tile(request)


def create_app(output: Path, recipe: Recipe | None = None) -> Starlette:
    ep = _Endpoints(Preview(output, recipe))
    routes = [
        Route("/", ep.index),
        Route("/api/info", ep.info),
        Route("/api/value", ep.value),
        Route("/api/progress", ep.progress),
        Route("/api/tile/{zoom:int}/{row:int}/{col:int}", ep.tile_info),
        Route("/tiles/{zoom:int}/{row:int}/{col:int}.png", ep.tile),
        Route("/map/tiles", ep.tilesets),
        Route("/map/tiles/{tms:str}/{zoom:int}/{row:int}/{col:int}.png", ep.ogc_tile),
        Route("/tileMatrixSets/{tms:str}", ep.tile_matrix_set),
        Route("/tilejson.json", ep.tilejson),
        Route("/quicklook.png", ep.quicklook),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


def create_archive_app(path: Path) -> Starlette:
    """`ziggurat serve out.pmtiles`: the archive's tiles, its TileJSON and a map page."""
    from ziggurat.serve.pmtiles import PMTilesArchive

    archive = PMTilesArchive(path)
    header, meta = archive.header, archive.metadata

    def index(request: Request) -> Response:
        return FileResponse(STATIC / "pmtiles.html", headers=_NO_STORE)

    def tile(request: Request) -> Response:
        p = request.path_params
        data = archive.tile(p["zoom"], p["col"], p["row"])
        if data is None:
            return Response(status_code=204)
        return Response(data, media_type="image/png" if archive.png else "application/octet-stream")

    def tilejson(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return JSONResponse({
            "tilejson": "3.0.0", "name": meta.get("name", path.stem), "scheme": "xyz",
            "tiles": [f"{base}/tiles/{{z}}/{{y}}/{{x}}.png"], "minzoom": header["min_zoom"],
            "maxzoom": header["max_zoom"], "bounds": [header[k] / 1e7 for k in ("min_lon_e7", "min_lat_e7",
                                                                                 "max_lon_e7", "max_lat_e7")],
            "attribution": meta.get("attribution"), "tileMatrixSet": "WebMercatorQuad"})

    routes = [
        Route("/", index),
        Route("/tiles/{zoom:int}/{row:int}/{col:int}.png", tile),
        Route("/tilejson.json", tilejson),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)   # the archive stays open (mmap) while the server runs


__all__ = ["Preview", "create_app", "create_archive_app"]
