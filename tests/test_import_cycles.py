"""No import cycles between the modules of ``waveflow``, read statically from every module's source.

The graph: one node per module (a package is its ``__init__``); an edge ``a -> b`` for every
``import waveflow.b``, ``from waveflow.b import x`` or relative ``from .b import x`` in ``a``, where
``from p import x`` names the submodule ``p.x`` when there is one and the module ``p`` otherwise.
Imports under ``if TYPE_CHECKING:`` never run and are left out; ``importlib.import_module`` with a
computed name is not seen.

Two graphs are checked, because a cycle is a problem at two levels:

* **at import time** (module-level imports only, including those under ``try``/``if``): a cycle
  here breaks as soon as the modules are imported in the wrong order. There must be none.
* **with the deferred imports** (those inside functions and methods, counted separately as such):
  a function-level import is how a cycle is hidden rather than removed; the two modules still
  depend on each other. Here one kind of edge is not counted: a package's own imports of its
  submodules (``waveflow/__init__.py`` resolving ``Vocoder`` lazily, the CLI's ``__init__`` loading
  its subcommands). Python imports a package before any of its submodules anyway, so a submodule
  that uses its parent package plus a parent that (lazily) re-exports its submodule is the
  ordinary shape of a package, not a dependency cycle between peers.

Known cycles are listed in ``KNOWN_CYCLES`` by name, each an ``xfail(strict=True)`` case asserting
that it is gone: fixing one turns its case into a failure until the entry is removed, and any
cycle not listed fails ``test_no_new_cycles_through_deferred_imports``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "waveflow"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    deferred: bool  # inside a function or method

    def __str__(self) -> str:
        kind = "deferred import" if self.deferred else "import"
        return f"{self.source} -> {self.target} ({kind}, line {self.line})"


def package_modules(package: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (source file, is a package)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, name: str, is_package: bool, modules: dict[str, tuple[Path, bool]]):
        self.name, self.is_package, self.modules = name, is_package, modules
        self.root = name.split(".")[0]
        self.depth = 0
        self.edges: list[Edge] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # never executed: only its else branch counts
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _module_of(self, dotted: str) -> str | None:
        """``dotted`` or its longest prefix that is a module of the package."""
        while dotted not in self.modules:
            if "." not in dotted:
                return None
            dotted = dotted.rsplit(".", 1)[0]
        return dotted

    def _add(self, target: str | None, node: ast.stmt) -> None:
        if target is not None and target != self.name:
            self.edges.append(Edge(self.name, target, node.lineno, self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == self.root:
                self._add(self._module_of(alias.name), node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:  # relative: from the package holding this module (this package, if __init__)
            base = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        if module.split(".")[0] != self.root:
            return
        for alias in node.names:
            submodule = f"{module}.{alias.name}"
            self._add(submodule if submodule in self.modules else self._module_of(module), node)


def import_edges(package: Path = PACKAGE) -> list[Edge]:
    modules = package_modules(package)
    edges = []
    for name, (path, is_package) in modules.items():
        visitor = _ImportVisitor(name, is_package, modules)
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        edges.extend(visitor.edges)
    return list(dict.fromkeys(edges))  # `from m import a, b` is one edge


def _is_own_submodule(edge: Edge) -> bool:
    return edge.target.startswith(edge.source + ".")


def cycles(edges: list[Edge]) -> list[tuple[frozenset[str], list[Edge]]]:
    """The strongly connected components of more than one module, each with its internal edges."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm (the graph has ~100 nodes: recursion is fine)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [(c, [e for e in edges if e.source in c and e.target in c]) for c in found]


def describe(found: list[tuple[frozenset[str], list[Edge]]]) -> str:
    return "\n".join(
        f"cycle among {', '.join(sorted(c))}:\n" + "\n".join(f"    {e}" for e in sorted(es, key=str))
        for c, es in found
    )


def import_time_cycles(package: Path = PACKAGE):
    return cycles([e for e in import_edges(package) if not e.deferred])


def deferred_cycles(package: Path = PACKAGE):
    return cycles([e for e in import_edges(package) if not _is_own_submodule(e)])


def test_no_import_time_cycles():
    found = import_time_cycles()
    assert not found, "module-level imports that form a cycle:\n" + describe(found)


def test_no_cycles_through_deferred_imports():
    """Also with the imports inside functions (``infer.export`` <-> ``infer.vocoder`` was one, until
    ``folded_copy`` moved to ``waveflow.model``)."""
    found = deferred_cycles()
    assert not found, "modules that import each other (some imports deferred):\n" + describe(found)


# -- the scanner itself ----------------------------------------------------------------------------------
def test_the_scanner_sees_cycles_of_every_kind(tmp_path):
    """Absolute, relative and deferred imports become edges; TYPE_CHECKING ones and a package's own
    submodules (in the deferred graph) do not; a planted cycle is reported at the right level."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "def __getattr__(name):\n    from pkg.sub.b import B\n    return B\n",
        "a.py": "from pkg.sub import b\n",  # a -> sub.b (module level)
        "c.py": "def f():\n    import pkg.a\n",  # c -> a (deferred)
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n",
        "sub/__init__.py": "from .b import B\n",  # sub -> sub.b: the package's own submodule
        "sub/b.py": "from ..c import f\nB = 1\n",  # sub.b -> c (relative, module level)
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    edges = {(e.source, e.target, e.deferred) for e in import_edges(pkg)}
    assert edges == {
        ("pkg", "pkg.sub.b", True),
        ("pkg.a", "pkg.sub.b", False),
        ("pkg.c", "pkg.a", True),
        ("pkg.sub", "pkg.sub.b", False),
        ("pkg.sub.b", "pkg.c", False),
    }
    assert import_time_cycles(pkg) == []  # a -> sub.b -> c, and c -> a only inside a function
    ((members, _),) = deferred_cycles(pkg)
    assert members == {"pkg.a", "pkg.sub.b", "pkg.c"}
    (pkg / "c.py").write_text("import pkg.a\n")
    ((members, _),) = import_time_cycles(pkg)
    assert members == {"pkg.a", "pkg.sub.b", "pkg.c"}
