"""The committed JSON Schema, as editors and CI without specc use it.

schemas/specc.schema.json is exported from the pydantic models (`specc schema --check`,
in test_cli, keeps it current). Here it is checked against the specs themselves: it
accepts every valid spec, rejects the structural mistakes of the invalid corpus (unknown
keys, wrong types, missing keys, bad choices: codes E200-E206 and E209), and accepts
the mistakes it cannot express, which only specc reports: names (E207, E208) and the
parallel plan (E3xx). Specs are read with specc's own YAML reader, so the schema sees
exactly the data the models see.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from specc import source
from specc.codes import CODES
from specc.diagnostics import Diagnostics
from tests.support.paths import CASES, REPO, SPECS, invalid_specs

SCHEMA_FILE = REPO / "schemas" / "specc.schema.json"
SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

STRUCTURAL = {"E200", "E201", "E202", "E203", "E204", "E205", "E206", "E209"}
ONLY_SPECC = {"E207", "E208"} | {c for c in CODES if c[:2] in ("E3", "W5")}
# Structural mistakes JSON Schema cannot see; the schema must accept them (so that this
# list stays true) and specc alone rejects them.
BEYOND_SCHEMA = {
    "float_size": "JSON Schema counts 8.0 as an integer; the strict models do not",
    "version_float": "JSON Schema counts 1.0 as the integer 1; the models do not",
}
MODELINE = re.compile(r"# yaml-language-server: \$schema=(?P<path>\S+)\Z")


def load(path: Path) -> Any:
    """The spec's data as specc reads it; fails the test if the YAML itself is wrong."""
    diagnostics = Diagnostics()
    document = source.parse_spec_text(path.read_text(encoding="utf-8"), path.name, diagnostics)
    assert document is not None and not diagnostics.items, diagnostics.items
    return document.data


def codes_of(case: Path) -> set[str]:
    text = case.with_suffix(".txt").read_text(encoding="utf-8")
    return set(re.findall(r"^\S+:\d+:\d+: (?:error|warning)\[(\w+)\]", text, re.MULTILINE))


def schema_errors(data: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(data)]


def cases_where(keep) -> list[Path]:
    return [case for case in invalid_specs() if codes_of(case) and keep(codes_of(case))]


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize(
    "spec", sorted(SPECS.glob("*.yaml")) + sorted(CASES.glob("*.yaml")), ids=lambda p: p.name
)
def test_schema_accepts_every_valid_spec(spec):
    assert schema_errors(load(spec)) == []


@pytest.mark.parametrize(
    "case", cases_where(lambda codes: codes <= STRUCTURAL), ids=lambda p: p.stem
)
def test_schema_rejects_structural_mistakes(case):
    errors = schema_errors(load(case))
    if case.stem in BEYOND_SCHEMA:
        assert errors == [], f"{case.stem} is listed as beyond the schema but it rejects it"
    else:
        assert errors, f"{case.stem} ({sorted(codes_of(case))}) passes the schema"


@pytest.mark.parametrize(
    "case", cases_where(lambda codes: codes <= ONLY_SPECC), ids=lambda p: p.stem
)
def test_schema_accepts_what_only_specc_can_check(case):
    """Names and the parallel plan are beyond JSON Schema: a spec with only such
    mistakes is valid for the schema, and specc is what catches them."""
    assert schema_errors(load(case)) == []


def test_corpus_exercises_both_sides_of_the_split():
    structural = cases_where(lambda codes: codes <= STRUCTURAL)
    plan = cases_where(lambda codes: codes <= ONLY_SPECC and any(c[:2] == "E3" for c in codes))
    assert len(structural) >= 30 and len(plan) >= 10


def properties(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every property anywhere in the schema, as (`Model.key`, its schema)."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, list):
        for item in node:
            found += properties(item, where)
    if not isinstance(node, dict):
        return found
    for name, definition in node.get("$defs", {}).items():
        found += properties(definition, name)
    for name, prop in node.get("properties", {}).items():
        place = f"{where}.{name}" if where else name
        found += [(place, prop), *properties(prop, place)]
    for key, value in node.items():
        if key not in ("$defs", "properties", "examples", "default", "const", "enum"):
            found += properties(value, where)
    return found


def is_leaf(prop: dict[str, Any]) -> bool:
    """A property holding a value (number, string, list of numbers), not a nested model."""
    members = [prop, *prop.get("anyOf", []), *prop.get("oneOf", [])]
    if any("$ref" in m or m.get("type") == "object" for m in members):
        return False
    items = [m["items"] for m in members if isinstance(m.get("items"), dict)]
    return not any("$ref" in i or "oneOf" in i or i.get("type") == "object" for i in items)


def documentation_gaps() -> dict[str, list[str]]:
    gaps = {}
    for place, prop in properties(SCHEMA):
        missing = [] if "description" in prop else ["description"]
        if is_leaf(prop) and not prop.get("examples"):
            missing.append("examples")
        if missing:
            gaps[place] = missing
    return gaps


def test_properties_found_cover_every_model():
    places = {place for place, _ in properties(SCHEMA)}
    assert {"specc", "parallel", "Parallel.data", "Input.shape", "Linear.split"} <= places
    for name, definition in SCHEMA["$defs"].items():
        assert {f"{name}.{key}" for key in definition.get("properties", {})} <= places


def test_only_layer_kinds_lack_descriptions_or_examples():
    """Editors show these on hover and complete with them; a new field must have both."""
    gaps = documentation_gaps()
    assert {place: gap for place, gap in gaps.items() if not place.endswith(".kind")} == {}


def test_every_property_has_a_description_and_every_leaf_examples():
    assert documentation_gaps() == {}


def test_examples_are_valid_for_their_own_property():
    for place, prop in properties(SCHEMA):
        validator = jsonschema.Draft202012Validator({"$defs": SCHEMA["$defs"], **prop})
        for example in prop.get("examples", []):
            errors = [e.message for e in validator.iter_errors(example)]
            assert errors == [], f"{place}: example {example!r} is invalid: {errors}"


@pytest.mark.parametrize("spec", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.name)
def test_example_specs_point_editors_at_the_schema(spec):
    first = spec.read_text(encoding="utf-8").splitlines()[0]
    match = MODELINE.match(first)
    assert match, f"{spec.name} must start with `# yaml-language-server: $schema=<path>`"
    target = match["path"]
    assert "://" not in target and not Path(target).is_absolute(), "use a relative path"
    assert (spec.parent / target).resolve() == SCHEMA_FILE.resolve()
