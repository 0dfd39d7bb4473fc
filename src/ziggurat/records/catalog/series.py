"""A time series tile directory described step by step: a folder per step holding a VRT of that
step's bands and a STAC item, all in one STAC Collection (`{output}/collection.json`).

The tiles hold every step (a band per step and band), so the steps share them: a step's VRT reads
its bands through the output's tiled-assets item (GDAL's STACTA driver), which makes the VRT a few
lines whatever the number of tiles, and gives GDAL the pyramid's coarser zooms as overviews.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import rasterio

from ziggurat.core.errors import OutputError
from ziggurat.io.outputs.stored import StoredOutput
from ziggurat.io.storage.atomic import write_bytes_atomic, write_json_atomic
from ziggurat.records.catalog.collection import update_collection
from ziggurat.records.catalog.parts import raster_bands, read_json

VRT_TYPE = "application/x-vrt"


def _iso(when: dt.datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def step_vrt(item: Path, src: Any, vrt: Path, first_band: int, bands: int, nodata: float | int | None) -> bytes:
    """A VRT of `bands` bands from `first_band` of the output's item (`src`, opened), relative to the VRT."""
    w, h, t, crs, dtype = src.width, src.height, src.transform, src.crs, src.dtypes[0]
    gdal_type = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
                 "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32",
                 "float64": "Float64"}[dtype]
    rel = escape(Path(os.path.relpath(item, vrt.parent)).as_posix())
    lines = [f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">', f"  <SRS>{escape(crs.to_wkt())}</SRS>",
             f"  <GeoTransform>{t.c!r}, {t.a!r}, 0.0, {t.f!r}, 0.0, {t.e!r}</GeoTransform>"]
    for band in range(bands):
        lines.append(f'  <VRTRasterBand dataType="{gdal_type}" band="{band + 1}">')
        if nodata is not None:
            lines.append(f"    <NoDataValue>{nodata!r}</NoDataValue>")
        lines += ["    <SimpleSource>", f'      <SourceFilename relativeToVRT="1">{rel}</SourceFilename>',
                  '      <OpenOptions><OOI key="SKIP_MISSING_METATILE">YES</OOI></OpenOptions>',
                  f"      <SourceBand>{first_band + band}</SourceBand>",
                  f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>',
                  f'      <DstRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>', "    </SimpleSource>",
                  "  </VRTRasterBand>"]
    lines.append("</VRTDataset>")
    return ("\n".join(lines) + "\n").encode()


def write_series_catalog(tiles: StoredOutput, item: Path) -> Path | None:
    """Per step `{label}/{label}.vrt` and `{label}/{label}.json`, and the collection; returns it
    (None for an output without a time axis)."""
    if tiles.time is None:
        return None
    main = read_json(item, "its steps are not described")
    if main is None:
        return None
    try:
        with rasterio.open(item, SKIP_MISSING_METATILE="YES") as src:   # once: every step's VRT reads it
            return _write_steps(tiles, item, src, main)
    except rasterio.errors.RasterioIOError as exc:
        raise OutputError(f"cannot describe the steps of {tiles.path}: {exc}") from exc


def _write_steps(tiles: StoredOutput, item: Path, src: Any, main: dict[str, Any]) -> Path | None:
    assert tiles.time is not None
    per_step = tiles.bands // len(tiles.time)
    props = {k: v for k, v in (main.get("properties") or {}).items() if k.startswith("proj:")}
    extensions = [e for e in main.get("stac_extensions") or [] if "projection" in e or "raster" in e]
    collection: Path | None = None
    for t, step in enumerate(tiles.time):
        folder = tiles.path / step.label
        vrt = folder / f"{step.label}.vrt"
        specs = [dict(s) for s in tiles.band_specs[t * per_step:(t + 1) * per_step]]
        for spec in specs:   # the step's own bands: their names without the step
            spec["name"] = str(spec.get("name", "")).split(" ", 1)[-1]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(vrt, step_vrt(item, src, vrt, t * per_step + 1, per_step, tiles.nodata))
            step_item = _step_item(main, step, props, extensions, vrt, per_step, tiles, specs)
            write_json_atomic(folder / f"{step.label}.json", step_item)
        except OSError as exc:
            raise OutputError(f"cannot describe step {step.label} of {tiles.path}: {exc}") from exc
        collection = update_collection(folder / f"{step.label}.json",
                                       {"id": main["id"], "description": f"{main['id']}: a time series of "
                                        f"{len(tiles.time)} steps, one item per step"}, tiles.path)
    return collection


def _step_item(main: dict[str, Any], step: Any, props: dict[str, Any], extensions: list[str], vrt: Path,
               bands: int, tiles: StoredOutput, specs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "Feature", "stac_version": main.get("stac_version", "1.0.0"), "stac_extensions": extensions,
            "id": f"{main['id']}-{step.label}", "geometry": main.get("geometry"), "bbox": main.get("bbox"),
            "properties": {"datetime": None, "start_datetime": _iso(step.start), "end_datetime": _iso(step.end),
                           **props},
            "links": [],
            "assets": {"data": {"href": f"./{vrt.name}", "type": VRT_TYPE, "roles": ["data"],
                                "title": f"step {step.label}: its bands over the output's tiles",
                                "raster:bands": raster_bands(tiles.dtype, tiles.nodata, bands, tuple(specs))}}}


__all__ = ["step_vrt", "write_series_catalog"]
