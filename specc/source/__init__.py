"""Stage 1: read a YAML spec into plain data, remembering where every node came from.

`compose` turns the text into PyYAML nodes with marks (libyaml where it reads the text
exactly as the pure-Python loader does, the pure loader elsewhere); `walk` converts the
nodes into data plus the span of every key and value, and refuses what a spec must not
hold (duplicate and non-string keys, object-constructing tags, hostile sizes). This
module reads the file and reports what the YAML loader refuses, where it is.
Nothing here knows what a valid spec looks like; that is `specc.spec`.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

import yaml

from specc.diagnostics import Diagnostics, Span
from specc.source.loaders import compose
from specc.source.walk import MAX_DEPTH, MAX_NODES, Spans, TooBig, Walker, YamlPath

__all__ = [
    "LINE_BREAKS",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "Document",
    "YamlPath",
    "collector_paused",
    "parse_spec_text",
    "read_text",
]

MAX_BYTES = 8 * 1024 * 1024
# The line breaks YAML counts, and so every position it reports.
LINE_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


@dataclass(frozen=True)
class Document:
    """A spec file as plain data plus the source position of each key and value."""

    file: str
    text: str
    data: Any
    value_spans: Mapping[YamlPath, Span] = field(repr=False)
    key_spans: Mapping[YamlPath, Span] = field(repr=False)
    # Paths whose value was refused (a forbidden tag, a duplicate key): already reported,
    # so later stages stay quiet about them instead of adding "found null".
    refused: frozenset[YamlPath] = frozenset()

    def is_refused(self, path: YamlPath) -> bool:
        return any(path[: len(r)] == r for r in self.refused)

    def span(self, path: YamlPath, *, key: bool = False) -> Span:
        """The span of `path`, or of its nearest ancestor that exists in the file."""
        if key and path in self.key_spans:
            return self.key_spans[path]
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.value_spans:
                return self.value_spans[path[:cut]]
        return Span.whole_file(self.file)

    def line(self, path: YamlPath) -> int:
        """The line of `path` (or of its nearest ancestor in the file), from 1."""
        spans = self.value_spans
        # Without a `Span` where it can: a plan asks for every layer's line.
        line = spans.line(path) if isinstance(spans, Spans) else None
        return self.span(path).line if line is None else line


def read_text(path: str, diagnostics: Diagnostics) -> str | None:
    """Read the spec file at `path` as text; on failure report why and return None."""
    whole = Span.whole_file(path)
    try:
        raw = FilePath(path).read_bytes()
    except FileNotFoundError:
        diagnostics.error("E107", f"no such file: {path}", whole)
        return None
    except OSError as exc:
        diagnostics.error("E107", f"cannot read {path}: {exc.strerror}", whole)
        return None
    if len(raw) > MAX_BYTES:
        diagnostics.error(
            "E103",
            f"spec is {len(raw):,} bytes; specc reads specs of at most {MAX_BYTES:,} bytes",
            whole,
            help="a spec describes a model, not its data; use `repeat` for long stacks",
        )
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        diagnostics.error("E107", f"{path} is not UTF-8 text (byte {exc.start})", whole)
        return None


def parse_spec_text(text: str, file: str, diagnostics: Diagnostics) -> Document | None:
    """Parse YAML `text` (shown to users as `file`) into a `Document`."""
    with collector_paused():
        return _parse(text, file, diagnostics)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block without Python's cyclic garbage collector.

    Composing and walking allocate a node graph of hundreds of thousands of objects and
    no garbage cycles (a recursive alias is collected afterwards), so the collector's
    passes over the growing graph find nothing; on issue 17's spec they took two thirds
    of the time libyaml needs. `specc.api` pauses it for the later stages too, for the
    same reason. Threads running meanwhile merely collect later.
    """
    if not gc.isenabled():  # the caller has turned it off: leave it so
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _parse(text: str, file: str, diagnostics: Diagnostics) -> Document | None:
    try:
        node = compose(text, MAX_DEPTH)
    except yaml.reader.ReaderError as exc:
        _report_forbidden_character(exc, text, file, diagnostics)
        return None
    except yaml.MarkedYAMLError as exc:
        _report_syntax_error(exc, text, file, diagnostics)
        return None
    except yaml.YAMLError as exc:
        diagnostics.error("E100", f"YAML syntax error: {exc}", Span.whole_file(file))
        return None
    except RecursionError:
        diagnostics.error(
            "E104", f"document nests deeper than {MAX_DEPTH} levels", Span.whole_file(file)
        )
        return None
    if node is None:
        diagnostics.error("E106", "the file holds no YAML document", Span.whole_file(file))
        return None
    walker = Walker(file, diagnostics, text)
    try:
        data = walker.convert(node, (), 0)
    except TooBig:
        return None
    return Document(
        file,
        text,
        data,
        Spans(file, walker.values),
        Spans(file, walker.keys),
        frozenset(walker.refused),
    )


