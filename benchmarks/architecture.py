"""The package's architecture in numbers (issue #21): modules per folder, import floors, arrows, import circles,
private names imported across module lines, modules over 400 lines and near-duplicate blocks. No third-party tools.

    .venv/bin/python benchmarks/architecture.py                              # the working tree, key "after"
    .venv/bin/python benchmarks/architecture.py --rev 9251937 --key before   # a git revision (git archive)
    make architecture                                                        # both, before and after the layers

Each run prints its figures and stores them under --key in benchmarks/results/architecture.json (other keys kept).
Floors: longest-path layering of the folder's module graph (a module importing nothing of it is on floor 0).
Circles: strongly connected components of more than one module, in the folder and in benchmarks/. Near-duplicate
blocks: benchmarks/harness/near_duplicates.py, within the folder and across hf_lelp, benchmarks, recipes and tests.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.harness.import_graph import (  # noqa: E402
    arrows,
    circles,
    find_modules,
    floors,
    import_graph,
    private_imports,
)
from benchmarks.harness.near_duplicates import WINDOW, near_duplicate_blocks  # noqa: E402

MAX_LINES = 400
CODE_FOLDERS = ("hf_lelp", "benchmarks", "recipes", "tests")
OUTPUT = os.path.join(ROOT, "benchmarks", "results", "architecture.json")


def python_files(root: str, folders: tuple[str, ...]) -> dict[str, str]:
    """Relative path -> source of every .py file under root/folder."""
    found = {}
    for top in folders:
        for folder, _, files in os.walk(os.path.join(root, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8") as handle:
                        found[os.path.relpath(path, root).replace(os.sep, "/")] = handle.read()
    return found


def measure(root: str, folder: str) -> dict:
    """Every figure of the tree at `root`, for the package folder `folder`."""
    package = find_modules(root, (folder,))
    graph = import_graph({**package, **find_modules(root, ("benchmarks",))})
    inside = {m: [(t, n) for t, n in graph[m] if t in package] for m in package}
    per_folder = Counter(os.path.dirname(os.path.relpath(p, root)).replace(os.sep, "/") for p in package.values())
    sources = python_files(root, (folder,))
    long = {path: source.count("\n") for path, source in sources.items() if source.count("\n") > MAX_LINES}
    floor = floors(inside)
    duplicates = near_duplicate_blocks(sources)
    everywhere = near_duplicate_blocks(python_files(root, tuple(f for f in CODE_FOLDERS if f != folder) + (folder,)))
    return {
        "modules": len(package),
        "modules_per_folder": dict(sorted(per_folder.items())),
        "floors": 1 + max(floor.values(), default=-1),
        "arrows": len(arrows(inside)),
        "circles": circles(graph),
        "private_cross_imports": private_imports(graph),
        "modules_over_400_lines": dict(sorted(long.items())),
        "near_duplicate_blocks": len(duplicates),
        "near_duplicate_blocks_all_code": len(everywhere),
        "near_duplicates": [f"{b['a']} ~ {b['b']} ({b['lines']} lines)" for b in duplicates],
        "window_lines": WINDOW,
    }


def checkout(rev: str, into: str) -> str:
    """The code folders of git revision `rev` under `into`; returns the full commit hash."""
    commit = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, check=True, capture_output=True, text=True)
    commit = commit.stdout.strip()
    listed = subprocess.run(["git", "ls-tree", "--name-only", commit], cwd=ROOT, check=True, capture_output=True)
    present = [f for f in CODE_FOLDERS if f in listed.stdout.decode().split()]
    archive = subprocess.run(["git", "archive", commit, *present], cwd=ROOT, check=True, capture_output=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return commit


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="hf_lelp", help="The package folder (default: hf_lelp).")
    parser.add_argument("--rev", help="Measure this git revision (read with git archive) instead of the tree.")
    parser.add_argument("--key", default="after", help="Where the figures go in the JSON (default: after).")
    parser.add_argument("--output", default=OUTPUT, help="The JSON file ('-': print only).")
    options = parser.parse_args(argv)
    if options.rev:
        with tempfile.TemporaryDirectory() as tree:
            result = {"rev": checkout(options.rev, tree)[:7], **measure(tree, options.folder)}
    else:
        result = {"rev": "working tree", **measure(ROOT, options.folder)}
    summary = {k: v for k, v in result.items() if k != "near_duplicates"}
    print(json.dumps({options.key: summary}, indent=2))
    if options.output != "-":
        stored = {}
        if os.path.isfile(options.output):
            with open(options.output, encoding="utf-8") as handle:
                stored = json.load(handle)
        stored[options.key] = result
        with open(options.output, "w", encoding="utf-8") as handle:
            json.dump(stored, handle, indent=2)
            handle.write("\n")
    return result


if __name__ == "__main__":
    main()
