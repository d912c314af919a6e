"""Stage 1: read a YAML spec into plain data, remembering where every node came from.

PyYAML's constructors throw positions away and happily build arbitrary objects, so
specc composes the node graph itself and converts it with a small walker that
  * keeps the span of every key and value, keyed by its path (`("layers", 2, "split")`),
  * rejects duplicate keys, non-string keys and tags that would construct objects,
  * bounds size, nesting depth and alias expansion, so a hostile file cannot exhaust
    time or memory.
Nothing here knows what a valid spec looks like; that is `specc.spec`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

import yaml

from specc.diagnostics import Diagnostics, Span

MAX_BYTES = 8 * 1024 * 1024
# The line breaks YAML counts, and so every position it reports.
LINE_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
MAX_DEPTH = 64
MAX_NODES = 200_000

YamlPath = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
# Scalars are built by PyYAML's safe constructor; anything else is refused.
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}
# Dates and binary blobs are kept as the text the user wrote; the schema then rejects
# or accepts them as strings, which gives a clearer message than "datetime".
_TEXT_TAGS = {_TAG + t for t in ("timestamp", "binary")}


@dataclass(frozen=True)
class Document:
    """A spec file as plain data plus the source position of each key and value."""

    file: str
    text: str
    data: Any
    value_spans: dict[YamlPath, Span] = field(repr=False)
    key_spans: dict[YamlPath, Span] = field(repr=False)
    # Paths whose value was refused (a forbidden tag): already reported, so later
    # stages stay quiet about them instead of adding "found null".
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
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        _report_forbidden_character(exc, text, file, diagnostics)
        return None
    try:
        node = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        _report_forbidden_character(exc, text, file, diagnostics)
        return None
    except yaml.MarkedYAMLError as exc:
        _report_syntax_error(exc, file, diagnostics)
        return None
    except yaml.YAMLError as exc:
        diagnostics.error("E100", f"YAML syntax error: {exc}", Span.whole_file(file))
        return None
    except RecursionError:
        diagnostics.error(
            "E104", f"document nests deeper than {MAX_DEPTH} levels", Span.whole_file(file)
        )
        return None
    finally:
        loader.dispose()
    if node is None:
        diagnostics.error("E106", "the file holds no YAML document", Span.whole_file(file))
        return None
    walker = _Walker(file, diagnostics)
    try:
        data = walker.convert(node, (), 0)
    except _TooBig:
        return None
    return Document(
        file, text, data, walker.value_spans, walker.key_spans, frozenset(walker.refused)
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


def _report_syntax_error(exc: yaml.MarkedYAMLError, file: str, diagnostics: Diagnostics) -> None:
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


class _TooBig(Exception):
    """Stops the walk once a size bound has been reported."""


class _Walker:
    def __init__(self, file: str, diagnostics: Diagnostics) -> None:
        self.file = file
        self.diagnostics = diagnostics
        self.value_spans: dict[YamlPath, Span] = {}
        self.key_spans: dict[YamlPath, Span] = {}
        self.nodes = 0
        self.refused: set[YamlPath] = set()
        self.path: YamlPath = ()
        self.constructor = yaml.constructor.SafeConstructor()

    def span(self, node: yaml.Node) -> Span:
        start, end = node.start_mark, node.end_mark
        return Span(self.file, start.line + 1, start.column + 1, end.line + 1, end.column + 1)

    def convert(self, node: yaml.Node, path: YamlPath, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.diagnostics.error(
                "E104",
                f"document expands to more than {MAX_NODES:,} nodes (aliases included)",
                self.span(node),
                help="anchors and aliases that refer to each other multiply; write keys out",
            )
            raise _TooBig
        if depth > MAX_DEPTH:
            self.diagnostics.error(
                "E104", f"document nests deeper than {MAX_DEPTH} levels", self.span(node)
            )
            raise _TooBig
        self.value_spans.setdefault(path, self.span(node))
        self.path = path
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _TAG + "seq":
                return self._bad_tag(node)
            return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: YamlPath, depth: int) -> Any:
        if node.tag != _TAG + "map":
            return self._bad_tag(node)
        result: dict[str, Any] = {}
        first_seen: dict[str, Span] = {}
        for key_node, value_node in node.value:
            key_span = self.span(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                self.diagnostics.error("E108", "a mapping key must be a plain string", key_span)
                continue
            if key_node.tag == _TAG + "merge":
                self.diagnostics.error(
                    "E102",
                    "YAML merge keys (`<<`) are not supported in a spec",
                    key_span,
                    help="write the keys out, or use `repeat` for repeated layers",
                )
                continue
            self.path = (*path, "<key>")
            key = self._scalar(key_node)
            if key_node.tag not in _SCALAR_TAGS | _TEXT_TAGS:
                continue  # a refused tag, already reported
            if not isinstance(key, str):
                self.diagnostics.error(
                    "E108",
                    f"mapping key {key_node.value!r} is not a string",
                    key_span,
                    help=f'quote it to make it a string: "{key_node.value}"',
                )
                continue
            if key in first_seen:
                seen = first_seen[key]
                self.diagnostics.error(
                    "E101",
                    f"duplicate key `{key}` (first given at {seen.line}:{seen.column})",
                    key_span,
                    help="YAML keeps only one of them; remove or rename one",
                )
                continue
            first_seen[key] = key_span
            key_path: YamlPath = (*path, key)
            self.key_spans[key_path] = key_span
            result[key] = self.convert(value_node, key_path, depth + 1)
        return result

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag in _TEXT_TAGS:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            return self._bad_tag(node)
        value = self.constructor.construct_object(node)
        if isinstance(value, float) and not math.isfinite(value):
            return node.value  # .inf / .nan: let the schema reject them as text
        return value

    def _bad_tag(self, node: yaml.Node) -> None:
        self.refused.add(self.path)
        tag = node.tag.replace(_TAG, "!!")
        self.diagnostics.error(
            "E102",
            f"YAML tag `{tag}` is not allowed in a spec",
            self.span(node),
            help="specs hold plain mappings, lists, strings and numbers; remove the tag",
        )