_SYNTAX_HELP = {
    "could not find expected ':'": "a key needs a colon and a space after it: `key: value`",
    "found character '\\t' that cannot start any token": "indent with spaces; YAML forbids tabs",
    "mapping values are not allowed here": "quote a value that holds ': ', or fix the indent",
}


def _report_forbidden_character(
    exc: yaml.reader.ReaderError, text: str, file: str, diagnostics: Diagnostics
) -> None:
    """YAML allows no control characters (form feeds, NULs, ...) anywhere in a file."""
    breaks = list(LINE_BREAKS.finditer(text, 0, exc.position))
    line = len(breaks) + 1
    column = exc.position - (breaks[-1].end() if breaks else 0) + 1
    if not breaks and text.startswith("\ufeff"):
        column -= 1  # YAML's marks, which place every other diagnostic, skip a BOM
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    diagnostics.error(
        "E100",
        f"YAML syntax error: the file holds the control character U+{code:04X}, which "
        "YAML does not allow",
        Span(file, line, column, line, column + 1),
        help="delete it (editors often show it as ^L or a box)",
    )


def _report_syntax_error(
    exc: yaml.MarkedYAMLError, text: str, file: str, diagnostics: Diagnostics
) -> None:
    # Imported for a syntax error only: a sound spec is read without it (issue 17: a
    # cold start is mostly imports).
    from specc.source.slips import explain

    slip = explain(exc, text, file)
    if slip is not None:
        diagnostics.error("E100", slip.message, slip.span, slip.help)
        return
    # For an unfinished key PyYAML's problem mark is where it gave up (often the next
    # line); the context mark is the key itself, which is what the user must fix.
    simple_key = exc.context == "while scanning a simple key"
    opener = exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    help_ = _SYNTAX_HELP.get(problem)
    # What runs to the end of the file is best shown where it opened.
    at_end = "end of stream" in problem or "<stream end>" in problem
    bracket = _FLOW.get(exc.context or "")
    unclosed = opener is not None and (
        exc.context == "while scanning a quoted scalar" or (bracket is not None and at_end)
    )
    if unclosed and bracket:
        problem = f"the `{bracket[0]}` that opens here is never closed"
        help_ = f"close it with `{bracket[1]}`"
    elif unclosed:
        problem = "the quoted string that starts here is never closed"
        help_ = "end it with the quote character it starts with"
    elif bracket and opener is not None:
        help_ = (
            f"close the `{bracket[0]}` opened at {opener.line + 1}:{opener.column + 1} "
            f"with `{bracket[1]}`, and separate its items with `,`"
        )
    mark = (opener if simple_key or unclosed else None) or exc.problem_mark or opener
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    diagnostics.error(
        "E100",
        f"YAML syntax error: {problem}",
        Span(file, line, col, line, col + 1),
        help=help_,
    )


_FLOW = {"while parsing a flow mapping": "{}", "while parsing a flow sequence": "[]"}
