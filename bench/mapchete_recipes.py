"""mapchete's own test recipes, run unchanged by mapchete and by ziggurat, tiles compared.

Takes mapchete's `test/` folder (its recipes, process files and data; default: the snapshot
of the installed mapchete version from GitHub, `--tests DIR` to give one), copies it once
per recipe and tool (so that recipes writing to the same `tmp/...` path do not meet), runs
`mapchete execute --concurrency none` and `ziggurat execute -e sequential`, and compares every
raster tile mapchete wrote with ziggurat's tile of the same zoom/row/col (mapchete's
`output.pixelbuffer` rim is left out: ziggurat does not store it). Prints one line per
recipe and the counts the issue asks for:

  ran offline under mapchete / of those, ran under ziggurat / of those, identical pixels

Usage: python bench/mapchete_recipes.py [--tests DIR] [--only NAME ...] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio

#: environment the recipes read (${FILE1}, ${AK1}, ...), as mapchete's tests set it
RECIPE_ENV = {"FILE1": "dummy1.tif", "AK1": "test-key", "SAK1": "test-secret", "AK2": "test-key-2",
              "SAK2": "test-secret-2", "AWS_EC2_METADATA_DISABLED": "true"}


#: recipes that need the network or credentials for a real bucket: not "offline"
NETWORK = {"cleantopo_remote", "gtiff_s3", "output_s3_single_gtiff_error"}
#: recipes that read another one's output (mapchete's tests run that one first, so do we)
PREREQUISITES = {"cleantopo_br_tiledir": ["cleantopo_br"], "cleantopo_br_tiledir_mercator": ["cleantopo_br"],
                 "geojson_tiledir": ["geojson"], "mapchete_input": ["zoom"]}


def fetch_tests(dest: Path) -> Path:
    """mapchete's test folder of the installed version (git archive of its tag from the mirror
    or a shallow clone); --tests gives one explicitly."""
    import mapchete

    version = mapchete.__version__
    target = dest / f"mapchete-{version}-test"
    if target.exists():
        return target
    mirror = os.environ.get("MAPCHETE_REPO")
    repo = Path(mirror) if mirror else None
    if repo is None:
        repo = dest / "mapchete.git"
        subprocess.run(["git", "clone", "-q", "--bare", "--depth", "1", "--branch", version,
                        "https://github.com/mapchete/mapchete", str(repo)], check=True)
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "--git-dir", str(repo), "archive", "HEAD", "test"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "test"


def run(cmd: list[str], cwd: Path, timeout: float) -> tuple[bool, str, float]:
    start = time.perf_counter()
    env = {**os.environ, **RECIPE_ENV, "ZIGGURAT_STATE_DIR": str(cwd / ".state")}
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s", time.perf_counter() - start
    text = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
    errors = [line for line in text if line.startswith(("Error", "mapchete.errors", "ValueError"))]
    return proc.returncode == 0, (errors or text or [""])[-1], time.perf_counter() - start


def output_of(recipe: Path) -> str:
    """The recipe's output path."""
    import yaml

    data = yaml.safe_load(recipe.read_text())
    return str((data.get("output") or {}).get("path", ""))


def tiles(folder: Path) -> dict[tuple[int, int, int], Path]:
    found = {}
    for path in folder.glob("*/*/*.*"):
        parts = path.relative_to(folder).parts
        if parts[0].isdigit() and parts[1].isdigit() and path.stem.isdigit() and path.suffix in (".tif", ".png"):
            found[(int(parts[0]), int(parts[1]), int(path.stem))] = path
    return found


def read(path: Path) -> tuple[np.ma.MaskedArray, object]:
    """A tile's bands (masked by nodata; PNG: the raw bands, alpha included, unmasked)."""
    with warnings.catch_warnings(), rasterio.open(path) as src:
        warnings.simplefilter("ignore")   # PNG tiles carry no georeferencing
        if path.suffix == ".png":
            return np.ma.masked_array(src.read()), src.transform
        return src.read(masked=True), src.transform


def _window(m_path: Path, z_path: Path) -> tuple[np.ma.MaskedArray, np.ma.MaskedArray] | None:
    """mapchete's tile cut to ziggurat's (mapchete's may have a pixel-buffer rim, cut at the
    grid edge), and ziggurat's; None when they do not line up."""
    (a, ta), (b, tb) = read(m_path), read(z_path)
    if m_path.suffix == ".png":   # PNG tiles carry no georeferencing: both are the tile itself
        ta = tb
    col, row = ~ta * (tb.c, tb.f)
    r, c = round(row), round(col)
    h, w = b.shape[1:]
    if a.shape[0] != b.shape[0] or r < 0 or c < 0 or r + h > a.shape[1] or c + w > a.shape[2]:
        return None
    return a[:, r:r + h, c:c + w], b


