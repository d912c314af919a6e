"""Suggestions that work: every value a help offers, checked against the whole spec.

A stage that reports a problem may offer values in its help (`specc.diagnostics.Help`):
the sizes a tensor size would divide, the key a typo meant. A value that satisfies the
rule being reported may break another rule of the same spec, so `settle` tries each
one: it turns the value into edits of the spec file (the value's own text; where a
`${...}` reference takes it from, a size of `sizes:`; or the `--set` that gave that
size), applies them to the text and checks the spec again. A value is offered only if
the diagnostic is then gone and no error is new; a new error is allowed only in a part
of the spec the first check could not see (a layer with a schema error, and those after
it), since that error was there all along. Each value kept becomes a `Fix`, printed by
`--format json`; the help shows the kept ones and leaves out a clause none of whose
values works.

`attribute` says which `--set` overrides a diagnostic depends on: it is checked again
without each override, and a diagnostic that then goes away or changes came, directly
or through an expression, from that override.

A file gets at most `MAX_CHECKS` checks for its suggestions (in file order), fewer when
it is longer than `SHORT_TEXT` (a check costs as much as the file is long), so a spec
with many errors stays quick to validate; values left untried are not offered.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from specc.diagnostics import (
    KEY,
    SET,
    TEXT,
    Diagnostic,
    Diagnostics,
    Edit,
    Fix,
    Severity,
    Span,
    Values,
    YamlPath,
)
from specc.source import LINE_BREAKS, Document
from specc.spec import Unchecked
from specc.spec.sizes import evaluate, reference, references

MAX_CHECKS = 60  # checks of suggestions per file
SHORT_TEXT = 16 * 1024  # characters of a file that gets them all (a zoo spec has 5,000)
MAX_CANDIDATES = 12  # values tried per offer
MESH_AXES = ("data", "tensor", "pipeline")


@dataclass(frozen=True)
class Outcome:
    """What a check of a spec text found (without suggestions being tried)."""

    diagnostics: list[Diagnostic]
    unchecked: Unchecked | None


# Checks a spec text with these --set overrides, as the first check did.
Checker = Callable[[str, Sequence[str]], Outcome]


def settle(
    diagnostics: Diagnostics,
    text: str,
    document: Document | None,
    overrides: Sequence[str],
    applied: dict[str, int],
    unchecked: Unchecked | None,
    check: Checker,
) -> None:
    """Keep the offered values that work; give each diagnostic its help and fixes."""
    baseline = list(diagnostics.items)
    trial = _Trial(text, document, overrides, applied, baseline, unchecked, check)
    settled = {}
    for index in sorted(range(len(baseline)), key=lambda i: baseline[i].sort_key):
        item = baseline[index]
        if item.offered is not None:
            settled[index] = trial.settle(item)
    diagnostics.items = [settled.get(i, d) for i, d in enumerate(baseline)]


def attribute(
    diagnostics: Diagnostics,
    text: str,
    overrides: Sequence[str],
    applied: dict[str, int],
    check: Checker,
) -> None:
    """Say, in each diagnostic's message, which --set overrides it depends on."""
    notes: dict[int, list[str]] = {}  # name=value of each override a diagnostic depends on
    for name, value in applied.items():
        without = [o for o in overrides if o.partition("=")[0].strip() != name]
        outcome = check(text, without)
        there = {(d.code, d.span, d.message) for d in outcome.diagnostics}
        for index, item in enumerate(diagnostics.items):
            if (item.code, item.span, item.message) not in there:
                notes.setdefault(index, []).append(f"{name}={value}")
    diagnostics.items = [
        dataclasses.replace(d, message=f"{d.message} ({', '.join(notes[i])} from --set)")
        if i in notes
        else d
        for i, d in enumerate(diagnostics.items)
    ]


