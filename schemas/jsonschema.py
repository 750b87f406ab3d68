"""JSON Schema export of the contract: ``python -m schemas.jsonschema OUTDIR``."""

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.requests import RequestAdapter
from schemas.results import Result

SCHEMA_FILES = ("request.schema.json", "result.schema.json")


def json_schemas() -> dict[str, dict[str, Any]]:
    request = RequestAdapter.json_schema(mode="validation")
    request["title"] = "Request"
    result = TypeAdapter(Result).json_schema(mode="serialization")
    return {"request.schema.json": request, "result.schema.json": result}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export_json_schemas(out_dir: Path | str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = out / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m schemas.jsonschema OUTDIR", file=sys.stderr)
        return 2
    for path in export_json_schemas(argv[0]):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
