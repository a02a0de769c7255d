"""The package's import graph: no cycles (imports inside functions included) and every import points downwards.

The layers, bottom to top, follow the data flow: images → features → codes → index → results → feedback → service.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import hashidx

PACKAGE = Path(hashidx.__file__).parent

# Bottom to top. A module may import from its own layer's modules or from any layer below, never above.
LAYERS = (
    "version",
    "errors",
    "io",
    "engines",
    "data",
    "features",
    "codes",
    "methods",
    "index",
    "results",
    "feedback",
    "evaluation",
    "service",
    "info",
    "demo",
    "cli",
    "__main__",
)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every hashidx module `path` imports, at the top or inside a function, resolved to module names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module; `from mod import name` imports mod.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in modules and t != name}
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else len(LAYERS)  # the top package sits above everything


def test_every_module_sits_in_a_known_layer():
    unknown = [m for m in graph() if m != "hashidx" and m.split(".")[1] not in LAYERS]
    assert not unknown, f"modules outside the declared layers: {unknown}"


def test_imports_point_downwards():
    upward = [(m, t) for m, targets in graph().items() for t in targets if m != "hashidx" and layer(t) > layer(m)]
    assert not upward, f"imports that point up a layer: {upward}"


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(g[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles: {cycles}"


def test_the_walker_sees_imports_inside_functions():
    """The check is only as good as its parser: a cycle hidden in a function body must be visible to it."""
    src = PACKAGE / "results" / "query.py"
    top_level = {n.module for n in ast.parse(src.read_text()).body if isinstance(n, ast.ImportFrom)}
    assert "hashidx.methods.encoder" not in top_level  # imported inside query_codes only
    assert "hashidx.methods.encoder" in imports_of(src)


PACKAGES = ["hashidx", *(f"hashidx.{p.name}" for p in sorted(PACKAGE.iterdir()) if (p / "__init__.py").is_file())]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_export_resolves_to_what_its_type_checking_import_names(package):
    module = importlib.import_module(package)
    tree = ast.parse(Path(str(module.__file__)).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    named = {a.asname or a.name: (node.module, a.name) for node in block.body for a in node.names}
    assert set(module.__all__) - {"__version__"} == set(named)
    for name, (source, attribute) in named.items():
        assert getattr(module, name) is getattr(importlib.import_module(source), attribute)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_export_shares_a_submodule_name(package):
    """A submodule, once imported, is set on its package under its own name and would hide a lazy export."""
    module = importlib.import_module(package)
    submodules = {p.stem for p in Path(str(module.__file__)).parent.glob("*.py")}
    assert not set(module.__all__) & submodules


def test_importing_one_module_leaves_its_siblings_unloaded():
    script = (
        "import sys, hashidx, hashidx.results.query, hashidx.index.indexes, hashidx.data.queryfile\n"
        "loaded = {m for m in ('torch', 'PIL', 'http.client', 'hashidx.results.gallery', 'hashidx.data.download')"
        " if m in sys.modules}\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
