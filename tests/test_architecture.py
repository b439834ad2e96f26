"""The package's layers (docs/architecture.md) as the tests see them: imports point one way, down; no import circle
in hf_lelp/ or benchmarks/; no private name imported across a module line; no module over 400 lines; every module
that the architecture page names exists."""

from __future__ import annotations

import ast
import os
import re

import pytest

from conftest import ROOT

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


def _modules(top: str) -> dict[str, str]:
    """Dotted module name -> path, for every .py file under ROOT/top."""
    found = {}
    for folder, _, files in os.walk(os.path.join(ROOT, top)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


MODULES = {**_modules("hf_lelp"), **_modules("benchmarks")}


def _imports(module: str, path: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement, at any depth (lazy ones too)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            # `from package import module` imports that module
            submodules = [f"{target}.{name}" for name in names if f"{target}.{name}" in MODULES]
            found += [(sub, []) for sub in submodules]
            found.append((target, [name for name in names if f"{target}.{name}" not in MODULES]))
    return [(target, names) for target, names in found if target in MODULES and target != module]


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _circles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, _ in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return circles


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def test_no_import_circles_in_the_package_or_the_benchmarks():
    assert _circles() == []


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
    crossing = [
        f"{module} takes {name} from {target}"
        for module, imports in GRAPH.items()
        for target, names in imports
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert crossing == []


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
