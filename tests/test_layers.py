"""The package's import layering, read from the source: errors < ir < frontend, backend < the top-level API; no circle."""

# errors at the bottom; ir above it; frontend and backend above ir; the top-level API modules
# (kernels, api, autograd, runtime, raw, msl, bench, profile, testing, cli, stats, decorators, the
# package itself) above those. Late imports count: one inside a function (backend's lazy
# metal_sim) is allowed only where it closes no circle, and so is one under `if TYPE_CHECKING:`
# (a circle only the type checker sees is still a circle).
from __future__ import annotations

import ast
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import zmlx_dsl

ROOT = Path(zmlx_dsl.__file__).parent
PACKAGE = "zmlx_dsl"


class Edge(NamedTuple):
    source: str
    target: str
    line: int
    how: str  # "" (module level), "late" (inside a function or class body) or "typing only"

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line}{', ' + self.how if self.how else ''})"


def _module_name(path: Path) -> str:
    parts = (PACKAGE,) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _owner(name: str) -> str | None:
    """The package module `name` is or lies in (an imported function: its module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative to the module's package (an __init__ module is its package)
            package = module.split(".")[: None if MODULES[module].name == "__init__.py" else -1]
            package = package[: len(package) - node.level + 1]
            base = ".".join(package + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" for a in node.names]
    owners = dict.fromkeys(_owner(name) for name in names)
    yield from (o for o in owners if o is not None and o != module)


def _inside(tree: ast.AST, is_scope: Callable[[ast.AST], bool]) -> set[int]:
    """The ids of the nodes inside every scope node for which is_scope(node) holds."""
    return {id(n) for scope in ast.walk(tree) if is_scope(scope) for n in ast.walk(scope) if n is not scope}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _edges(module: str, text: str) -> Iterator[Edge]:
    tree = ast.parse(text, str(MODULES[module]))
    late = _inside(tree, lambda n: isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
    typing_only = _inside(tree, _is_type_checking)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            how = "late" if id(node) in late else "typing only" if id(node) in typing_only else ""
            for target in _targets(module, node):
                yield Edge(module, target, node.lineno, how)


EDGES = [e for m, path in MODULES.items() for e in _edges(m, path.read_text())]


def _circles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    succ: dict[str, set[str]] = {m: set() for m in MODULES}
    for e in EDGES:
        succ[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        for t in sorted(succ[m]):
            if t not in index:
                visit(t)
                low[m] = min(low[m], low[t])
            elif t in stack:
                low[m] = min(low[m], index[t])
        if low[m] == index[m]:
            component = []
            while True:
                component.append(stack.pop())
                if component[-1] == m:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in sorted(MODULES):
        if m not in index:
            visit(m)
    return found


def _layer(module: str) -> str:
    """ "errors", "ir", "frontend", "backend", or "api" (every other top-level module)."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("errors", "ir", "frontend", "backend"):
        return parts[1]
    return "api"


def _crossing(source_layer: str, *forbidden: str) -> list[str]:
    return [str(e) for e in EDGES if _layer(e.source) == source_layer and _layer(e.target) in forbidden]


def test_the_scan_reads_every_kind_of_import() -> None:
    assert {"zmlx_dsl", "zmlx_dsl.errors", "zmlx_dsl.ir.node", "zmlx_dsl.backend", "zmlx_dsl.kernels"} <= set(MODULES)
    text = ("import mlx.core as mx\nfrom . import dtypes, node\nfrom ..errors import ZMLXError\n"
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..backend.plan import Plan\n"
            "def f():\n    import zmlx_dsl.api\n")
    assert [str(e) for e in _edges("zmlx_dsl.ir.build", text)] == [
        "zmlx_dsl.ir.build -> zmlx_dsl.ir.dtypes (line 2)", "zmlx_dsl.ir.build -> zmlx_dsl.ir.node (line 2)",
        "zmlx_dsl.ir.build -> zmlx_dsl.errors (line 3)", "zmlx_dsl.ir.build -> zmlx_dsl.backend.plan (line 6, typing only)",
        "zmlx_dsl.ir.build -> zmlx_dsl.api (line 8, late)"]
    assert [e.target for e in _edges("zmlx_dsl.backend", "from . import mlx\nfrom .. import raw\n")] == \
        ["zmlx_dsl.backend.mlx", "zmlx_dsl.raw"]


def test_no_import_circle() -> None:
    circles = _circles()
    report = [str(e) for c in circles for e in EDGES if e.source in c and e.target in c]
    assert not circles, "import circles among zmlx_dsl modules:\n" + "\n".join(report)


def test_ir_imports_no_frontend_backend_or_api() -> None:
    assert _crossing("ir", "frontend", "backend", "api") == []


def test_frontend_and_backend_import_no_api() -> None:
    assert _crossing("frontend", "api") + _crossing("backend", "api") == []


def test_frontend_imports_no_backend() -> None:
    assert _crossing("frontend", "backend") == []


def test_errors_imports_nothing_from_the_package() -> None:
    assert [str(e) for e in EDGES if e.source == "zmlx_dsl.errors"] == []
