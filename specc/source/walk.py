"""Node graph to plain data, remembering where every key and value came from.

PyYAML's constructors throw positions away and happily build arbitrary objects, so the
walker converts the composed nodes itself:
  * it keeps the marks of every key and value, keyed by path (`("layers", 2, "split")`);
  * it rejects duplicate keys, non-string keys and tags that would construct objects;
  * it bounds the nodes visited (aliases included) and the nesting depth, so a hostile
    file cannot exhaust time or memory.

It visits every node of a spec once, so it stays lean: marks are kept as tuples and
become `Span`s only when asked for, and scalars are converted by the safe
constructor's own functions without its per-node bookkeeping.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from specc.diagnostics import TEXT, Clause, Diagnostics, Help, Span, Values

MAX_DEPTH = 64
MAX_NODES = 200_000

YamlPath = tuple[str | int, ...]
# The line breaks YAML counts.
_LINE_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
# A node's start and end as YAML marks them: line and column from 0.
Marks = tuple[int, int, int, int]

_TAG = "tag:yaml.org,2002:"
_STR, _SEQ, _MAP, _MERGE = (_TAG + t for t in ("str", "seq", "map", "merge"))
# Scalars are built by PyYAML's safe constructor; anything else is refused.
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null"))
# Dates and binary blobs are kept as the text the user wrote; the schema then rejects
# or accepts them as strings, which gives a clearer message than "datetime".
_TEXT_TAGS = frozenset(_TAG + t for t in ("timestamp", "binary"))
_KEY_TAGS = _SCALAR_TAGS | _TEXT_TAGS


class Spans(Mapping[YamlPath, Span]):
    """The span of each path in one file, built from its marks when looked up."""

    __slots__ = ("_file", "_marks")

    def __init__(self, file: str, marks: dict[YamlPath, Marks]) -> None:
        self._file = file
        self._marks = marks

    def __getitem__(self, path: YamlPath) -> Span:
        return _span(self._file, self._marks[path])

    def line(self, path: YamlPath) -> int | None:
        """The line `path` starts on, from 1, without building its span; None if the
        file has no such path."""
        marks = self._marks.get(path)
        return None if marks is None else marks[0] + 1

    def __contains__(self, path: object) -> bool:
        return path in self._marks

    def __iter__(self) -> Iterator[YamlPath]:
        return iter(self._marks)

    def __len__(self) -> int:
        return len(self._marks)

    def __repr__(self) -> str:
        return f"Spans({self._file!r}, {len(self._marks)} paths)"


class TooBig(Exception):
    """Stops the walk once a size bound has been reported."""


class Walker:
    """Converts one document; `values`, `keys` and `refused` hold what it found."""

    def __init__(self, file: str, diagnostics: Diagnostics, text: str = "") -> None:
        self.file = file
        self.text = text  # for the characters between nodes
        self._lines: list[str] | None = None
        self.diagnostics = diagnostics
        self.values: dict[YamlPath, Marks] = {}
        self.keys: dict[YamlPath, Marks] = {}
        # Paths whose value was refused (a forbidden tag, a duplicate key), already reported.
        self.refused: set[YamlPath] = set()
        self.nodes = 0
        # What SafeConstructor.construct_object dispatches to for each scalar tag,
        # without its per-node bookkeeping (recursion guard, cache of built objects).
        constructor = yaml.constructor.SafeConstructor()
        self._construct_int = constructor.construct_yaml_int
        self._construct: dict[str, Callable[[ScalarNode], Any]] = {
            _TAG + "int": self._integer,
            _TAG + "float": constructor.construct_yaml_float,
            _TAG + "bool": constructor.construct_yaml_bool,
            _TAG + "null": constructor.construct_yaml_null,
        }

    def convert(self, node: yaml.Node, path: YamlPath, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            self._too_big(node, depth)
        start, end = node.start_mark, node.end_mark
        self.values.setdefault(path, (start.line, start.column, end.line, end.column))
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if node.tag != _SEQ:  # a SequenceNode, the third kind
            return self._bad_tag(node, path)
        convert = self.convert
        return [convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]

    def _too_big(self, node: yaml.Node, depth: int) -> NoReturn:
        if self.nodes > MAX_NODES:
            self.diagnostics.error(
                "E104",
                f"document expands to more than {MAX_NODES:,} nodes (aliases included)",
                self._span(node),
                help="anchors and aliases that refer to each other multiply; write keys out",
            )
        else:
            self.diagnostics.error(
                "E104", f"document nests deeper than {MAX_DEPTH} levels", self._span(node)
            )
        raise TooBig

    def _mapping(self, node: MappingNode, path: YamlPath, depth: int) -> Any:
        if node.tag != _MAP:
            return self._bad_tag(node, path)
        result: dict[str, Any] = {}
        first_seen: dict[str, Marks] = {}
        keys, convert = self.keys, self.convert
        previous: tuple[str, yaml.Node] | None = None
        flow = node.flow_style  # a decimal comma splits a key only in `{...}`
        for key_node, value_node in node.value:
            start, end = key_node.start_mark, key_node.end_mark
            key_marks = (start.line, start.column, end.line, end.column)
            if (
                flow
                and previous is not None
                and self._decimal_comma(path, previous, key_node, value_node)
            ):
                continue
            if not isinstance(key_node, ScalarNode):
                self._error("E108", "a mapping key must be a plain string", key_marks)
                continue
            tag = key_node.tag
            if tag == _MERGE:
                self._error(
                    "E102",
                    "YAML merge keys (`<<`) are not supported in a spec",
                    key_marks,
                    help="write the keys out, or use `repeat` for repeated layers",
                )
                continue
            key = key_node.value if tag == _STR else self._scalar(key_node, (*path, "<key>"))
            if tag not in _KEY_TAGS:
                continue  # a refused tag, already reported
            if not isinstance(key, str):
                quoted = f'"{key_node.value}"'
                self._error(
                    "E108",
                    f"mapping key {key_node.value!r} is not a string",
                    key_marks,
                    help=Help.of(
                        Clause(
                            "quote it to make it a string: {}",
                            Values(
                                (*path, "<key>"),
                                (quoted,),
                                action=TEXT,
                                span=_span(self.file, key_marks),
                            ),
                        ),
                        otherwise="keys are names, written before the colon (`name: value`)",
                    ),
                )
                continue
            if key in first_seen:
                line, column = first_seen[key][:2]
                self._error(
                    "E101",
                    f"duplicate key `{key}` (first given at {line + 1}:{column + 1})",
                    key_marks,
                    help=f"YAML keeps only one `{key}:`; merge the two into one, or remove one"
                    if isinstance(value_node, MappingNode | SequenceNode)
                    else "YAML keeps only one of them; remove or rename one",
                )
                # Which one was meant is not known: later stages stay quiet about both.
                self.refused.add((*path, key))
                continue
            first_seen[key] = key_marks
            child = (*path, key)
            keys[child] = key_marks
            result[key] = convert(value_node, child, depth + 1)
            previous = (key, value_node)
        return result

    def _character(self, line: int, column: int) -> str:
        """The character at a position as YAML marks it (from 0; a BOM takes no column)."""
        if self._lines is None:
            self._lines = _LINE_BREAKS.split(self.text.removeprefix("\ufeff"))
        text = self._lines[line] if line < len(self._lines) else ""
        return text[column : column + 1]

    def _decimal_comma(
        self, path: YamlPath, previous: tuple[str, yaml.Node], key: yaml.Node, value: yaml.Node
    ) -> bool:
        """`{p: 0,1}`: in a flow mapping YAML reads `p: 0` and a key `1` without a value."""
        name, number = previous
        if not (
            isinstance(number, ScalarNode)
            and isinstance(key, ScalarNode)
            and isinstance(value, ScalarNode)
            and number.style is None
            and key.style is None
            and value.value == ""
            and re.fullmatch(r"[+-]?\d+", number.value)
            and re.fullmatch(r"\d[\w.+-]*", key.value)
            and number.end_mark.line == key.start_mark.line
            and number.end_mark.column + 1 == key.start_mark.column
            and self._character(number.end_mark.line, number.end_mark.column) == ","
        ):
            return False
        written = f"{number.value},{key.value}"
        meant = f"{number.value}.{key.value}"
        start, end = number.start_mark, key.end_mark
        span = Span(self.file, start.line + 1, start.column + 1, end.line + 1, end.column + 1)
        self.diagnostics.error(
            "E109",
            f"`{written}` has a decimal comma: in `{{...}}` YAML reads `{name}: "
            f"{number.value}` and then a key `{key.value}`",
            span,
            help=Help.of(
                Clause("write a decimal point: {}", Values((), (meant,), action=TEXT, span=span)),
                otherwise="write a decimal point",
            ),
        )
        self.refused.add((*path, name))
        return True

    def _scalar(self, node: yaml.Node, path: YamlPath) -> Any:
        tag = node.tag
        if tag == _STR or tag in _TEXT_TAGS:
            return node.value
        construct = self._construct.get(tag)
        if construct is None:
            return self._bad_tag(node, path)
        assert isinstance(node, ScalarNode)
        try:
            value = construct(node)
        except (yaml.constructor.ConstructorError, ValueError, IndexError, KeyError):
            # `!!int x`: a tag on text that is no such value. Kept as the text, the schema
            # then says what the key needs, as it does for any other wrong value.
            return node.value
        if isinstance(value, float) and not math.isfinite(value):
            return node.value  # .inf / .nan: let the schema reject them as text
        return value

    def _integer(self, node: ScalarNode) -> Any:
        text = node.value  # most are plain decimals: skip the general parser
        if text.isdigit() and text.isascii() and text[0] != "0":
            return int(text)
        return self._construct_int(node)

    def _bad_tag(self, node: yaml.Node, path: YamlPath) -> None:
        self.refused.add(path)
        tag = node.tag.replace(_TAG, "!!")
        self.diagnostics.error(
            "E102",
            f"YAML tag `{tag}` is not allowed in a spec",
            self._span(node),
            help="specs hold plain mappings, lists, strings and numbers; remove the tag",
        )

    def _span(self, node: yaml.Node) -> Span:
        return _span(self.file, _marks(node))

    def _error(self, code: str, message: str, marks: Marks, help: str | Help | None = None) -> None:
        self.diagnostics.error(code, message, _span(self.file, marks), help=help)


def _marks(node: yaml.Node) -> Marks:
    start, end = node.start_mark, node.end_mark
    return (start.line, start.column, end.line, end.column)


def _span(file: str, marks: Marks) -> Span:
    line, column, end_line, end_column = marks
    return Span(file, line + 1, column + 1, end_line + 1, end_column + 1)
