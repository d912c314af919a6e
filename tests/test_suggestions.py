"""Every value a help suggests works for the whole spec, as `--format json` states it.

For every invalid case (with its `.args`), each diagnostic's `fixes` are applied one at a
time, as a tool would apply them: each edit's text replaces the file text from its
`line`/`column` to its `end` (an edit with `set` replaces that `--set` instead). The spec
is then validated again and:

* the diagnostic is gone: its code is reported fewer times on its line;
* no error is new, except one the first run could not see (a plan error in a layer with
  a schema error or after it, or in a section with one; any error past a YAML syntax
  error: `Result.unchecked`), which was there all along and may now show;

and every number a help shows (but a position in the file) is one its message states or
one of its fixes, so no value is suggested untested.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from specc import api
from specc.diagnostics import Diagnostic, Severity, Span
from specc.source import LINE_BREAKS
from tests.support.cases import case_arguments
from tests.support.cli import specc
from tests.support.paths import INVALID, SPECS, invalid_specs


def offset(text: str, line: int, column: int) -> int:
    """The string offset of a position as specc reports it (a BOM takes no column)."""
    starts = [0] + [m.end() for m in LINE_BREAKS.finditer(text)]
    bom = 1 if line == 1 and text.startswith("\ufeff") else 0
    return starts[line - 1] + column - 1 + bom


def apply(text: str, arguments: list[str], edits: list[dict]) -> tuple[str, list[str], list]:
    """The text and arguments with `edits` applied, and the replaced ranges (old lines)."""
    arguments = list(arguments)
    pieces = []
    for edit in edits:
        if "set" in edit:
            name = edit["set"].partition("=")[0]
            kept = _without_override(arguments, name, edit.get("replaces"))
            arguments = [*kept, "--set", edit["set"]]
            continue
        start = offset(text, edit["line"], edit["column"])
        end = offset(text, edit["end"]["line"], edit["end"]["column"])
        pieces.append((start, end, edit["text"], edit["line"], edit["end"]["line"]))
    ranges = []
    for start, end, replacement, first, last in sorted(pieces, reverse=True):
        text = text[:start] + replacement + text[end:]
        ranges.append((first, last, len(LINE_BREAKS.findall(replacement))))
    return text, arguments, sorted(ranges)


def _without_override(arguments: list[str], name: str, replaces: str | None) -> list[str]:
    """`arguments` without the --set of size `name`, nor the one `replaces` names."""
    out: list[str] = []
    index = 0
    while index < len(arguments):
        given = arguments[index + 1] if index + 1 < len(arguments) else ""
        if arguments[index] == "--set" and (given.partition("=")[0] == name or given == replaces):
            index += 2
            continue
        out.append(arguments[index])
        index += 1
    return out


def old_line(line: int, ranges: list) -> int:
    """The line of the original text that line `line` of the edited one comes from."""
    shift = 0
    for first, last, added in ranges:
        new_first, new_last = first + shift, first + shift + added
        if line < new_first:
            break
        if line <= new_last:
            return first
        shift += added - (last - first)
    return line - shift


def records(name: str, arguments: list[str], cwd: Path) -> list[dict]:
    run = specc("validate", "--format", "json", name, *arguments, cwd=cwd)
    return json.loads(run.stdout)


def problems_of(case: Path, arguments: list[str], tmp_path: Path) -> list[str]:
    text = case.read_bytes().decode("utf-8")
    before = records(case.name, arguments, case.parent)
    result = api.check(str(case), _overrides(arguments))
    unchecked = result.unchecked
    at_before = Counter((r["code"], r["line"]) for r in before)
    errors_before = Counter((r["code"], r["line"]) for r in before if r["severity"] == "error")
    problems = []
    for record in before:
        where = f"{record['code']} at {record['line']}:{record['column']}"
        labels = [fix["label"] for fix in record["fixes"]]
        problems += [f"{where}: {p}" for p in _untested_numbers(record, labels)]
        for fix in record["fixes"]:
            edited, edited_arguments, ranges = apply(text, arguments, fix["edits"])
            spec = tmp_path / case.name
            spec.write_bytes(edited.encode("utf-8"))
            after = records(case.name, edited_arguments, tmp_path)
            at_after: Counter[tuple[str, int]] = Counter()
            new = []
            for found in after:
                key = (found["code"], old_line(found["line"], ranges))
                at_after[key] += 1
                if found["severity"] == "error" and at_after[key] > errors_before[key]:
                    new.append((found, key[1]))
            key = (record["code"], record["line"])
            if at_after[key] >= at_before[key]:
                problems.append(f"{where}: fix {fix['label']!r} leaves it")
            for found, line in new:
                moved = Diagnostic(
                    Severity.ERROR, found["code"], "", Span(case.name, line, 1, line, 1)
                )
                if unchecked is None or not unchecked.covers(moved):
                    problems.append(
                        f"{where}: fix {fix['label']!r} adds {found['code']} at {line}: "
                        f"{found['message']}"
                    )
    return problems


def _overrides(arguments: list[str]) -> list[str]:
    return [arguments[i + 1] for i, a in enumerate(arguments) if a == "--set"]


_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _untested_numbers(record: dict, labels: list[str]) -> list[str]:
    """Numbers a help shows that are neither in its message nor a fix's label."""
    # Positions in the file, and the format version, are no suggested values.
    help_ = re.sub(r"\d+:\d+|`specc: 1`", "", record["help"] or "")
    stated = set(_NUMBER.findall(record["message"]))
    offered = {n for label in labels for n in _NUMBER.findall(label)}
    return [
        f"help shows {number}, which no fix offers: {help_}"
        for number in _NUMBER.findall(help_)
        if number not in stated | offered
    ]


