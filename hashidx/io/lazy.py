"""Package exports that load on first use, listed once as the package's `if TYPE_CHECKING:` imports."""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def lazy_exports(package: str) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """(__all__, __getattr__, __dir__) for `package`, read from the imports under its `if TYPE_CHECKING:`.

    Type checkers and IDEs read those imports; at run time a name's module is imported only when the name
    is first used, so importing one module of a subpackage never loads its siblings (PIL, http, torch).
    """
    module = sys.modules[package]
    tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
    table: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                if isinstance(imp, ast.ImportFrom) and imp.module:
                    table.update({a.asname or a.name: (imp.module, a.name) for a in imp.names})

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        source, attribute = table[name]
        value = getattr(importlib.import_module(source), attribute)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(table))

    return list(table), __getattr__, __dir__