def value_edits(
    text: str, document: Document, applied: dict[str, int], values: dict[YamlPath, Any]
) -> tuple[Edit, ...] | None:
    """The edits that give each path of the spec its value, as a suggestion's would be
    written (where a `${...}` reference takes it from, the size of `sizes:`, or the
    `--set` that gave that size), with `parallel.world_size` kept equal to the new
    mesh when the spec writes it; None when some value cannot be written.

    Used by the planner (`specc plan --world`), which writes several sizes at once.
    """
    trial = _Trial(text, document, (), applied, [], None, lambda t, o: Outcome([], None))
    edits: dict[YamlPath, Edit] = {}
    for path, value in values.items():
        edit = trial._value_edit(path, value)
        if edit is None:
            return None
        if edit.path in edits and edits[edit.path].value != edit.value:
            return None  # two values lead to the same size
        edits[edit.path] = edit
    parallel = _get(document.data, ("parallel",))
    if isinstance(parallel, dict) and "world_size" in parallel:
        world = 1
        for axis in MESH_AXES:
            size = values.get(("parallel", axis), trial._resolved(("parallel", axis), 1))
            if not isinstance(size, int):
                return None
            world *= size
        edit = trial._value_edit(("parallel", "world_size"), world)
        if edit is None:
            return None
        edits[edit.path] = edit
    return tuple(edits.values())


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """`text` with the file edits applied (those with a span); nothing else changes."""
    return _apply(text, _Offsets(text), tuple(edits))[0]


