"""Everyday slips behind PyYAML's syntax errors, said in plain words with their fix.

PyYAML reports where its parser gave up, in its own terms ("expected <block end>, but
found '?'"). For the slips people make every day the cause is plain from the text: a
key indented a space too little or too much, `-item` without a space, a `${...}` left
unquoted inside `[...]` or `{...}`, a second `key:` on a line. `explain` recognises
them and says what happened, where it happened (which may be a line above where the
parser stopped) and how to fix it, offering the fixed text (`Values`, action TEXT).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from specc.diagnostics import TEXT, Clause, Help, Span, Values

# The line breaks YAML counts.
LINE_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


@dataclass(frozen=True)
class Slip:
    """A syntax error explained: what to say, where, and the help."""

    message: str
    span: Span
    help: str | Help | None


def explain(exc: yaml.MarkedYAMLError, text: str, file: str) -> Slip | None:
    """The everyday slip behind `exc`, if it is one."""
    problem = exc.problem_mark
    if problem is None:
        return None
    lines = LINE_BREAKS.split(text)
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]  # YAML's columns do not count a byte-order mark
    source = _Source(file, lines)
    for finder in (_glued_dash, _unquoted_reference, _indented_less, _indented_more, _second_key):
        slip = finder(exc, source)
        if slip is not None:
            return slip
    return None


@dataclass(frozen=True)
class _Source:
    file: str
    lines: list[str]

    def line(self, number: int) -> str:
        """Line `number` (from 0), or "" past the end."""
        return self.lines[number] if 0 <= number < len(self.lines) else ""

    def span(self, line: int, column: int, end: int | None = None) -> Span:
        """A span on line `line` (from 0) from `column` (from 0) to `end`."""
        stop = column + 1 if end is None else end
        return Span(self.file, line + 1, column + 1, line + 1, stop + 1)


_GLUED = re.compile(r"( *)-([A-Za-z_][\w-]*)")


def _glued_dash(exc: yaml.MarkedYAMLError, source: _Source) -> Slip | None:
    """`-kind: relu`: without a space after it, `-` is no list item but part of a key."""
    assert exc.problem_mark is not None
    for number in range(exc.problem_mark.line + 1):
        match = _GLUED.match(source.line(number))
        if match is None:
            continue
        column = len(match[1])
        word = match[2]
        return Slip(
            f"YAML syntax error: `-{word}` is no list item: YAML needs a space after `-`",
            source.span(number, column, column + 1 + len(word)),
            _text_fix(f"write `- {word}`", "- ", source.span(number, column), label=f"- {word}"),
        )
    return None


def _text_fix(text: str, replacement: str, span: Span, *, label: str) -> Help:
    """A help offering `replacement` for the text of `span`; `text` says it in words."""
    return Help.of(
        Clause(
            text.replace(label, "{}"),
            Values((), (replacement,), action=TEXT, span=span, labels=(label,)),
        ),
        otherwise=text,
    )


def _unquoted_reference(exc: yaml.MarkedYAMLError, source: _Source) -> Slip | None:
    """`[8, ${seq}]`: inside `[...]` and `{...}` YAML reads `{` as a mapping."""
    mark = exc.problem_mark
    assert mark is not None
    line = source.line(mark.line)
    column = mark.column
    if not line[column : column + 1] == "{" or line[column - 1 : column] != "$":
        return None
    depth, end = 0, column
    while end < len(line):
        depth += {"{": 1, "}": -1}.get(line[end], 0)
        end += 1
        if depth == 0:
            break
    reference = line[column - 1 : end]
    inside = "`[...]`" if exc.context == "while parsing a flow sequence" else "`{...}`"
    quoted = f'"{reference}"'
    return Slip(
        f"YAML syntax error: `{reference}` inside {inside} must be quoted; unquoted, YAML "
        "reads its `{` as the start of a mapping",
        source.span(mark.line, column - 1, end),
        _text_fix(f"write {quoted}", quoted, source.span(mark.line, column - 1, end), label=quoted),
    )


_KEY = re.compile(r"( *)([^\s:#][^:#]*?)\s*:(\s|$)")


def _indented_less(exc: yaml.MarkedYAMLError, source: _Source) -> Slip | None:
    """A key indented less than the key above it (but more than their parent's)."""
    problem = exc.problem_mark
    if problem is None or "<block mapping start>" not in (exc.problem or ""):
        return None
    match = _KEY.match(source.line(problem.line))
    above = _content_above(source, problem.line)
    previous = _ITEM_KEY.match(source.line(above)) if above >= 0 else None
    if match is None or previous is None or len(match[1]) >= len(previous[1]):
        return None
    return _reindent(source, problem.line, match, len(previous[1]), "less")


# A key, perhaps after list item dashes: group 1 is everything before the key.
_ITEM_KEY = re.compile(r"((?: *- +)* *)[^\s:#-][^:#]*?\s*:(\s|$)")


def _content_above(source: _Source, number: int) -> int:
    """The nearest line above `number` that is neither blank nor a comment (-1: none)."""
    above = number - 1
    while above >= 0 and source.line(above).strip()[:1] in ("", "#"):
        above -= 1
    return above


def _indented_more(exc: yaml.MarkedYAMLError, source: _Source) -> Slip | None:
    """A key indented more than the key above it: YAML reads it as that key's value."""
    problem = exc.problem_mark
    if exc.problem != "mapping values are not allowed here" or problem is None:
        return None
    match = _KEY.match(source.line(problem.line))
    if match is None or problem.column != len(match[0].rstrip()) - 1:
        return None
    above = _content_above(source, problem.line)
    previous = _KEY.match(source.line(above)) if above >= 0 else None
    if previous is None or len(match[1]) <= len(previous[1]):
        return None
    if not source.line(above)[previous.end() :].strip():  # `key:` with its value below
        return None
    return _reindent(source, problem.line, match, len(previous[1]), "more", previous[2])


def _reindent(
    source: _Source,
    number: int,
    match: re.Match[str],
    column: int,
    how: str,
    above: str | None = None,
) -> Slip:
    key = match[2]
    spaces = len(match[1])
    counted = f"{column} space{'' if column == 1 else 's'}"
    if how == "less":
        message = (
            f"YAML syntax error: `{key}` is indented less than the key above it ({spaces} "
            f"space{'' if spaces == 1 else 's'}, not {column})"
        )
    else:
        message = (
            f"YAML syntax error: `{key}` is indented more than `{above}` above it, so YAML "
            f"reads it as part of `{above}`'s value"
        )
    span = source.span(number, 0, spaces)
    if column:
        text, label = f"indent `{key}` like the keys beside it: {{}}", counted
    else:
        text, label = f"start `{key}` at the left margin{{}}", ""
    return Slip(
        message,
        source.span(number, spaces, spaces + len(key)),
        Help.of(
            Clause(text, Values((), (" " * column,), action=TEXT, span=span, labels=(label,))),
            otherwise=text.replace("{}", label),
        ),
    )


def _second_key(exc: yaml.MarkedYAMLError, source: _Source) -> Slip | None:
    """`in_features: 16 out_features: 8`: two keys on one line."""
    problem = exc.problem_mark
    if exc.problem != "mapping values are not allowed here" or problem is None:
        return None
    line = source.line(problem.line)
    first = _KEY.match(line)
    if first is None or first.end() >= problem.column:
        return None
    words = line[first.end() : problem.column].split()
    if len(words) < 2 or "[" in line or "{" in line:
        return None
    second = words[-1]
    start = line.rindex(second, 0, problem.column)
    return Slip(
        f"YAML syntax error: `{second}:` follows the value of `{first[2]}` on the same line",
        source.span(problem.line, start, start + len(second)),
        f"put `{second}` on a line of its own, indented like `{first[2]}`",
    )
