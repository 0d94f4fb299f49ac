"""The structure of ``msa_core``, read from its source (fast: nothing is imported).

No import circle: module A imports B (at module level, or deferred inside a function) and B,
directly or through others, imports A. Importing ``a.b.c`` runs the packages ``a`` and ``a.b`` too,
so those count as imported (except a module's own enclosing packages, which Python has already
started). Imports under ``if TYPE_CHECKING:`` never run and do not count. And one home for the run
store's key layout."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = "msa_core"


def module_names(root: Path) -> dict[str, Path]:
    """``{dotted name: file}`` of every module and package under ``root/msa_core``."""
    names = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith(
        "TYPE_CHECKING"
    )


def _imports(node: ast.AST, deferred: bool, inside: bool = False):
    """``(import node, deferred?)`` below ``node``, skipping ``if TYPE_CHECKING:`` blocks."""
    for child in ast.iter_child_nodes(node):
        if _is_type_checking(child):
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, inside
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            if deferred:
                yield from _imports(child, deferred, True)
        else:
            yield from _imports(child, deferred, inside)


def import_graph(root: Path, deferred: bool) -> dict[str, set[str]]:
    """Which ``msa_core`` modules each imports (``deferred``: function-level imports too)."""
    names = module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node, _ in _imports(ast.parse(path.read_text(encoding="utf-8")), deferred):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets |= {f"{base}.{alias.name}" for alias in node.names} | {base}
        edges = set()
        for target in targets:
            parts = target.split(".")
            for end in range(1, len(parts) + 1):  # the module and every package above it
                prefix = ".".join(parts[:end])
                if prefix in names and prefix != name and not name.startswith(prefix + "."):
                    edges.add(prefix)
        graph[name] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("deferred", [False, True], ids=["module level", "deferred too"])
def test_msa_core_has_no_import_circle(deferred):
    graph = import_graph(ROOT, deferred)
    assert circles(graph) == [], "import circles in msa_core (each group imports itself)"


def test_the_circle_finder_finds_a_deferred_circle(tmp_path):
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from msa_core import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from msa_core import c\n"
        "def late():\n    from .a import x\n"
    )
    (package / "c.py").write_text("import msa_core.a\n")
    assert circles(import_graph(tmp_path, deferred=False)) == []
    assert circles(import_graph(tmp_path, deferred=True)) == [["msa_core.a", "msa_core.b"]]


STORE_PREFIXES = ("base:", "ckpt:", "index:", "ix:", "ixindex:", "lock:", "progress:")


def test_only_the_run_store_spells_its_key_prefixes():
    """Each key namespace has one owner in ``msa_core/runs/store/`` (``namespace.Namespace``); code
    elsewhere (docstrings aside) asks it instead of writing the prefix again."""
    spelled = []
    for name, path in module_names(ROOT).items():
        if name.startswith("msa_core.runs.store"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and ast.get_docstring(node) is not None
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and node.value.startswith(STORE_PREFIXES)
            ):
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value[:20]!r}")
    assert spelled == [], "store key prefixes spelled outside msa_core/runs/store/"
