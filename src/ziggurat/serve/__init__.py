"""Stage 10, `ziggurat serve`: a local web page with a slippy map of an output (see `app`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ziggurat.core.errors import OutputError, ServeError
from ziggurat.core.formats import Storage, records_beside
from ziggurat.io import open_output
from ziggurat.io.outputs.stored import is_stored
from ziggurat.recipe import Recipe

DEFAULT_HOST = "127.0.0.1"   # local only, unless asked otherwise
DEFAULT_PORT = 8765



def target(path: str | os.PathLike[str]) -> tuple[Path, Recipe | None]:
    """(output folder, recipe or None) of what `serve` was given: a recipe or an output."""
    from ziggurat.engine.run import load

    p = Path(path)
    if p.is_file() and p.suffix.lower() in (".yaml", ".yml", ".mapchete"):
        recipe = load(p)
        if recipe.output.remote:
            raise OutputError(f"{recipe.output.url}: serve shows local tile directories")
        out = recipe.output.path
        if recipe.output.storage is not Storage.TILES or not recipe.output.format_info.raster_tiles:
            raise OutputError(f"{out}: serve shows raster tile directories (GTiff or PNG tiles); "
                              "open a single GeoTIFF in QGIS")
        if not is_stored(out):   # nothing written yet: the folder, as a run makes it
            open_output(recipe.output, recipe.grid).prepare(False)
        return out, recipe
    if records_beside(p):
        raise OutputError(f"{p}: serve shows raster tile directories; open a single GeoTIFF in QGIS")
    if is_stored(p, Storage.STORE):
        raise OutputError(f"{p}: serve shows raster tile directories and .pmtiles archives; open a Zarr store "
                          "with xarray.open_zarr")
    return p, None


def create(path: str | os.PathLike[str]) -> Any:
    """The ASGI app for a recipe or an output folder."""
    from ziggurat.serve.app import create_app, create_archive_app

    if str(path).lower().endswith(".pmtiles"):
        return create_archive_app(Path(path))
    out, recipe = target(path)
    return create_app(out, recipe)


def serve(path: str | os.PathLike[str], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          ready: Any = None) -> None:
    """Run the server until interrupted; `ready(url)` is called once it listens."""
    import socket

    import uvicorn

    app = create(path)
    try:   # a taken port is one clear message, before uvicorn logs its own
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port)") from exc
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    if ready is not None:
        ready(f"http://{host}:{port}/")
    try:
        server.run()
    except KeyboardInterrupt:   # Ctrl-C is how a server stops
        pass


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "create", "serve", "target"]
