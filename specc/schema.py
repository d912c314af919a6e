"""The JSON Schema of the spec, exported from the pydantic models for editors and CI.

The committed copy lives in schemas/specc.schema.json; `specc schema --check` fails
when it no longer matches the models.
"""

from __future__ import annotations

import json

from specc.spec import Spec

SCHEMA_PATH = "schemas/specc.schema.json"


def schema_text() -> str:
    schema = Spec.model_json_schema(mode="validation")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
