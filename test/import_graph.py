"""The package's import graph, read from its source with ``ast``.

Every import statement, at module level or inside a function, is resolved to the package modules it runs (a
submodule import runs its parent packages' ``__init__`` too).
"""
from __future__ import annotations

import ast
from pathlib import Path


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under ``root`` (the package folder)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _with_parents(name: str, modules: dict[str, Path]) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules}


def imports_of(name: str, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(package modules that importing ``name``'s statements run, top-level names of outside imports)."""
    tree = ast.parse(modules[name].read_text(), str(modules[name]))
    package = name if _is_package(name, modules) else name.rpartition(".")[0]
    inside: set[str] = set()
    outside: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target]
            targets += [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules]
        else:
            continue
        for target in targets:
            if target in modules:
                inside |= _with_parents(target, modules)
            elif not target.split(".")[0] in {n.split(".")[0] for n in modules}:
                outside.add(target.split(".")[0])
    inside.discard(name)
    return inside, outside


def import_graph(root: Path, package: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Return (module -> package modules it imports, module -> outside top-level packages it imports)."""
    modules = module_names(root, package)
    inside, outside = {}, {}
    for name in modules:
        inside[name], outside[name] = imports_of(name, modules)
    return inside, outside


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that importing ``start`` imports, directly or transitively."""
    seen: set[str] = set()
    stack = list(graph[start])
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(graph[name])
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import path per module that transitively imports itself back: [m, a, ..., m]."""
    found = []
    for start in sorted(graph):
        if start not in reachable(graph, start):
            continue
        parent = {start: None}  # breadth-first, so the path shown is a shortest one
        queue = [start]
        while queue:
            name = queue.pop(0)
            for nxt in sorted(graph[name]):
                if nxt == start:
                    chain = [name]
                    while parent[chain[-1]] is not None:
                        chain.append(parent[chain[-1]])
                    found.append([*reversed(chain), start])
                    queue = []
                    break
                if nxt not in parent:
                    parent[nxt] = name
                    queue.append(nxt)
    return found