@pytest.mark.parametrize("case", invalid_specs(), ids=lambda p: p.stem)
def test_every_suggestion_works(case, tmp_path):
    problems = problems_of(case, case_arguments(case), tmp_path)
    assert not problems, "\n".join(problems)


def test_the_corpus_offers_fixes():
    """Not vacuous: many cases offer values, and of many kinds."""
    with_fixes, edits = 0, Counter()
    for case in invalid_specs():
        for record in records(case.name, case_arguments(case), INVALID):
            with_fixes += bool(record["fixes"])
            for fix in record["fixes"]:
                for edit in fix["edits"]:
                    edits["set" if "set" in edit else "file"] += 1
    assert with_fixes >= 60, with_fixes
    assert edits["set"] >= 1, edits


ZOO_OVERRIDES = [
    ("gpt2.yaml", ["hidden=64"]),
    ("gpt2.yaml", ["tensor=8"]),
    ("llama3_8b.yaml", ["tensor=16"]),
    ("llama3_8b.yaml", ["hidden=64", "heads=4", "kv_heads=3", "tensor=2"]),
    ("bert_base.yaml", ["tensor=5"]),
    ("vit_base16.yaml", ["tensor=8", "data=3"]),
]


@pytest.mark.parametrize("name, sets", ZOO_OVERRIDES, ids=str)
def test_suggestions_under_set_work(name, sets, tmp_path):
    """Resized zoo specs: values that came from --set are fixed there, and say so."""
    arguments = [a for s in sets for a in ("--set", s)]
    spec = tmp_path / "zoo" / name
    spec.parent.mkdir()
    spec.write_text((SPECS / name).read_text(encoding="utf-8"), encoding="utf-8")
    found = records(name, arguments, spec.parent)
    assert any(r["severity"] == "error" for r in found), found
    for record in found:
        if record["severity"] == "error" and record["code"] != "E210":
            assert "from --set)" in record["message"], record["message"]
    problems = problems_of(spec, arguments, tmp_path)
    assert not problems, "\n".join(problems)
