"""The package's layers (docs/architecture.md) as the tests see them: imports point one way, down; no import circle
in hf_lelp/ or benchmarks/; no private name imported across a module line; no module over 400 lines; every module
that the architecture page names exists."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys

import pytest
from transformers import Trainer

from benchmarks.harness.import_graph import circles, find_modules, import_graph, private_imports
from conftest import ROOT
from hf_lelp.training.trainer import LELPTrainer

# Bottom to top. A module may import its own sub-package and the layers below it, never one above.
# evaluate_metrics/ holds the metric scripts that `evaluate` loads by path: they import nothing of hf_lelp.
LAYERS = {
    "base": 0,
    "evaluate_metrics": 0,
    "data": 1,
    "cache": 2,
    "methods": 3,
    "hub": 4,
    "training": 5,
    "explore": 5,
    "": 6,  # the application: workflow, commands, cli, teacher, launch, example_configs, __init__, __main__
}
MAX_LINES = 400


MODULES = find_modules(ROOT)
GRAPH = import_graph(MODULES)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def test_no_import_circles_in_the_package_or_the_benchmarks():
    assert circles(GRAPH) == []


def test_the_package_imports_point_down_its_layers():
    upward = []
    for module, imports in GRAPH.items():
        if not module.startswith("hf_lelp"):
            continue
        for target, _ in imports:
            if target.startswith("hf_lelp") and LAYERS[_layer(target)] > LAYERS[_layer(module)]:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_every_subpackage_is_a_known_layer():
    subpackages = {
        module.split(".")[1] for module in MODULES if module.count(".") >= 1 and module.startswith("hf_lelp")
    }
    folders = {name for name in subpackages if os.path.isdir(os.path.join(ROOT, "hf_lelp", name))}
    assert folders <= set(LAYERS)


def test_no_private_name_crosses_a_module_line():
    assert private_imports(GRAPH) == []


def test_no_module_of_the_package_is_over_400_lines():
    long = {}
    for module, path in MODULES.items():
        if module.startswith("hf_lelp"):
            with open(path, encoding="utf-8") as handle:
                lines = sum(1 for _ in handle)
            if lines > MAX_LINES:
                long[module] = lines
    assert long == {}


def _named_in_architecture() -> set[str]:
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as handle:
        text = handle.read()
    return set(re.findall(r"\bhf_lelp/[\w/.]*\w", text))


def test_the_architecture_page_names_only_paths_that_exist():
    named = _named_in_architecture()
    assert len(named) > 20  # the picture names every module
    missing = sorted(path for path in named if not os.path.exists(os.path.join(ROOT, path)))
    assert missing == []


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if m.startswith("hf_lelp") and "evaluate_metrics" not in m)
)
def test_the_architecture_page_names_every_module(module):
    path = os.path.relpath(MODULES[module], ROOT).replace(os.sep, "/")
    if path.endswith("__init__.py") and module != "hf_lelp":
        return  # a sub-package's docstring, named by its folder
    named = _named_in_architecture()
    assert path in named or path.removesuffix("/__init__.py") + "/" in named


def test_the_trainer_overrides_at_most_two_private_trainer_methods_each_with_the_versions_checked():
    private = sorted(
        name
        for name in vars(LELPTrainer)
        if name.startswith("_") and not name.startswith("__") and hasattr(Trainer, name)
    )
    assert len(private) <= 2, private
    source = inspect.getsource(LELPTrainer)
    for name in private:
        lines = source[: source.index(f"def {name}(")].splitlines()[-3:]  # the comment right above the def
        assert any(re.search(r"checked against transformers \d+\.\d+", line) for line in lines), name


def test_the_architecture_command_finds_no_circle_and_no_private_cross_import(tmp_path):
    output = tmp_path / "architecture.json"
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "architecture.py"), "--output", str(output)],
        check=True,
        capture_output=True,
    )
    after = json.loads(output.read_text())["after"]
    assert after["rev"] == "working tree" and after["modules"] == len([m for m in MODULES if m.startswith("hf_lelp")])
    assert after["circles"] == [] and after["private_cross_imports"] == []
    assert after["modules_over_400_lines"] == {} and after["floors"] >= len(set(LAYERS.values()))
