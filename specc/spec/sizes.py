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

from specc.diagnostics import Diagnostics, Span
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
) -> tuple[Document, dict[Span, str]]:
    """The document with size references replaced, and the spans fed by overrides.

    References that cannot be resolved are reported and marked refused in the returned
    document, so validation does not report them a second time.
    """
    data = document.data
    sizes = data.get("sizes") if isinstance(data, dict) else None
    if not isinstance(sizes, dict):
        sizes = {}
    sizes = dict(sizes)
    overridden = _apply_overrides(sizes, overrides, document, diagnostics)
    if not isinstance(data, dict):
        return document, {}
    data = {**data, "sizes": sizes} if "sizes" in data or overrides else data
    origins: dict[Span, str] = {}
    for name, text in overridden.items():
        origins[document.span(("sizes", name))] = text
    unresolved: set[YamlPath] = set()
    resolved = _walk(data, (), sizes, overridden, document, diagnostics, origins, unresolved)
    refused = document.refused | unresolved
    return dataclasses.replace(document, data=resolved, refused=refused), origins


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
                help="for example: --set hidden=64",
            )
            continue
        if name not in sizes:
            close = difflib.get_close_matches(name, list(sizes), n=1)
            known = ", ".join(sizes) or "none"
            hint = f"did you mean `{close[0]}`? " if close else ""
            out.error(
                "E210",
                f"--set {text}: the spec has no size `{name}`",
                where,
                help=f"{hint}sizes of this spec: {known}",
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


def _walk(
    value: Any,
    path: YamlPath,
    sizes: dict[str, Any],
    overridden: dict[str, str],
    document: Document,
    out: Diagnostics,
    origins: dict[Span, str],
    unresolved: set[YamlPath],
) -> Any:
    if isinstance(value, dict):
        return {
            k: _walk(v, (*path, k), sizes, overridden, document, out, origins, unresolved)
            if path or k != "sizes"
            else v
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _walk(v, (*path, i), sizes, overridden, document, out, origins, unresolved)
            for i, v in enumerate(value)
        ]
    match = _REFERENCE.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    span = document.span(path)
    expression = match.group(1).strip()
    try:
        tree = ast.parse(expression, mode="eval").body
        result = _evaluate(tree, sizes)
    except (SyntaxError, _BadExpression, ZeroDivisionError) as error:
        known = ", ".join(sizes) or "none (add a `sizes:` mapping)"
        out.error(
            "E211",
            f"cannot resolve `${{{expression}}}`: {_reason(error)}",
            span,
            help=f"sizes: {known}; expressions may use + - * // and parentheses",
        )
        unresolved.add(path)
        return value
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    notes = [overridden[name] for name in sorted(used) if name in overridden]
    if notes:
        origins[span] = ", ".join(notes)
    return result


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
