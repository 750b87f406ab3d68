"""The committed contract artefacts match the code that generates them."""

import json
from pathlib import Path

from schemas.docs import render
from schemas.jsonschema import SCHEMA_FILES, json_schemas, render as render_schema

ROOT = Path(__file__).resolve().parents[2]


def test_json_schemas_are_up_to_date() -> None:
    schemas = json_schemas()
    assert set(schemas) == set(SCHEMA_FILES)
    for name, schema in schemas.items():
        committed = (ROOT / "schemas" / "json" / name).read_text(encoding="utf-8")
        assert committed == render_schema(schema), f"run: python -m schemas.jsonschema schemas/json ({name})"
        assert json.loads(committed)


def test_contract_doc_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    assert committed == render(), "run: python -m schemas.docs > docs/contract.md"
