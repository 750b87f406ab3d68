"""Imports point downward only: the engine sees schemas + stdlib, schemas see pydantic."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_roots(package: Path) -> set[str]:
    roots: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module)
    return roots


def test_engine_imports_only_schemas_and_stdlib() -> None:
    for name in imported_roots(ROOT / "processor" / "ledger"):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top == "schemas" or name.startswith("processor.ledger"), name


def test_schemas_depend_on_nothing_else_in_the_repo() -> None:
    for name in imported_roots(ROOT / "schemas"):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top in {"schemas", "pydantic"}, name
