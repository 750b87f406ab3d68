"""Imports point one way: the contracts in pyproject.toml ([tool.importlinter]), checked by
import-linter — contract <- engine <- storage <- service <- entry points, the engine without
I/O, the service without a Kafka client, the client library on the contract alone."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_schemas_depend_on_nothing_else_in_the_repo() -> None:
    """The contract is the one package third parties may vendor: pydantic and the standard library only."""
    for path in (ROOT / "schemas").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in {"schemas", "pydantic"}, f"{path.name}: {name}"