class _Trial:
    """Tries the values offered in one file's diagnostics."""

    def __init__(
        self,
        text: str,
        document: Document | None,
        overrides: Sequence[str],
        applied: dict[str, int],
        baseline: list[Diagnostic],
        unchecked: Unchecked | None,
        check: Checker,
    ) -> None:
        self.text = text
        self.document = document  # None: the text is no YAML, only text edits apply
        self.overrides = list(overrides)
        self.applied = applied
        self.baseline = baseline
        self.unchecked = unchecked
        self.check = check
        self.checks = 0
        self.budget = MAX_CHECKS * min(1.0, SHORT_TEXT / max(1, len(text)))
        data = document.data if document is not None else None
        written = data.get("sizes") if isinstance(data, dict) else None
        self.sizes: dict[str, Any] = dict(written) if isinstance(written, dict) else {}
        self.sizes.update(applied)
        self.offsets = _Offsets(text)
        self.before = Counter(_key(d) for d in baseline)
        self.errors_before = Counter(_key(d) for d in baseline if d.severity is Severity.ERROR)

    def settle(self, item: Diagnostic) -> Diagnostic:
        offered = item.offered
        assert offered is not None
        found: dict[tuple[int, int], Fix] = {}
        offers = offered.values()
        for number, values in enumerate(offers):
            for index in range(min(len(values.candidates), MAX_CANDIDATES)):
                fix = self._try(item, values, index)
                if fix is not None:
                    found[number, index] = fix

        def label(values: Values, index: int) -> str | None:
            fix = found.get((offers.index(values), index))
            return None if fix is None else fix.label

        text = offered.render(label)
        if text is not None and any(len(fix.edits) > 1 for fix in found.values()):
            text = f"{text}; with world_size set to the new data x tensor x pipeline"
        return dataclasses.replace(item, help=text, fixes=tuple(found.values()))

    def _try(self, item: Diagnostic, values: Values, index: int) -> Fix | None:
        edits = self._edits(values, index)
        if edits is None or self.checks >= self.budget:
            return None
        self.checks += 1
        if not self._works(item, edits):
            return None
        return Fix(values.label(index), edits)

    # -- values to edits ------------------------------------------------------------------

    @property
    def doc(self) -> Document:
        """The spec as read; there is one whenever an offer is more than a text edit."""
        assert self.document is not None
        return self.document

    def _edits(self, values: Values, index: int) -> tuple[Edit, ...] | None:
        path = values.path
        assert not isinstance(path, str), "a layer's key must be resolved by the walk"
        value = values.candidates[index]
        if values.action == TEXT:
            if values.span is None:
                return None
            return (Edit(path, value, str(value), values.span),)
        if values.action == SET:
            name = str(path[-1])
            return (
                Edit(
                    path,
                    value,
                    f"{name}={_scalar_text(value)}",
                    override=name,
                    replaces=values.replaces,
                ),
            )
        if self.document is None:
            return None
        if values.action == KEY:
            span = self.doc.key_spans.get(path)
            if span is None:
                return None
            return (Edit((*path[:-1], value), value, _scalar_text(value), span),)
        edit = self._value_edit(path, value)
        if edit is None:
            return None
        edits = [edit]
        if len(path) == 2 and path[0] == "parallel" and path[1] in MESH_AXES:
            possible, companion = self._world_size(str(path[1]), value)
            if not possible:
                return None
            if companion is not None:
                edits.append(companion)
        return tuple(edits)

    def _value_edit(self, path: YamlPath, value: Any) -> Edit | None:
        if len(path) == 2 and path[0] == "sizes" and path[1] in self.applied:
            name = str(path[1])
            return Edit(path, value, f"{name}={_scalar_text(value)}", override=name)
        raw = _get(self.doc.data, path)
        if raw is _MISSING:
            return self._insertion(path, value)
        expression = reference(raw)
        if expression is not None and reference(value) is None:
            used = references(expression) or set()
            if len(used) != 1:
                return None
            name = used.pop()
            target = _invert(expression, name, value, self.sizes)
            return None if target is None else self._value_edit(("sizes", name), target)
        span = self.doc.value_spans.get(path)
        if span is None:
            return None
        block = span.end_column == 1 and span.end_line > span.line
        return Edit(path, value, _yaml_text(value) + ("\n" if block else ""), span)

    def _insertion(self, path: YamlPath, value: Any) -> Edit | None:
        """The key added to its mapping, after the keys written there."""
        parent, key = path[:-1], path[-1]
        mapping = _get(self.doc.data, parent)
        span = self.doc.value_spans.get(parent)
        if not isinstance(mapping, dict) or not isinstance(key, str) or span is None:
            return None
        entry = f"{_scalar_text(key)}: {_yaml_text(value)}"
        text = self.text
        end = self.offsets.offset(span.end_line, span.end_column)
        if text[end - 1 : end] == "}":  # a flow mapping
            at = self.offsets.position(end - 1)
            inserted = f", {entry}" if mapping else entry
            return Edit(path, value, inserted, Span(span.file, at[0], at[1], at[0], at[1]))
        children: list[YamlPath] = [(*parent, k) for k in mapping]
        keys = [self.doc.key_spans[c] for c in children if c in self.doc.key_spans]
        indent = " " * ((keys[0].column - 1) if keys else 0)
        line_start = self.offsets.offset(span.end_line, 1)
        if text[line_start:end].strip() == "" and span.end_line > span.line:
            at = (span.end_line, 1)
            return Edit(path, value, f"{indent}{entry}\n", Span(span.file, *at, *at))
        at = (span.end_line, span.end_column)
        return Edit(path, value, f"\n{indent}{entry}", Span(span.file, *at, *at))

    def _world_size(self, axis: str, value: Any) -> tuple[bool, Edit | None]:
        """Whether a new mesh size can be given, and the world_size edit it needs when
        the spec writes one."""
        parallel = _get(self.doc.data, ("parallel",))
        if not isinstance(parallel, dict) or "world_size" not in parallel:
            return True, None
        world = 1
        for name in MESH_AXES:
            size = value if name == axis else self._resolved(("parallel", name), 1)
            if not isinstance(size, int):
                return False, None
            world *= size
        edit = self._value_edit(("parallel", "world_size"), world)
        return edit is not None, edit

    def _resolved(self, path: YamlPath, default: Any) -> Any:
        raw = _get(self.doc.data, path)
        if raw is _MISSING:
            return default
        expression = reference(raw)
        return raw if expression is None else evaluate(expression, self.sizes)

    # -- trying ---------------------------------------------------------------------------

    def _works(self, item: Diagnostic, edits: tuple[Edit, ...]) -> bool:
        """The diagnostic is gone once `edits` are applied, and no error is new."""
        text, old_position = _apply(self.text, self.offsets, edits)
        overrides = list(self.overrides)
        for edit in edits:
            if edit.override is not None:
                overrides = [
                    o
                    for o in overrides
                    if o.partition("=")[0].strip() != edit.override and o != edit.replaces
                ]
                overrides.append(edit.text)
        outcome = self.check(text, overrides)
        before, errors_before = self.before, self.errors_before
        after: Counter[tuple[str, int]] = Counter()
        new_errors: list[Diagnostic] = []
        for found in outcome.diagnostics:
            line, column = old_position(found.span.line, found.span.column)
            moved = dataclasses.replace(
                found, span=Span(found.span.file, line, column, line, column + 1)
            )
            after[_key(moved)] += 1
            if found.severity is Severity.ERROR:
                if after[_key(moved)] > errors_before[_key(moved)]:
                    new_errors.append(moved)
        if after[_key(item)] >= before[_key(item)]:
            return False
        unseen = self.unchecked
        return all(unseen is not None and unseen.covers(d) for d in new_errors)


