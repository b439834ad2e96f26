"""The import graph of the package and the benchmarks, from the source alone (ast): modules, arrows, circles,
floors and private names crossing a module line. Shared by tests/test_architecture.py and benchmarks/architecture.py.
"""

from __future__ import annotations

import ast
import os

TOPS = ("hf_lelp", "benchmarks")


def find_modules(root: str, tops: tuple[str, ...] = TOPS) -> dict[str, str]:
    """Dotted module name -> path, for every .py file under root/top."""
    found = {}
    for top in tops:
        for folder, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                    found[dotted.removesuffix(".__init__")] = path
    return found


def module_imports(module: str, path: str, known: dict[str, str]) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement of `module` that reaches a module of
    `known`, at any depth (lazy ones too)."""
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
            found += [(f"{target}.{name}", []) for name in names if f"{target}.{name}" in known]
            found.append((target, [name for name in names if f"{target}.{name}" not in known]))
    return [(target, names) for target, names in found if target in known and target != module]


def import_graph(modules: dict[str, str]) -> dict[str, list[tuple[str, list[str]]]]:
    return {module: module_imports(module, path, modules) for module, path in modules.items()}


def components(graph: dict[str, list]) -> list[list[str]]:
    """Strongly connected components (Tarjan), each sorted, in reverse topological order (imported ones first)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, _ in graph[node]:
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
            found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def circles(graph: dict[str, list]) -> list[list[str]]:
    """Import circles: strongly connected components of more than one module."""
    return [component for component in components(graph) if len(component) > 1]


def arrows(graph: dict[str, list]) -> set[tuple[str, str]]:
    """Distinct (importer, imported) pairs."""
    return {(module, target) for module, imports in graph.items() for target, _ in imports}


def floors(graph: dict[str, list]) -> dict[str, int]:
    """Longest-path layering: a module importing nothing of the graph is on floor 0, any other one floor above the
    highest module it imports (a circle's modules share one floor)."""
    floor = {}
    for component in components(graph):  # imported components come first
        members = set(component)
        below = [floor[t] for m in component for t, _ in graph[m] if t not in members]
        for member in component:
            floor[member] = 1 + max(below) if below else 0
    return floor


def private_imports(graph: dict[str, list]) -> list[str]:
    """Private names (one leading underscore) that a module takes from another."""
    return [
        f"{module} takes {name} from {target}"
        for module, imports in sorted(graph.items())
        for target, names in imports
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
