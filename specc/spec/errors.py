"""Turn pydantic's validation errors into located specc diagnostics.

pydantic reports a `loc` such as `("layers", 2, "linear", "out_feature")`: the third
element is the discriminator tag, not a YAML key. `_locate` walks the models alongside
the loc to drop such tags, find the YAML path, and learn which model the key belongs to
(for "did you mean" and for listing the valid keys).
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from specc import kinds, names
from specc.diagnostics import Diagnostics
from specc.source import Document, YamlPath
from specc.spec.models import LAYER_KINDS

_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_RANGE_WORDS = {
    "greater_than_equal": "at least {ge}",
    "greater_than": "greater than {gt}",
    "less_than_equal": "at most {le}",
    "less_than": "less than {lt}",
}


def report_validation_error(
    error: ValidationError, root: type[BaseModel], document: Document, diagnostics: Diagnostics
) -> None:
    for item in error.errors(include_url=False):
        path, model = _locate(root, tuple(item["loc"]))
        if not document.is_refused(path):
            _report_one(item, path, model, document, diagnostics)


def _report_one(
    item: Any, path: YamlPath, model: type[BaseModel] | None, document: Document, out: Diagnostics
) -> None:
    kind = item["type"]
    ctx = item.get("ctx") or {}
    where = _describe(path)
    found = _show(item.get("input"))
    if kind == "extra_forbidden":
        key = str(path[-1])
        valid = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        help_ = f"did you mean `{close[0]}`?" if close else None
        if valid:
            listing = "valid keys: " + ", ".join(valid)
            help_ = f"{help_} ({listing})" if help_ else listing
        out.error(
            "E200",
            f"unknown key `{key}` in {_describe(path[:-1])}",
            document.span(path, key=True),
            help_,
        )
    elif kind == "missing":
        key = str(path[-1])
        out.error("E201", f"{_describe(path[:-1])} is missing `{key}`", document.span(path[:-1]))
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        _report_kind(item, path, document, out)
    elif kind == "literal_error":
        choices: list[str] = re.findall(r"'([^']*)'", ctx.get("expected", "")) or [
            str(ctx.get("expected", ""))
        ]
        expected = ", ".join(choices)
        if path == ("specc",):
            out.error(
                "E206",
                f"spec format version {found} is not supported",
                document.span(path),
                f"this specc reads format version {expected}; write `specc: {expected}`",
            )
        else:
            given = item.get("input")
            likely = _closest(str(given), choices)
            hint = f"did you mean `{likely}`? " if likely else ""
            if isinstance(given, bool):
                hint = "YAML reads yes/no/on/off as true/false; quote the word; " + hint
            out.error(
                "E203",
                f"{where} is {found}, which is not one of the allowed values",
                document.span(path),
                f"{hint}use one of: {expected}",
            )
    elif kind in _RANGE_WORDS:
        bound = _RANGE_WORDS[kind].format(**ctx)
        out.error("E204", f"{where} must be {bound}, found {found}", document.span(path))
    elif kind in ("too_short", "too_long"):
        length = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        limit = "at least" if kind == "too_short" else "at most"
        items = "item" if length == 1 else "items"
        out.error("E209", f"{where} must hold {limit} {length} {items}", document.span(path))
    elif kind in _TYPE_WORDS:
        out.error(
            "E202",
            f"{where} must be {_TYPE_WORDS[kind]}, found {found}",
            document.span(path),
            _type_help(kind, item.get("input")),
        )
    else:
        out.error("E202", f"{where}: {item['msg']}", document.span(path))


def _report_kind(item: Any, path: YamlPath, document: Document, out: Diagnostics) -> None:
    """A layer whose `kind` is missing or unknown; name the kinds, and the likely one."""
    kind = item["type"]
    ctx = item.get("ctx") or {}
    where = _describe(path)
    tags = ", ".join(LAYER_KINDS)
    given = item.get("input")
    if kind == "union_tag_not_found":
        keys = list(given) if isinstance(given, dict) else []
        named = [k for k in keys if k.strip().lower() in LAYER_KINDS]
        hint = f"write `kind: {named[0].strip().lower()}` " if named else ""
        hint += "with the layer's settings beside it; " if named else ""
        out.error(
            "E201",
            f"{where} is missing `kind`",
            document.span(path),
            f"{hint}valid kinds: {tags}",
        )
    else:
        raw = given.get("kind") if isinstance(given, dict) else None
        shown = names.shown(raw) if isinstance(raw, str) else _show(raw)
        tag = str(ctx.get("tag"))
        close = _closest(tag, LAYER_KINDS)
        hint = f"did you mean `{close}`? " if close else ""
        out.error(
            "E205",
            f"unknown layer kind {shown} in {where}",
            document.span((*path, "kind")),
            f"{hint}valid kinds: {tags}",
        )


def _closest(text: str, choices: Sequence[str]) -> str | None:
    """The choice a typo most likely meant; case differences first, then synonyms."""
    for choice in choices:
        if choice.lower() == text.lower():
            return choice
    synonym = kinds.SYNONYMS.get(text.strip().lower().replace("-", "_").replace(" ", "_"))
    if synonym in choices:
        return synonym
    close = difflib.get_close_matches(text.lower(), list(choices), n=1, cutoff=0.5)
    return close[0] if close else None


def _type_help(kind: str, value: Any) -> str | None:
    if kind in ("dict_type", "model_type", "model_attributes_type") and isinstance(value, str):
        if value.strip().lower() in LAYER_KINDS:
            return f"a layer is a mapping: write `- kind: {value.strip().lower()}`"
        if re.fullmatch(r"[A-Za-z_]+:\S.*", value):
            key, _, rest = value.partition(":")
            return f"put a space after the colon: `{key}: {rest}`"
    if kind[:3] == "int" and isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value):
        number = float(value)
        if number.is_integer():
            return f"YAML reads `{value}` as text; write the whole number {int(number)}"
    if kind[:3] in ("int", "flo") and isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value):
        return (
            f"YAML reads `{value}` as text; write the mantissa with a dot and the exponent "
            f"with a sign, e.g. 1.0e-5"
        )
    if kind[:3] in ("int", "flo") and isinstance(value, str) and _is_number(value):
        return f"write the number without quotes: {value.strip()}"
    if kind.startswith("int") and isinstance(value, float) and value.is_integer():
        return f"write a whole number: {int(value)}"
    if kind.startswith("int") and isinstance(value, bool):
        return "sizes are whole numbers, not true/false"
    return None


_YAML11_EXPONENT = re.compile(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(path: YamlPath) -> str:
    """`layers[2].out_features` style, or `the spec` for the top level."""
    if not path:
        return "the spec"
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return f"`{text}`"


def _locate(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[YamlPath, type[BaseModel] | None]:
    """Walk `loc` through the models; return the YAML path and the model owning its last key."""
    path: list[str | int] = []
    annotation: Any = root
    owner: type[BaseModel] | None = root
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner = annotation
            field = annotation.model_fields.get(str(part))
            path.append(part)
            annotation = field.annotation if field else None
        elif typing.get_origin(annotation) is list and isinstance(part, int):
            path.append(part)
            annotation = typing.get_args(annotation)[0]
        elif _is_union(annotation):
            tagged = _tagged_member(annotation, part)
            if tagged is not None:
                annotation = tagged  # a discriminator tag: not part of the YAML path
            else:
                path.append(part)
                annotation = None
        else:
            path.append(part)
            annotation = None
    return tuple(path), owner


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if _is_union(annotation):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _tagged_member(annotation: Any, tag: Any) -> type[BaseModel] | None:
    for candidate in typing.get_args(annotation):
        member = _unwrap(candidate)
        if isinstance(member, type) and issubclass(member, BaseModel):
            kind = member.model_fields.get("kind")
            if kind is not None and tag in typing.get_args(kind.annotation):
                return member
    return None
