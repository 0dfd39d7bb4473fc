"""Fuzzed recipes: every `plan` and `execute` ends in a result or a clean error, never a
traceback, a hang or a signal death.

Mutates the repository's example recipes (deterministic seed): keys dropped, renamed with
typos, duplicated; values replaced by other types, huge, negative, NaN, `!!float abc`, deep
nesting, 5,000-character strings, `${` junk; paths replaced by /dev/zero, a FIFO, a folder, a
binary file, a missing file; YAML alias bombs; truncated or byte-flipped files. Each mutated
recipe runs `ziggurat plan` and `ziggurat execute -e sequential` (output in a temporary folder)
with a 60 s bound, and the outcome is counted:

  ok | clean error (exit 1, "Error: ...", no traceback) | traceback | hang | signal death

plus how many clean errors name the recipe file (and a line). Cases that are not clean are
written to `fuzz-report.json` with their recipe text.

Usage: python bench/fuzz.py [--count 1000] [--seed 7] [--jobs 2] [--timeout 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BASES = ["hillshade.yaml", "clip.yaml", "contours.yaml", "convert_mercator.yaml"]
TYPOS = "abcdefghijklmnopqrstuvwxyz_"


def _typo(rng: random.Random, key: str) -> str:
    if len(key) < 2:
        return key + "x"
    i = rng.randrange(len(key))
    kind = rng.choice(["drop", "double", "swap", "case", "add"])
    if kind == "drop":
        return key[:i] + key[i + 1:]
    if kind == "double":
        return key[:i] + key[i] + key[i:]
    if kind == "swap" and i < len(key) - 1:
        return key[:i] + key[i + 1] + key[i] + key[i + 2:]
    if kind == "case":
        return key.upper()
    return key + rng.choice(TYPOS)


def _values(rng: random.Random, special: dict[str, str]) -> Any:
    return rng.choice([
        None, True, False, 0, -1, 2**63, -(2**31), 1e308, float("nan"), float("inf"), "", "x" * 5000,
        [], {}, [1, 2, 3], {"a": {"b": {"c": 1}}}, "zoom<=3", "${NOT_SET", "${}", "ü∂ƒ©",
        special["zero"], special["fifo"], special["dir"], special["binary"], special["missing"],
        [[[[[[[[[[1]]]]]]]]]], "1,2,3,4", "EPSG:99999", "geodetic", "mercator", "deflate", "uint8", 30, [0, 30],
    ])


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _get_parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def mutate_tree(rng: random.Random, data: dict[str, Any], special: dict[str, str]) -> dict[str, Any]:
    for _ in range(rng.randint(1, 3)):
        paths = _paths(data)
        if not paths:
            break
        path = rng.choice(paths)
        parent = _get_parent(data, path)
        key = path[-1]
        op = rng.choice(["drop", "typo", "value", "value", "nest", "zoom"])
        try:
            if op == "drop":
                del parent[key]
            elif op == "typo" and isinstance(parent, dict) and isinstance(key, str):
                parent[_typo(rng, key)] = parent.pop(key)
            elif op == "nest":
                parent[key] = {"zoom<=3": parent[key], "zoom>3": [parent[key]]}
            elif op == "zoom":
                data["zoom_levels"] = rng.choice([[0, 30], 31, -1, "5,3", [5], {"min": 9}, "a,b"])
            else:
                parent[key] = _values(rng, special)
        except (KeyError, IndexError, TypeError):
            continue
    return data


def mutate_text(rng: random.Random, text: str) -> str:
    kind = rng.choice(["truncate", "flip", "tab", "bracket", "alias", "duplicate", "tag"])
    if kind == "truncate":
        return text[: rng.randrange(max(len(text), 1))]
    if kind == "flip":
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return data.decode("utf-8", errors="replace")
    if kind == "tab":
        return text.replace("  ", "\t", 1)
    if kind == "bracket":
        return text.replace(":", ": [", 1)
    if kind == "alias":
        lines = ["b0: &b0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]" for i in range(1, 8)]
        return text + "process_parameters:\n" + "".join(f"  {line}\n" for line in lines)
    if kind == "duplicate":
        first = text.splitlines()[0] if text.strip() else "process: x"
        return text + first + "\n"
    return text.replace("zoom_levels:", "zoom_levels: !!float abc\nx_zoom_levels:", 1)


def classify(proc: subprocess.CompletedProcess[str] | None, recipe: Path) -> str:
    if proc is None:
        return "hang"
    if proc.returncode < 0:
        return "signal death"
    err = proc.stderr
    if "Traceback (most recent call last)" in err:
        return "traceback"
    if proc.returncode == 0:
        return "ok"
    return "clean error"


def run_one(args: tuple[int, str, Path, float]) -> dict[str, Any]:
    index, text, work, timeout = args
    folder = work / f"r{index:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "recipe.yaml"
    recipe.write_text(text, errors="replace")
    env = {**os.environ, "ZIGGURAT_OUTPUT": str(folder / "out"), "ZIGGURAT_STATE_DIR": str(folder / "state")}
    exe = str(Path(sys.executable).parent / "ziggurat")
    result: dict[str, Any] = {"index": index}
    for command in (["plan", str(recipe)], ["execute", str(recipe), "-e", "sequential", "--no-progress"]):
        try:
            proc: subprocess.CompletedProcess[str] | None = subprocess.run(
                [exe, *command], capture_output=True, text=True, timeout=timeout, env=env, cwd=folder)
        except subprocess.TimeoutExpired:
            proc = None
        outcome = classify(proc, recipe)
        names_file = bool(proc) and recipe.name in (proc.stderr if proc else "")
        with_line = bool(proc) and re.search(re.escape(recipe.name) + r":\d+", proc.stderr if proc else "") is not None
        result[command[0]] = {"outcome": outcome, "names_file": names_file, "with_line": with_line,
                              "stderr": (proc.stderr[-1500:] if proc else "")}
    shutil.rmtree(folder / "out", ignore_errors=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="ziggurat-fuzz-"))
    shutil.copytree(REPO / "recipes" / "data", work / "data")
    special = {"zero": "/dev/zero", "fifo": str(work / "fifo"), "dir": str(work / "data"),
               "binary": str(work / "binary.bin"), "missing": str(work / "nowhere.tif")}
    os.mkfifo(special["fifo"])
    (work / "binary.bin").write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
    bases = {}
    for name in BASES:
        text = (REPO / "recipes" / name).read_text().replace("data/", f"{work}/data/")
        bases[name] = text
    cases = []
    for index in range(args.count):
        name = rng.choice(BASES)
        if rng.random() < 0.6:
            tree = yaml.safe_load(bases[name])
            text = yaml.safe_dump(mutate_tree(rng, tree, special), sort_keys=False, allow_unicode=True)
        else:
            text = mutate_text(rng, bases[name])
        cases.append((index, text, work, args.timeout))
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_one, cases))
    counts: dict[str, dict[str, int]] = {"plan": {}, "execute": {}}
    named = {"plan": [0, 0, 0], "execute": [0, 0, 0]}   # clean errors, naming the file, with a line
    bad = []
    for case, result in zip(cases, results):
        for command in ("plan", "execute"):
            r = result[command]
            counts[command][r["outcome"]] = counts[command].get(r["outcome"], 0) + 1
            if r["outcome"] == "clean error":
                named[command][0] += 1
                named[command][1] += r["names_file"]
                named[command][2] += r["with_line"]
            elif r["outcome"] != "ok":
                bad.append({"index": case[0], "command": command, **r, "recipe": case[1][:3000]})
    print(f"{args.count} mutated recipes (seed {args.seed}), {2 * args.count} runs in "
          f"{time.perf_counter() - start:.0f} s")
    for command in ("plan", "execute"):
        line = ", ".join(f"{k} {v}" for k, v in sorted(counts[command].items()))
        errors, with_file, with_line = named[command]
        print(f"  {command:8s} {line}; clean errors naming the recipe file {with_file}/{errors}, "
              f"with a line {with_line}/{errors}")
    report = work / "fuzz-report.json"
    report.write_text(json.dumps(bad, indent=1))
    print(f"not clean: {len(bad)} (details: {report})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
