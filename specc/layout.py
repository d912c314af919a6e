"""Write the plan's expressions and statements as Python text, laid out as `ruff format` would.

Rendering is the only user of this module: lowering decides what the generated code
says (`specc.plan`'s `Call`, `Assign`, `ImportFrom`), this module decides where its
lines break, and the templates decide where it goes. A statement stays on one line when
it fits; a call breaks inside its brackets, its arguments on one indented line when they
fit there, else one per line with a trailing comma (which ruff keeps); a list literal
always goes one item per line; a sum is parenthesised. Comments, which ruff never
rewraps, are wrapped here so that no generated line is longer than ruff's limit.

specc writes the layout itself instead of running ruff on its output so that the
compiler needs nothing beyond pydantic, PyYAML and Jinja2, and its output does not
depend on which ruff a user has; the tests run ruff on the goldens and on random specs
to keep the two in agreement.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from specc.plan import (
    Assign,
    Call,
    Comprehension,
    DictOf,
    Expr,
    ImportFrom,
    ListOf,
    ModuleClass,
    Ref,
    Repeated,
    Subscript,
    Sum,
    TupleOf,
)

LINE_LENGTH = 88  # ruff's default
# A comment text that textwrap would leave as it is, if it fits on the line.
_ONE_LINE = re.compile("[^\t\n\r\x0b\x0c]+")


def expression(value: Expr) -> str:
    """`value` on one line."""
    # One writer per type, found by the exact type: a package of ten thousand layers
    # writes a few hundred thousand values (issue 17).
    writer = _WRITERS.get(type(value))
    if writer is None:  # a subclass (an enum of str or int): its nearest base's writer
        found = (_WRITERS.get(base) for base in type(value).__mro__)
        writer = next((w for w in found if w is not None), None)
        if writer is None:
            raise TypeError(f"cannot write {type(value).__name__} as Python")
    return writer(value)


def _call(value: Call) -> str:
    return f"{value.function}({', '.join(_arguments(value))})"


def _tuple(value: TupleOf) -> str:
    items = [expression(item) for item in value.items]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _comprehension(value: Comprehension) -> str:
    element, clause = _comprehension_parts(value)
    return f"[{element} {clause}]"


_WRITERS: dict[type, Callable[[Any], str]] = {
    bool: repr,
    type(None): repr,
    int: repr,
    float: repr,
    # Double quotes, as ruff writes them; JSON's escapes are all valid in Python.
    str: json.dumps,
    Ref: lambda value: value.name,
    Subscript: lambda value: f"{value.value.name}[{expression(value.index)}]",
    Call: _call,
    ListOf: lambda value: "[" + ", ".join(expression(item) for item in value.items) + "]",
    TupleOf: _tuple,
    DictOf: lambda value: (
        "{" + ", ".join(f"{expression(k)}: {expression(v)}" for k, v in value.items) + "}"
    ),
    Repeated: lambda value: f"[{expression(value.item)}] * {value.times}",
    Sum: lambda value: " + ".join(expression(term) for term in value.terms),
    Comprehension: _comprehension,
}


def statement(assignment: Assign | None, indent: int = 0) -> str:
    """`target = value` at `indent` spaces, broken over lines as ruff would."""
    if assignment is None:
        return ""
    return "\n".join(_assign_lines(assignment, indent))


def signature(cls: ModuleClass, indent: int = 4) -> str:
    """`def forward(self, x: flow.Tensor, mask: flow.Tensor | None = None) -> flow.Tensor:`."""
    # Annotated parameters are written as names: they never break inside.
    typed = [("", Ref("self"))]
    for name in cls.forward_parameters:
        optional = name in cls.optional
        annotation = "flow.Tensor | None = None" if optional else "flow.Tensor"
        typed.append(("", Ref(f"{name}: {annotation}")))
    returns = "flow.Tensor" if len(cls.returns) == 1 else "tuple[flow.Tensor, ...]"
    opener, closer = "def forward(", f") -> {returns}:"
    one = " " * indent + opener + ", ".join(expression(v) for _, v in typed) + closer
    if len(one) <= LINE_LENGTH:
        return one
    return "\n".join(_bracketed(indent, opener, typed, closer, hug=True))


def imports(item: ImportFrom | None) -> str:
    """`from module import names`, sorted and wrapped as ruff's isort rules want them."""
    if item is None:
        return ""
    ordered = sorted(
        item.names,
        key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n.lower(), n),
    )
    one = f"from {item.module} import {', '.join(ordered)}"
    if len(one) <= LINE_LENGTH:
        return one
    return "\n".join((f"from {item.module} import (", *(f"    {n}," for n in ordered), ")"))