def same_tile(m_path: Path, z_path: Path) -> str:
    """'' when the pixels are identical, else how they differ."""
    pair = _window(m_path, z_path)
    if pair is None:
        return "shapes differ"
    a, b = pair
    ma, mb = np.ma.getmaskarray(a), np.ma.getmaskarray(b)
    if not np.array_equal(ma, mb):
        return f"{int((ma != mb).sum())} px masked differently"
    diff = np.abs(a.filled(0).astype(np.float64) - b.filled(0).astype(np.float64))
    return "" if not diff.any() else f"{int((diff > 0).sum())} px differ by up to {diff.max():g}"


def rim_only(m_path: Path, z_out: Path, index: tuple[int, int, int]) -> bool:
    """A mapchete tile with data only in its pixel-buffer rim: ziggurat, which stores no rim,
    rightly has no tile there. Its inner part is found from ziggurat's grid in metadata.json."""
    from ziggurat.io.outputs.folder import describe_folder

    try:
        grid, _ = describe_folder(json.loads((z_out / "metadata.json").read_text()))
    except (OSError, ValueError):
        return False
    tile = grid.tile(*index)
    with rasterio.open(m_path) as src:
        if m_path.suffix == ".png":
            data = src.read(masked=True)
        else:
            window = rasterio.windows.from_bounds(*tile.bounds, transform=src.transform)
            data = src.read(window=window.round_offsets().round_lengths(), masked=True)
    return bool(np.ma.getmaskarray(data).all())


def has_data(out: Path) -> bool:
    """mapchete wrote at least one valid pixel (some recipes 'succeed' with empty tiles only)."""
    files = [out] if out.is_file() else [p for p in out.glob("*/*/*.*") if p.suffix in (".tif", ".png")]
    for path in files:
        with rasterio.open(path) as src:
            if not np.ma.getmaskarray(src.read(masked=True)).all():
                return True
    return not files and any(out.glob("*/*/*.*"))   # vector tiles: present is enough


def features(path: Path) -> list[tuple[str, str]]:
    """A vector tile's features as sorted (properties, normalised geometry) pairs; coordinates
    and float properties to 1e-9 (a process computing an area from a clipped input geometry
    differs in the last bits when the clipping does)."""
    import fiona
    import shapely

    def rounded(props: dict) -> dict:
        return {k: float(f"{v:.9g}") if isinstance(v, float) else v for k, v in props.items()}

    with fiona.open(path) as src:
        return sorted((json.dumps(rounded(dict(f["properties"])), sort_keys=True, default=str),
                       shapely.normalize(shapely.set_precision(shapely.geometry.shape(f["geometry"]), 1e-9)).wkt)
                      for f in src)


def compare_vectors(m_out: Path, z_out: Path) -> str:
    m_tiles = {p.relative_to(m_out): p for p in m_out.glob("*/*/*.*") if p.suffix in (".geojson", ".fgb")}
    z_tiles = {p.relative_to(z_out): p for p in z_out.glob("*/*/*.*") if p.suffix in (".geojson", ".fgb")}
    if not m_tiles:
        return "no tiles to compare"
    m_nonempty = {k for k, p in m_tiles.items() if features(p)}
    missing = sorted(m_nonempty - set(z_tiles))
    differ = [k for k in sorted(m_nonempty & set(z_tiles)) if features(m_tiles[k]) != features(z_tiles[k])]
    if not missing and not differ:
        return "identical"
    return f"{len(missing)} vector tiles missing, {len(differ)} differ (e.g. {(missing + differ)[0]})"


