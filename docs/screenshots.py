"""Screenshots of the preview page (`ziggurat serve`) for the docs: the demo's hillshade on the
geodetic grid and the DEM on the mercator grid, in headless chromium. Run with `make screenshots`.

Outputs are written to a temporary folder; only the PNGs land in docs/.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from ziggurat.engine.run import execute
from ziggurat.serve import create

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent


def shoot(output: Path, query: str, dest: Path, chromium: str) -> None:
    server = uvicorn.Server(uvicorn.Config(create(output), host="127.0.0.1", port=8766, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 760}, device_scale_factor=1)
            page.goto(f"http://127.0.0.1:8766/?{query}")
            page.wait_for_function("window.zigguratLoaded >= 1", timeout=60000)
            page.wait_for_timeout(1500)
            box = page.evaluate("(() => { const r = document.getElementById('map').getBoundingClientRect();"
                                " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
            page.mouse.move(*box)
            page.mouse.click(*box)
            page.wait_for_timeout(800)
            page.screenshot(path=str(dest))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    print(dest)


def main() -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ZIGGURAT_OUTPUT"] = tmp
        for name in ("hillshade", "convert_mercator"):
            execute(REPO / "recipes" / f"{name}.yaml", executor="sequential")
        shoot(Path(tmp) / "hillshade", "colormap=greys_r&min=0&max=255", DOCS / "preview-geodetic.png", chromium)
        shoot(Path(tmp) / "convert_mercator", "colormap=terrain", DOCS / "preview-mercator.png", chromium)
    return 0


if __name__ == "__main__":
    sys.exit(main())