def _key(item: Diagnostic) -> tuple[str, int]:
    return (item.code, item.span.line)


# -- text -------------------------------------------------------------------------------


class _Offsets:
    """Between positions as YAML marks them (line, column from 1) and string offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [m.end() for m in LINE_BREAKS.finditer(text)]
        self.bom = 1 if text.startswith("\ufeff") else 0

    def offset(self, line: int, column: int) -> int:
        line = max(1, min(line, len(self.starts)))
        skip = self.bom if line == 1 else 0
        return min(len(self.text), self.starts[line - 1] + column - 1 + skip)

    def position(self, offset: int) -> tuple[int, int]:
        line = max(1, bisect.bisect_right(self.starts, offset))
        skip = self.bom if line == 1 else 0
        return line, offset - self.starts[line - 1] + 1 - skip


def _apply(
    text: str, offsets: _Offsets, edits: tuple[Edit, ...]
) -> tuple[str, Callable[[int, int], tuple[int, int]]]:
    """`text` with the file edits applied, and the old position of a new one."""
    pieces = sorted(
        (
            offsets.offset(e.span.line, e.span.column),
            offsets.offset(e.span.end_line, e.span.end_column),
            e.text,
        )
        for e in edits
        if e.span is not None
    )
    out: list[str] = []
    # (new start, new end, old start, old end) of each replaced piece
    moved: list[tuple[int, int, int, int]] = []
    at = 0
    for first, end, replacement in pieces:
        start = max(first, at)
        out.append(text[at:start])
        new_start = sum(map(len, out))
        out.append(replacement)
        moved.append((new_start, new_start + len(replacement), start, max(start, end)))
        at = max(start, end)
    out.append(text[at:])
    new_text = "".join(out)
    new_offsets = _Offsets(new_text)

    def old_position(line: int, column: int) -> tuple[int, int]:
        offset = new_offsets.offset(line, column)
        shift = 0
        for new_start, new_end, old_start, old_end in moved:
            if offset < new_start:
                break
            if offset < new_end:
                return offsets.position(old_start)
            shift = old_end - new_end
        return offsets.position(offset + shift)

    return new_text, old_position


_MISSING = object()


def _get(data: Any, path: YamlPath) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return _MISSING
    return data


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED = {"yes", "no", "true", "false", "on", "off", "null", "y", "n", "~"}


def _scalar_text(value: Any) -> str:
    """A scalar as YAML text that reads back as `value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" not in text:
            return text
        mantissa, exponent = text.split("e")
        mantissa += "" if "." in mantissa else ".0"
        return f"{mantissa}e{exponent if exponent[0] in '+-' else '+' + exponent}"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text, ensure_ascii=False)


def _yaml_text(value: Any) -> str:
    """A value as YAML text in flow style, which reads the same in any context."""
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{_scalar_text(k)}: {_yaml_text(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_text(v) for v in value) + "]"
    return _scalar_text(value)


def _invert(expression: str, name: str, value: Any, sizes: dict[str, Any]) -> int | None:
    """The value of size `name` for which `expression` is `value`, if one is."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None

    def f(n: int) -> int | None:
        return evaluate(expression, {**sizes, name: n})

    low, high = 1, 2**40
    first, last = f(low), f(high)
    if first is None or last is None or first == last:
        return None
    rising = first < last
    while low < high:
        middle = (low + high) // 2
        result = f(middle)
        if result is None:
            return None
        if (result < value) if rising else (result > value):
            low = middle + 1
        else:
            high = middle
    return low if f(low) == value else None