def compare(m_out: Path, z_out: Path) -> str:
    """'identical', or what differs."""
    if any(p.suffix in (".geojson", ".fgb") for p in m_out.glob("*/*/*.*")):
        return compare_vectors(m_out, z_out)
    if m_out.is_file() and z_out.is_file():
        why = same_tile(m_out, z_out)
        return "identical" if not why else why
    m_tiles, z_tiles = tiles(m_out), tiles(z_out)
    if not m_tiles:
        return "no raster tiles to compare"
    missing = sorted(i for i in set(m_tiles) - set(z_tiles) if not rim_only(m_tiles[i], z_out, i))
    extra = sorted(set(z_tiles) - set(m_tiles))
    differ = []
    for index in sorted(set(m_tiles) & set(z_tiles)):
        why = same_tile(m_tiles[index], z_tiles[index])
        if why:
            differ.append((index, why))
    if not missing and not differ and not extra:
        return "identical"
    notes = []
    if missing:
        notes.append(f"{len(missing)} of mapchete's {len(m_tiles)} tiles missing, e.g. {missing[0]}")
    if extra:
        notes.append(f"{len(extra)} more tiles (e.g. {extra[0]})")
    if differ:
        notes.append(f"{len(differ)} tiles differ, e.g. {differ[0][0]}: {differ[0][1]}")
    return "; ".join(notes)


def main() -> int:
    warnings.simplefilter("ignore")   # PNG tiles carry no georeferencing; rasterio says so per file
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tests", type=Path, help="mapchete's test/ folder (default: fetched for the installed version)")
    ap.add_argument("--only", nargs="*", help="recipe names (without .mapchete)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--work", type=Path, help="where the copies go (default: a temporary folder)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mapchete-recipes-"))
    tests = args.tests or fetch_tests(work)
    bin_dir = Path(sys.executable).parent
    recipes = sorted((tests / "testdata").glob("*.mapchete"))
    if args.only:
        recipes = [r for r in recipes if r.stem in args.only]
    ran_m = ran_both = identical = 0
    no_data: list[str] = []
    rows = []
    for recipe in recipes:
        copies = {}
        for tool in ("mapchete", "ziggurat"):
            copy = work / tool / recipe.stem
            if copy.exists():
                shutil.rmtree(copy)
            # without outputs of earlier runs (recipes write below testdata/tmp)
            shutil.copytree(tests, copy / "test", symlinks=True, ignore=shutil.ignore_patterns("tmp"))
            copies[tool] = copy / "test" / "testdata"
        mapchete_cmd = [str(bin_dir / "mapchete"), "execute", "--concurrency", "none", "--no-pbar"]
        ziggurat_cmd = [str(bin_dir / "ziggurat"), "execute", "-e", "sequential"]
        for before in PREREQUISITES.get(recipe.stem, []):
            run([*mapchete_cmd, f"{before}.mapchete"], copies["mapchete"], args.timeout)
            run([*ziggurat_cmd, f"{before}.mapchete"], copies["ziggurat"], args.timeout)
        ok_m, msg_m, t_m = run([*mapchete_cmd, recipe.name], copies["mapchete"], args.timeout)
        ok_z, msg_z, t_z = run([*ziggurat_cmd, recipe.name], copies["ziggurat"], args.timeout)
        path = output_of(recipe)
        verdict = ""
        if ok_m and not has_data(copies["mapchete"] / path):
            no_data.append(recipe.stem)
            verdict = "mapchete wrote no data (empty tiles only): not counted"
        elif ok_m and recipe.stem in NETWORK:
            verdict = "needs the network: not counted"
        elif ok_m:
            ran_m += 1
            if ok_z:
                ran_both += 1
                verdict = compare(copies["mapchete"] / path, copies["ziggurat"] / path)
                identical += verdict == "identical"
        rows.append({"recipe": recipe.stem, "mapchete": "ok" if ok_m else msg_m[:150],
                     "ziggurat": "ok" if ok_z else msg_z[:150], "tiles": verdict,
                     "seconds": [round(t_m, 2), round(t_z, 2)]})
        print(f"{recipe.stem:40s} mapchete {'ok' if ok_m else 'FAIL'} ({t_m:5.1f} s)  ziggurat "
              f"{'ok' if ok_z else 'FAIL'} ({t_z:5.1f} s)  {verdict}", flush=True)
        if not ok_m:
            print(f"    mapchete: {msg_m[:200]}")
        if not ok_z:
            print(f"    ziggurat: {msg_z[:200]}")
    if no_data:
        print(f"\nmapchete 'succeeded' without writing a valid pixel: {', '.join(no_data)}")
    print(f"\n{len(recipes)} recipes; mapchete ran {ran_m} offline (with data); ziggurat ran {ran_both} of those "
          f"({100 * ran_both / max(ran_m, 1):.0f} %); identical pixels in {identical} "
          f"({100 * identical / max(ran_m, 1):.0f} %)")
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"details: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
