"""The library's modules import each other in layers: no import cycle between them (imports inside
functions count too, since they run as soon as the function does; those under ``if TYPE_CHECKING:`` do
not), and none of them imports Prefect (the flows wrap the library, never the other way round)."""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

import lorasoup_core

PACKAGE = "lorasoup_core"
ROOT = Path(lorasoup_core.__file__).parent


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its __init__.py)."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under `node` (function bodies included), leaving out the bodies of `if TYPE_CHECKING:`
    (their `else:` still runs)."""
    for child in ast.iter_child_nodes(node):
        yield child
        if isinstance(child, ast.If) and _is_type_checking(child):
            for sub in child.orelse:
                yield sub
                yield from _walk(sub)
        else:
            yield from _walk(child)


def imported_names(source: str, module: str, is_package: bool) -> Iterator[tuple[str, str | None]]:
    """(imported module, name) of each import in `source`: `import a.b` -> ("a.b", None), `from a import
    b` -> ("a", "b"); relative imports resolved against `module`."""
    for node in _walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                yield target, alias.name


def _nearest_module(name: str, modules: set[str]) -> str | None:
    """`name` or the closest enclosing module of the package (None outside it)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports, from {module: (source, is_package)}: `from pkg
    import name` is an edge to `pkg.name` when that is a module, else to `pkg`."""
    modules = set(sources)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, (source, is_package) in sources.items():
        for target, name in imported_names(source, module, is_package):
            if name is not None and f"{target}.{name}" in modules:
                found = f"{target}.{name}"
            else:
                found = _nearest_module(target, modules)
            if found is not None and found != module:
                graph[module].add(found)
    return graph


def _package_sources() -> dict[str, tuple[str, bool]]:
    return {m: (p.read_text(encoding="utf-8"), p.name == "__init__.py") for m, p in _module_files().items()}


def test_the_graph_reader_counts_function_imports_and_skips_type_checking():
    sources = {
        "pkg": ("from pkg import a\n", True),
        "pkg.a": ("from typing import TYPE_CHECKING\n"
                  "if TYPE_CHECKING:\n    from pkg import b\nelse:\n    from . import c\n", False),
        "pkg.b": ("def f():\n    from .sub import d\n    import pkg.c\n", False),
        "pkg.c": ("from pkg.sub import x\n", False),
        "pkg.sub": ("from .. import c\nfrom .d import y\n", True),
        "pkg.sub.d": ("from ..a import *\n", False),
    }
    assert import_graph(sources) == {
        "pkg": {"pkg.a"}, "pkg.a": {"pkg.c"}, "pkg.b": {"pkg.sub.d", "pkg.c"}, "pkg.c": {"pkg.sub"},
        "pkg.sub": {"pkg.c", "pkg.sub.d"}, "pkg.sub.d": {"pkg.a"},
    }


def test_the_library_has_no_import_cycle():
    graph = import_graph(_package_sources())
    assert len(graph) > 50  # the whole package was read
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        raise AssertionError("import cycle: " + " -> ".join(err.args[1])) from None


def test_the_library_imports_no_prefect():
    offenders = sorted(
        module for module, (source, is_package) in _package_sources().items()
        if any(target.split(".")[0] == "prefect" for target, _ in imported_names(source, module, is_package)))
    assert not offenders, f"lorasoup_core modules importing prefect: {offenders}"
