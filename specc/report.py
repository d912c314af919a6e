"""How diagnostics look: compiler-style text for people, JSON and GitHub commands for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence

from specc.diagnostics import Diagnostic, Edit, Fix, Severity, path_text
from specc.source import LINE_BREAKS

FORMATS = ("text", "json", "github")

_COLOURS = {Severity.ERROR: "\033[1;31m", Severity.WARNING: "\033[1;33m"}
_BOLD, _BLUE, _RESET = "\033[1m", "\033[1;34m", "\033[0m"


def text(
    diagnostics: Sequence[Diagnostic],
    sources: dict[str, str],
    *,
    colour: bool = False,
    limit: int = 50,
) -> str:
    """Each diagnostic with the offending line, a caret under it, and its help."""
    paint = _Paint(colour)
    blocks = []
    for item in diagnostics[:limit]:
        span = item.span
        severity = paint(_COLOURS[item.severity], f"{item.severity.value}[{item.code}]")
        lines = [
            f"{paint(_BOLD, f'{span.file}:{span.line}:{span.column}:')} {severity}: {item.message}"
        ]
        source = _line(sources.get(span.file), span.line)
        if source is not None and source.strip():
            width = len(str(span.line))
            end = span.end_column if span.end_line == span.line else len(source) + 1
            carets = "^" * max(1, min(end, len(source) + 1) - span.column)
            gutter = paint(_BLUE, f"{' ' * width} |")
            lines.append(f"{paint(_BLUE, f'{span.line} |')} {source}")
            lines.append(
                f"{gutter} {' ' * (span.column - 1)}{paint(_COLOURS[item.severity], carets)}"
            )
        if item.help:
            lines.append(f"  {paint(_BOLD, 'help:')} {item.help}")
        blocks.append("\n".join(lines))
    if len(diagnostics) > limit:
        blocks.append(f"...and {len(diagnostics) - limit} more")
    return "\n".join(blocks) + ("\n" if blocks else "")


def _line(text: str | None, number: int) -> str | None:
    """Line `number` as YAML counts lines; characters a terminal cannot show are replaced."""
    lines = LINE_BREAKS.split(text) if text is not None else []
    if not 0 < number <= len(lines):
        return None
    line = lines[number - 1].lstrip("\ufeff") if number == 1 else lines[number - 1]
    return "".join(c if c.isprintable() or c == "\t" else "\N{REPLACEMENT CHARACTER}" for c in line)


def summary(diagnostics: Sequence[Diagnostic]) -> str:
    errors = sum(1 for d in diagnostics if d.severity is Severity.ERROR)
    warnings = len(diagnostics) - errors
    return f"{_count(errors, 'error')}, {_count(warnings, 'warning')}"


def as_json(diagnostics: Sequence[Diagnostic]) -> str:
    """A stable list of objects; keys and their meaning are documented in the README."""
    return json.dumps([_record(d) for d in diagnostics], indent=2) + "\n"


def github(diagnostics: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow commands, so errors show inline on a pull request."""
    lines = []
    for item in diagnostics:
        span = item.span
        properties = ",".join(
            f"{key}={_escape_property(str(value))}"
            for key, value in (
                ("file", span.file),
                ("line", span.line),
                ("col", span.column),
                ("endLine", span.end_line),
                ("endColumn", span.end_column),
                ("title", f"specc {item.code}"),
            )
        )
        message = item.message + (f"\nhelp: {item.help}" if item.help else "")
        lines.append(f"::{item.severity.value} {properties}::{_escape_data(message)}")
    return "\n".join(lines) + ("\n" if lines else "")


def _record(item: Diagnostic) -> dict[str, object]:
    span = item.span
    return {
        "file": span.file,
        "line": span.line,
        "column": span.column,
        "end": {"line": span.end_line, "column": span.end_column},
        "severity": item.severity.value,
        "code": item.code,
        "message": item.message,
        "help": item.help,
        "fixes": [_fix(fix) for fix in item.fixes],
    }


def _fix(fix: Fix) -> dict[str, object]:
    """A suggestion the help shows, as the edits that apply it."""
    return {"label": fix.label, "edits": [_edit(edit) for edit in fix.edits]}


def _edit(edit: Edit) -> dict[str, object]:
    record: dict[str, object] = {"path": path_text(edit.path), "value": edit.value}
    if edit.override is not None:
        record["set"] = edit.text
        if edit.replaces is not None:
            record["replaces"] = edit.replaces
        return record
    assert edit.span is not None
    span = edit.span
    record |= {
        "line": span.line,
        "column": span.column,
        "end": {"line": span.end_line, "column": span.end_column},
        "text": edit.text,
    }
    return record


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


class _Paint:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, style: str, text: str) -> str:
        return f"{style}{text}{_RESET}" if self.enabled else text
