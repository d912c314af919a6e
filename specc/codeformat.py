"""Lay out generated calls the way `ruff format` would, so its check passes unchanged.

Lowering decides the text of every call the templates print; this module only
decides where its lines break: on one line when it fits, else the arguments on one
indented line, else one argument per line with a trailing comma (which ruff keeps).
"""

from __future__ import annotations

from collections.abc import Sequence

LINE_LENGTH = 88  # ruff's default


def call_lines(
    indent: int,
    head: str,
    arguments: Sequence[str],
    tail: str = ")",
    opener: str = "(",
    hug: bool = True,
) -> tuple[str, ...]:
    """`head(arguments)` (head ends before the bracket) at `indent` spaces.

    `opener` and `tail` let the same layout serve lists (`[`, `]`) and signatures.
    ruff puts a call's arguments on one indented line when they fit there (`hug`), but
    never a list literal's items: those go one per line.
    """
    pad, inner = " " * indent, " " * (indent + 4)
    one = f"{pad}{head}{opener}{', '.join(arguments)}{tail}"
    if len(one) <= LINE_LENGTH or not arguments:
        return (one,)
    hugged = f"{inner}{', '.join(arguments)}"
    if hug and len(hugged) <= LINE_LENGTH:
        return (f"{pad}{head}{opener}", hugged, f"{pad}{tail}")
    return (f"{pad}{head}{opener}", *(f"{inner}{a}," for a in arguments), f"{pad}{tail}")


def import_lines(module: str, names: Sequence[str]) -> tuple[str, ...]:
    """`from module import names`, sorted and wrapped as ruff's isort rules want them."""
    ordered = sorted(
        names, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n.lower(), n)
    )
    one = f"from {module} import {', '.join(ordered)}"
    if len(one) <= LINE_LENGTH:
        return (one,)
    return (f"from {module} import (", *(f"    {name}," for name in ordered), ")")


def comprehension_lines(indent: int, head: str, element: str, clause: str) -> tuple[str, ...]:
    """`head([element clause])`, a call whose one argument is a list comprehension.

    ruff keeps it on one line, else hugs the comprehension on one indented line, else
    breaks the comprehension itself: the element and the `for` clause on lines of
    their own inside the brackets.
    """
    pad, inner, deeper = " " * indent, " " * (indent + 4), " " * (indent + 8)
    comprehension = f"[{element} {clause}]"
    one = f"{pad}{head}({comprehension})"
    if len(one) <= LINE_LENGTH:
        return (one,)
    if len(inner) + len(comprehension) <= LINE_LENGTH:
        return (f"{pad}{head}(", f"{inner}{comprehension}", f"{pad})")
    return (f"{pad}{head}(", f"{inner}[", f"{deeper}{element}", f"{deeper}{clause}",
            f"{inner}]", f"{pad})")  # fmt: skip


def sum_lines(target: str, terms: Sequence[str]) -> tuple[str, ...]:
    """`target = a + b + c` at module level, parenthesised and split as ruff does."""
    one = f"{target} = {' + '.join(terms)}"
    if len(one) <= LINE_LENGTH:
        return (one,)
    inner = f"    {' + '.join(terms)}"
    if len(inner) <= LINE_LENGTH:
        return (f"{target} = (", inner, ")")
    return (f"{target} = (", f"    {terms[0]}", *(f"    + {t}" for t in terms[1:]), ")")
