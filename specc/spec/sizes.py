"""Named sizes: `${hidden}` and `${4 * hidden}` in a spec, and `--set hidden=64` overrides.

Zoo specs are written once and resized at build time, so their sizes live in a
top-level `sizes:` mapping and every other place refers to them. References are
resolved here, before the models validate the data; paths (and so source positions)
do not change, and a value that came from an override is remembered so that any
diagnostic about it can say so.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import operator
import re
from collections.abc import Sequence
from typing import Any

from specc.diagnostics import KEY, SET, Clause, Diagnostics, Help, Values
from specc.kinds.base import MAX_SIZE
from specc.source import Document, YamlPath

_REFERENCE = re.compile(r"\$\{(.*)\}\Z", re.DOTALL)
_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
}


class _BadExpression(Exception):
    pass


def resolve(
    document: Document, overrides: Sequence[str], diagnostics: Diagnostics
) -> tuple[Document, dict[str, int]]:
    """The document with size references replaced, and the overrides applied (name: value).

    References that cannot be resolved are marked refused in the returned document, so
    validation does not report them a second time. They are reported here, unless the
    cause is reported elsewhere: a `sizes:` that is no mapping, or a size that is no
    valid size (the schema reports those, at the size).
    """
    data = document.data
    written = data.get("sizes") if isinstance(data, dict) else None
    sizes, unsound = _readable_sizes(written, document)
    overridden = _apply_overrides(sizes, overrides, document, diagnostics)
    unsound |= {n for n in overridden if not 1 <= sizes[n] <= MAX_SIZE}
    if not isinstance(data, dict):
        return document, {}
    if isinstance(written, dict) or (written is None and overrides):
        # The schema sees the sizes as written, with the overrides applied.
        shown = dict(written) if isinstance(written, dict) else {}
        shown.update({name: sizes[name] for name in overridden})
        data = {**data, "sizes": shown}
    unresolved: set[YamlPath] = set()
    context = _Context(sizes, unsound, written is not None, document, diagnostics, unresolved)
    # A reference is a string that starts with `${`: one the text does not hold, nor can
    # spell with a backslash escape, cannot occur, and a long spec skips the walk.
    text = document.text
    referable = "${" in text or "\\" in text
    resolved = _walk(data, (), context) if referable else data
    _report_unknown(context)
    refused = document.refused | unresolved
    values = {name: sizes[name] for name in overridden}
    return dataclasses.replace(document, data=resolved, refused=refused), values


def _readable_sizes(written: Any, document: Document) -> tuple[dict[str, Any], set[str]]:
    """The sizes references may use, and the names of those that are no valid size.

    `sizes:` written as a list of one-key mappings (`- hidden: 64`) is read as the
    mapping it was meant to be, so the rest of the spec can still be checked; the schema
    reports the list itself.
    """
    if isinstance(written, dict):
        # `hidden = 64` is read as a key without a value; the schema says so.
        sizes = {_ASSIGNED.sub(r"\1", k): _assigned_value(k, v) for k, v in written.items()}
    elif isinstance(written, list) and all(isinstance(i, dict) and len(i) == 1 for i in written):
        sizes = {k: v for item in written for k, v in item.items()}
    else:
        sizes = {}
    unsound = {
        name
        for name, value in sizes.items()
        if type(value) is not int
        or not 1 <= value <= MAX_SIZE
        or document.is_refused(("sizes", name))
    }
    return sizes, unsound


_ASSIGNED = re.compile(r"^([A-Za-z_]\w*)\s*=\s*(\d+)$")


def _assigned_value(key: Any, value: Any) -> Any:
    match = _ASSIGNED.match(key) if isinstance(key, str) and value is None else None
    return int(match[2]) if match else value


@dataclasses.dataclass
class _Context:
    """What resolving the `${...}` references of one document knows and has found."""

    sizes: dict[str, Any]
    unsound: set[str]  # sizes the schema reports: references to them stay quiet
    has_sizes: bool  # the spec writes `sizes:` (perhaps not as a mapping)
    document: Document
    out: Diagnostics
    unresolved: set[YamlPath]
    used: set[str] = dataclasses.field(default_factory=set)  # size names references use
    # References to a size the spec does not have: (path, expression, the name).
    unknown: list[tuple[YamlPath, str, str]] = dataclasses.field(default_factory=list)


def _apply_overrides(
    sizes: dict[str, Any], overrides: Sequence[str], document: Document, out: Diagnostics
) -> dict[str, str]:
    applied: dict[str, str] = {}
    where = document.span(("sizes",), key=True) if "sizes" in document.data else document.span(())
    for text in overrides:
        name, equals, value = text.partition("=")
        name = name.strip()
        if not equals or not name:
            out.error(
                "E210",
                f"--set {text}: an override is written name=value",
                where,
                help="write it as --set <name>=<integer>",
            )
            continue
        if name not in sizes:
            out.error(
                "E210",
                f"--set {text}: the spec has no size `{name}`",
                where,
                help=_size_name_help(name, value, text, sizes),
            )
            continue
        try:
            sizes[name] = int(value.strip(), 10)
        except ValueError:
            out.error(
                "E210",
                f"--set {text}: `{value}` is not a whole number",
                where,
                help=f"write --set {name}=<integer>",
            )
            continue
        applied[name] = f"{name}={sizes[name]} from --set"
    return applied


def _size_name_help(name: str, value: str, text: str, sizes: dict[str, Any]) -> str | Help:
    """The sizes there are, and the override meant, when its value is a whole number."""
    known = f"sizes of this spec: {', '.join(sizes) or 'none'}"
    close = difflib.get_close_matches(name, list(sizes), n=1)
    number = value.strip()
    if not close or not (number.isascii() and number.isdigit()):
        return known
    meant = f"--set {close[0]}={int(number)}"
    return Help.of(
        Clause(
            f"did you mean `{{}}`? {known}",
            Values(("sizes", close[0]), (int(number),), action=SET, replaces=text, labels=(meant,)),
        ),
        otherwise=known,
    )


def _walk(value: Any, path: YamlPath, context: _Context) -> Any:
    if isinstance(value, dict):
        return {
            k: _walk(v, (*path, k), context) if path or k != "sizes" else v
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_walk(v, (*path, i), context) for i, v in enumerate(value)]
    match = _REFERENCE.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    expression = match.group(1).strip()
    try:
        tree = ast.parse(expression, mode="eval").body
        used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        context.used |= used
        if used & context.unsound or (context.has_sizes and not context.sizes and used):
            # The cause is `sizes:` itself, which the schema reports where it is.
            context.unresolved.add(path)
            return value
        unknown = sorted(used - set(context.sizes))
        if unknown:
            context.unknown.append((path, expression, unknown[0]))
            context.unresolved.add(path)
            return value
        result = _evaluate(tree, context.sizes)
    except (SyntaxError, _BadExpression, ZeroDivisionError) as error:
        known = ", ".join(context.sizes) or "none (add a `sizes:` mapping)"
        context.out.error(
            "E211",
            f"cannot resolve `${{{expression}}}`: {_reason(error)}",
            context.document.span(path),
            help=f"sizes: {known}; expressions may use + - * // and parentheses",
        )
        context.unresolved.add(path)
        return value
    return result


def _report_unknown(context: _Context) -> None:
    """References to sizes the spec does not have: each where it is, unless a size nothing
    uses is spelled like it, which is then the one mistake, reported at that size."""
    sizes, document, out = context.sizes, context.document, context.out
    unused = [name for name in sizes if name not in context.used]
    misspelled: dict[str, str] = {}
    for name in dict.fromkeys(name for _, _, name in context.unknown):
        close = difflib.get_close_matches(name, unused, n=1, cutoff=0.6)
        if (
            close
            and close[0] not in misspelled.values()
            and ("sizes", close[0]) in document.key_spans
        ):
            misspelled[name] = close[0]
    for wanted, written in misspelled.items():
        lines = sorted({document.span(p).line for p, _, n in context.unknown if n == wanted})
        where = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
        line_word = "line" if len(lines) == 1 else "lines"
        out.error(
            "E211",
            f"size `{written}` is used nowhere, but `{wanted}`, which the spec does not have, "
            f"is ({line_word} {where})",
            document.span(("sizes", written), key=True),
            help=Help.of(
                Clause("rename it `{}`", Values(("sizes", written), (wanted,), action=KEY)),
                otherwise=f"name it `{wanted}`, or refer to `{written}`",
            ),
        )
    known = ", ".join(sizes) or "none (add a `sizes:` mapping)"
    for path, expression, name in context.unknown:
        if name in misspelled:
            continue
        close = difflib.get_close_matches(name, list(sizes), n=1)
        rule = f"sizes: {known}; expressions may use + - * // and parentheses"
        meant = re.sub(rf"\b{re.escape(name)}\b", close[0], expression) if close else ""
        out.error(
            "E211",
            f"cannot resolve `${{{expression}}}`: no size named `{name}`",
            document.span(path),
            help=Help.of(
                Clause(
                    f"did you mean `{{}}`? {rule}",
                    Values(
                        path,
                        ("${" + meant + "}",) if close else (),
                        labels=("${" + meant + "}",) if close else (),
                    ),
                ),
                otherwise=rule,
            ),
        )


def references(expression: str) -> set[str] | None:
    """The size names a `${...}` expression uses; None if it is no expression."""
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return None
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def evaluate(expression: str, sizes: dict[str, Any]) -> int | None:
    """The value of a `${...}` expression with these sizes; None if it has none."""
    try:
        return _evaluate(ast.parse(expression, mode="eval").body, sizes)
    except (SyntaxError, _BadExpression, ZeroDivisionError, RecursionError):
        return None


def reference(text: Any) -> str | None:
    """The expression of a `${...}` reference, or None if `text` is no reference."""
    match = _REFERENCE.match(text) if isinstance(text, str) else None
    return match.group(1).strip() if match else None


def _evaluate(node: ast.expr, sizes: dict[str, Any]) -> int:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Name):
        value = sizes.get(node.id)
        if type(value) is not int:
            raise _BadExpression(
                f"no size named `{node.id}`"
                if value is None
                else f"size `{node.id}` is not an integer"
            )
        return value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        result: int = _OPERATORS[type(node.op)](
            _evaluate(node.left, sizes), _evaluate(node.right, sizes)
        )
        return result
    raise _BadExpression("only integers, size names, + - * // and parentheses are allowed")


def _reason(error: Exception) -> str:
    if isinstance(error, SyntaxError):
        return "it is not an expression"
    if isinstance(error, ZeroDivisionError):
        return "it divides by zero"
    return str(error)
