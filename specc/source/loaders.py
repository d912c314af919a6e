"""YAML text to a node graph with marks: libyaml where it reads the text exactly as
PyYAML's pure-Python loader does, the pure loader everywhere else.

The pure loader is the reference: the positions and YAML errors specc reports come from
it, and tests/invalid/ pins them byte for byte. libyaml composes the same graph about
eight times faster (issue 17) but is another scanner, and differential fuzzing of the
two (tests/test_source_loaders.py keeps the check) found where they part:

* marks: when the file does not end in a line break, libyaml ends the last line itself,
  so what runs to the end of the file ends a line lower; an empty value in a flow
  collection (`{a: }`) sits at the next token instead of right after the colon; a
  byte-order mark after the first character takes a column;
* acceptance: libyaml takes tabs where the pure loader refuses them (after `:` and `-`,
  in flow collections and plain scalars, before comments), a `?` inside a plain scalar
  in a flow collection (`{name: a?b}`), and a comment glued to a block scalar header
  (`|#`) or to a `%YAML` directive (`%YAML 1.1#`); it ends a tag at `,` in a flow
  collection (`[!t, 2]`: tag `!t,` for the pure loader);
* depth: libyaml's composer recurses in C, out of reach of Python's recursion limit, so
  100,000 nested brackets crash the process.

So libyaml only gets texts free of those features, and whatever error it raises, a
node deeper than the walker accepts or an empty value in a flow collection hands the
text to the pure loader, which then answers as it always has. Carriage returns, NEL
and U+2028/U+2029 line breaks, non-ASCII text and a leading byte-order mark read alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.nodes import ScalarNode

_resolve: Callable[[Any, type, str | None, tuple[bool, bool]], str] = yaml.resolver.Resolver.resolve
# What libyaml may read: the last character is "\n", and the text holds none of
#  * characters YAML forbids (the pure loader reports where), tabs, surrogates, and a
#    byte-order mark (except as the first character);
#  * `?` and `!` (flow plain scalars, tags), wherever they are: a comment or a quoted
#    string holding one costs the pure loader's time, never a different answer;
#  * a block scalar header followed directly by `#`;
#  * a directive other than a plain `%YAML 1.x` line (`%YAML 1.1#`).
_BLOCK_HEADER_COMMENT = "[|>][-+0-9]*#"
_DIRECTIVE = "(?<![^\n\r\x85\u2028\u2029\ufeff])%(?!YAML 1\\.[0-9]+ *[\n\r\x85\u2028\u2029])"
# The first class lists what YAML's printable characters (less the tab and the
# byte-order mark) leave out, rather than negating them: the negated class, with its
# ranges up to U+10FFFF, took `re` ten times as long to compile, 3 ms of every start.
_PURE_ONLY = re.compile(
    "[\x00-\t\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufeff\ufffe\uffff]"
    f"|[?!]|{_BLOCK_HEADER_COMMENT}|{_DIRECTIVE}"
)
# The same for ASCII text, one feature at a time: each scan runs at C speed, where the
# alternation above tries every branch at every character (26 ms on a 550 KB spec,
# against 1.5).
_ASCII_FORBIDDEN = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_SOMETIMES = (("#", re.compile(_BLOCK_HEADER_COMMENT)), ("%", re.compile(_DIRECTIVE)))


def libyaml_reads_alike(text: str) -> bool:
    """Whether libyaml may compose `text`: it has none of the features the loaders read apart."""
    if not text.endswith("\n"):
        return False
    if text.isascii():
        return (
            _ASCII_FORBIDDEN.search(text) is None
            and "?" not in text
            and "!" not in text
            and all(
                mark not in text or found.search(text) is None for mark, found in _ASCII_SOMETIMES
            )
        )
    start = 1 if text.startswith("\ufeff") else 0
    return _PURE_ONLY.search(text, start) is None


class Unsure(Exception):
    """libyaml met something the pure loader may read differently, or refused the text."""


if yaml.__with_libyaml__:

    class _LibyamlLoader(yaml.CSafeLoader):
        """libyaml's composer, stopped where its graph could differ from the pure loader's.

        The composer calls `descend_resolver` before it composes each node, `resolve` for
        each node without an explicit tag, and `ascend_resolver` once the node is done.
        """

        def __init__(self, text: str, max_depth: int) -> None:
            super().__init__(text)
            self._max_depth = max_depth
            self._depth = -1  # the root is at depth 0, as in the walker
            self._parent: yaml.Node | None = None
            # The tag of a plain scalar depends on its text alone, and a spec repeats a
            # few words and numbers thousands of times: resolve each text once.
            self._plain_tags: dict[str, str] = {}

        def descend_resolver(self, parent: yaml.Node | None, index: object) -> None:
            self._depth += 1
            if self._depth > self._max_depth:
                raise Unsure  # before the C recursion goes deeper
            self._parent = parent

        def ascend_resolver(self) -> None:
            self._depth -= 1

        def resolve(self, kind: type, value: str | None, implicit: tuple[bool, bool]) -> str:
            if kind is not ScalarNode or not implicit[0]:
                return _resolve(self, kind, value, implicit)
            if value == "":
                if self._parent is not None and getattr(self._parent, "flow_style", False):
                    raise Unsure  # an empty value in a flow collection: placed elsewhere
                return _resolve(self, kind, value, implicit)
            if value is None:
                return _resolve(self, kind, value, implicit)
            tag = self._plain_tags.get(value)
            if tag is None:
                tag = _resolve(self, kind, value, implicit)
                self._plain_tags[value] = tag
            return tag

else:  # pragma: no cover - PyYAML built without libyaml
    _LibyamlLoader = None  # type: ignore[assignment,misc]

# Whether `compose` may use libyaml at all; tests switch it off to read with the
# reference loader alone.
use_libyaml = _LibyamlLoader is not None


def compose(text: str, max_depth: int) -> yaml.Node | None:
    """The node graph of the single document in `text`; None if the text holds none.

    Nodes deeper than `max_depth` (the root is at 0) are read only by the pure loader.

    Raises:
        yaml.YAMLError, RecursionError: as the pure loader does for this text; libyaml's
            own errors never escape.
    """
    if use_libyaml:
        try:
            return compose_libyaml(text, max_depth)
        except Unsure:
            pass
    return compose_pure(text)


def compose_libyaml(text: str, max_depth: int) -> yaml.Node | None:
    """The node graph as libyaml composes it, where it agrees with the pure loader's.

    Raises:
        Unsure: the text or its graph has a feature the loaders read apart, a node lies
            deeper than `max_depth`, libyaml refused the text, or there is no libyaml.
    """
    if _LibyamlLoader is None or not libyaml_reads_alike(text):
        raise Unsure
    loader = _LibyamlLoader(text, max_depth)
    try:
        return loader.get_single_node()
    except yaml.YAMLError as exc:
        raise Unsure from exc
    finally:
        loader.dispose()


def compose_pure(text: str) -> yaml.Node | None:
    """The node graph as PyYAML's pure-Python loader composes it: the reference."""
    loader = yaml.SafeLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()
