// The preview page: the output's own tiles in its own tile grid (OpenLayers TileGrid), over the
// grid's tile outlines; pixel values under the cursor, a tile's ledger status on click, and the
// progress of a running `ziggurat execute`. Settings can be given in the URL:
// ?colormap=greys&min=0&max=255&band=1&level=10
"use strict";

const params = new URLSearchParams(window.location.search);
window.zigguratLoaded = 0;   // tiles drawn and tiles without data: for tests and the status line
window.zigguratEmpty = 0;

function el(id) { return document.getElementById(id); }

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) { throw new Error(`${url}: HTTP ${response.status}`); }
  return response.json();
}

function projectionOf(info) {
  if (info.proj4) {   // a grid in another CRS: proj4 teaches OpenLayers about it
    proj4.defs(info.crs, info.proj4);
    ol.proj.proj4.register(proj4);
  }
  const projection = ol.proj.get(info.crs);
  if (!projection.getExtent()) { projection.setExtent(info.extent); }
  return projection;
}

function fullGrid(info) {
  return new ol.tilegrid.TileGrid({
    extent: info.extent,
    origins: info.levels.map((l) => l.origin),
    resolutions: info.levels.map((l) => l.resolution),
    tileSizes: info.levels.map((l) => l.tile_size),
  });
}

function levelGrid(info, zoom) {
  const l = info.levels.find((x) => x.zoom === zoom);
  return new ol.tilegrid.TileGrid({ extent: info.extent, origin: l.origin, resolutions: [l.resolution],
                                    tileSize: l.tile_size });
}

function styleQuery() {
  const q = new URLSearchParams();
  q.set("colormap", el("colormap").value);
  if (el("min").value !== "") { q.set("min", el("min").value); }
  if (el("max").value !== "") { q.set("max", el("max").value); }
  q.set("band", el("band").value || "1");
  return q.toString();
}

async function main() {
  const info = await getJSON("api/info");
  el("title").textContent = info.output;
  document.title = `ziggurat: ${info.output}`;
  const projection = projectionOf(info);
  const grid = fullGrid(info);

  for (const z of info.zooms) { el("level").add(new Option(`zoom ${z}`, String(z))); }
  for (let b = 1; b <= info.bands; b++) {
    const name = info.band_names && info.band_names[b - 1];
    el("band").add(new Option(name ? `${b}: ${name}` : String(b), String(b)));
  }
  for (const name of info.colormaps) { el("colormap").add(new Option(name, name)); }
  el("colormap").value = params.get("colormap") || "viridis";
  el("min").value = params.get("min") ?? info.stretch[0];
  el("max").value = params.get("max") ?? info.stretch[1];
  el("band").value = params.get("band") || "1";
  if (params.get("level")) { el("level").value = params.get("level"); }
  if (info.rgb) { el("style-controls").style.display = "none"; }

  function dataSource() {
    const fixed = el("level").value === "auto" ? null : Number(el("level").value);
    const source = new ol.source.TileImage({
      projection,
      tileGrid: fixed === null ? grid : levelGrid(info, fixed),
      interpolate: false,
      transition: 0,
      tileUrlFunction: (c) => `tiles/${fixed === null ? c[0] : fixed}/${c[2]}/${c[1]}.png?${styleQuery()}`,
    });
    source.on("tileloadend", () => { window.zigguratLoaded += 1; });
    source.on("tileloaderror", () => { window.zigguratEmpty += 1; });   // 204: no data there
    return source;
  }

  const data = new ol.layer.Tile({ source: dataSource() });
  const outlines = new ol.layer.Tile({
    source: new ol.source.TileDebug({ projection, tileGrid: grid, template: "z{z} row {y} col {x}" }),
  });
  const map = new ol.Map({
    target: "map",
    layers: [outlines, data],
    view: new ol.View({ projection, extent: info.extent, constrainResolution: false, showFullExtent: true }),
  });
  window.zigguratMap = map;
  window.zigguratInfo = info;
  const view = map.getView();
  const top = info.zooms.length ? info.zooms[info.zooms.length - 1] : 0;
  if (info.data_extent) {
    view.fit(info.data_extent, { size: map.getSize() });
  } else {
    view.fit(info.extent, { size: map.getSize() });
  }
  if (params.get("resolution")) { view.setResolution(Number(params.get("resolution"))); }
  if (params.get("x") && params.get("y")) { view.setCenter([Number(params.get("x")), Number(params.get("y"))]); }

  const restyle = () => { data.setSource(dataSource()); };
  for (const id of ["colormap", "min", "max", "band", "level"]) { el(id).addEventListener("change", restyle); }
  el("outlines").addEventListener("change", () => outlines.setVisible(el("outlines").checked));

  function zoomAt() {
    if (el("level").value !== "auto") { return Number(el("level").value); }
    return Math.min(grid.getZForResolution(view.getResolution()), top);
  }

  let pending = null;
  map.on("pointermove", (event) => {
    if (event.dragging) { return; }
    clearTimeout(pending);
    pending = setTimeout(async () => {
      const [x, y] = event.coordinate;
      const z = zoomAt();
      const v = await getJSON(`api/value?zoom=${z}&x=${x}&y=${y}`);
      el("cursor").textContent = !v.inside ? "outside the grid"
        : `zoom ${z} row ${v.row} col ${v.col}\nx ${x.toFixed(6)} y ${y.toFixed(6)}\n` +
          (v.values === null ? "no tile here" : `value ${v.values.map((a) => (a === null ? "nodata" : a)).join(", ")}`);
    }, 60);
  });

  map.on("singleclick", async (event) => {
    const z = zoomAt();
    const c = grid.getTileCoordForCoordAndZ(event.coordinate, z);
    const t = await getJSON(`api/tile/${c[0]}/${c[2]}/${c[1]}`);
    el("clicked").textContent = `tile zoom ${t.zoom} row ${t.row} col ${t.col}\n${t.path}\n` +
      `ledger: ${t.status}${t.run ? ` (run ${t.run})` : ""}\non disk: ${t.on_disk ? "yes" : "no"}` +
      (t.sha256 ? `\nsha256 ${t.sha256.slice(0, 16)}…` : "");
  });

  let wasRunning = false;
  async function poll() {
    try {
      const p = await getJSON("api/progress");
      const counts = Object.entries(p.counts).map(([k, n]) => `${n} ${k}`).join(", ") || "nothing recorded";
      el("progress").textContent = (p.running ? "a run is writing this output\n" : "") +
        `${p.done}${p.total ? ` / ${p.total}` : ""} process tiles: ${counts}\n` +
        `${window.zigguratLoaded} tiles shown, ${window.zigguratEmpty} without data`;
      if (p.running || wasRunning) { data.getSource().refresh(); }
      wasRunning = p.running;
    } catch (err) {
      el("progress").textContent = String(err);
    }
  }
  poll();
  setInterval(poll, 3000);
}

main().catch((err) => { document.body.insertAdjacentText("afterbegin", `Error: ${err}`); });