def comment(text: str, indent: int = 0) -> str:
    """`# text` at `indent` spaces, wrapped to the line length; continuations indented."""
    pad = " " * indent
    line = f"{pad}# {text}"
    if len(line) <= LINE_LENGTH and text == text.strip() and _ONE_LINE.fullmatch(text):
        return line  # what textwrap makes of it, in a fraction of its time
    lines = textwrap.wrap(
        text,
        width=LINE_LENGTH,
        initial_indent=pad + "# ",
        subsequent_indent=pad + "#   ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join(lines) if lines else pad + "#"


# -- how each statement breaks -----------------------------------------------------------


def _assign_lines(assignment: Assign, indent: int) -> list[str]:
    pad = " " * indent
    head = f"{assignment.target} = "
    value = assignment.value
    one = pad + head + expression(value)
    if len(one) <= LINE_LENGTH:
        return [one]
    if isinstance(value, Sum):
        return _sum(indent, head, [expression(t) for t in value.terms])
    if isinstance(value, str):
        # In parentheses, and cut at spaces into implicitly joined pieces where even that
        # does not fit: ruff keeps pieces that would not fit on one line joined.
        inner = f"{pad}    "
        pieces = _string_pieces(value, LINE_LENGTH - len(inner) - 2)
        return [f"{pad}{head}(", *(inner + expression(piece) for piece in pieces), f"{pad})"]
    return _lines(value, indent, head, "")


def _string_pieces(text: str, width: int) -> list[str]:
    """`text` cut after spaces into pieces of at most `width` characters where it can be."""
    pieces = [""]
    words = text.split(" ")
    for index, word in enumerate(words):
        candidate = f"{pieces[-1]} {word}" if pieces[-1] else word
        # A piece that is not the last keeps the space after it: count it.
        spaced = candidate if index == len(words) - 1 else candidate + " "
        if len(json.dumps(spaced)) - 2 <= width or not pieces[-1]:
            pieces[-1] = candidate
        else:
            pieces[-1] += " "
            pieces.append(word)
    return pieces


def _lines(value: Expr, indent: int, head: str, tail: str) -> list[str]:
    """`value` at `indent`, `head` before it and `tail` after: one line if it fits, else
    broken inside its outermost brackets, the parts laid out the same way."""
    pad = " " * indent
    one = pad + head + expression(value) + tail
    if len(one) <= LINE_LENGTH:
        return [one]
    if isinstance(value, Call):
        if len(value.args) == 1 and not value.kwargs and isinstance(value.args[0], Comprehension):
            return _comprehension_call(indent, head + value.function, value.args[0], tail)
        parts: list[tuple[str, Expr]] = [("", a) for a in value.args]
        parts += [(f"{key}=", v) for key, v in value.kwargs]
        return _bracketed(indent, head + value.function + "(", parts, ")" + tail, hug=True)
    if isinstance(value, ListOf | TupleOf):
        opener, closer = ("[", "]") if isinstance(value, ListOf) else ("(", ")")
        parts = [("", item) for item in value.items]
        return _bracketed(indent, head + opener, parts, closer + tail, hug=False)
    if isinstance(value, DictOf):
        entries = [(f"{expression(key)}: ", item) for key, item in value.items]
        return _bracketed(indent, head + "{", entries, "}" + tail, hug=False)
    return [one]


def _arguments(call: Call) -> list[str]:
    return [expression(a) for a in call.args] + [f"{k}={expression(v)}" for k, v in call.kwargs]


def _bracketed(
    indent: int, opener: str, parts: Sequence[tuple[str, Expr]], closer: str, *, hug: bool
) -> list[str]:
    """`opener parts closer` broken over lines at `indent` spaces.

    ruff puts a call's arguments on one indented line when they fit there (`hug`), but
    never a collection's items: those go one per line, with a trailing comma, each laid
    out in turn where it does not fit.
    """
    pad, inner = " " * indent, " " * (indent + 4)
    texts = [prefix + expression(value) for prefix, value in parts]
    if not texts:
        return [pad + opener + closer]
    hugged = inner + ", ".join(texts)
    if hug and len(hugged) <= LINE_LENGTH:
        return [pad + opener, hugged, pad + closer]
    lines = [pad + opener]
    for prefix, value in parts:
        lines += _lines(value, indent + 4, prefix, ",")
    return [*lines, pad + closer]


def _comprehension_parts(value: Comprehension) -> tuple[str, str]:
    clause = f"for {value.variable} in {expression(value.iterable)}"
    return expression(value.element), clause


def _comprehension_call(indent: int, head: str, value: Comprehension, tail: str) -> list[str]:
    """`head([element clause])`, a call whose one argument is a list comprehension.

    ruff keeps it on one line, else hugs the comprehension on one indented line, else
    breaks the comprehension itself: the element and the `for` clause on lines of
    their own inside the brackets.
    """
    element, clause = _comprehension_parts(value)
    pad, inner, deeper = " " * indent, " " * (indent + 4), " " * (indent + 8)
    comprehension = f"[{element} {clause}]"
    if len(inner) + len(comprehension) <= LINE_LENGTH:
        return [f"{pad}{head}(", f"{inner}{comprehension}", f"{pad}){tail}"]
    return [f"{pad}{head}(", f"{inner}[", f"{deeper}{element}", f"{deeper}{clause}",
            f"{inner}]", f"{pad}){tail}"]  # fmt: skip


def _sum(indent: int, head: str, terms: Sequence[str]) -> list[str]:
    """`target = a + b + c`, parenthesised and split as ruff does."""
    pad = " " * indent
    inner = f"{pad}    {' + '.join(terms)}"
    if len(inner) <= LINE_LENGTH:
        return [f"{pad}{head}(", inner, f"{pad})"]
    return [
        f"{pad}{head}(",
        f"{pad}    {terms[0]}",
        *(f"{pad}    + {t}" for t in terms[1:]),
        f"{pad})",
    ]


FILTERS = {
    "expression": expression,
    "statement": statement,
    "signature": signature,
    "imports": imports,
    "comment": comment,
}
