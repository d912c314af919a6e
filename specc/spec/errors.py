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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from specc import kinds, names
from specc.diagnostics import KEY, TEXT, Clause, Diagnostics, Help, Values, show_value
from specc.source import Document, YamlPath
from specc.spec.models import LAYER_KINDS, Spec

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


# What other frameworks call a key specc spells differently, for "did you mean".
KEY_SYNONYMS = {
    "in_features": ("input_size", "in_dim", "in_size", "in_channels", "inputs", "d_in"),
    "out_features": ("output_size", "out_dim", "out_size", "out_channels", "outputs", "d_out"),
    "hidden": ("hidden_size", "d_model", "n_embd", "embed_dim", "dim", "width"),
    "heads": ("num_heads", "n_head", "n_heads", "num_attention_heads", "nhead"),
    "kv_heads": ("num_key_value_heads", "n_kv_heads", "num_kv_heads"),
    "ffn": ("intermediate_size", "ffn_dim", "d_ff", "dim_feedforward", "mlp_dim", "n_inner"),
    "vocab_size": ("n_vocab", "vocab", "num_embeddings", "vocabulary"),
    "max_positions": ("max_position_embeddings", "n_positions", "n_ctx", "max_len"),
    "eps": ("epsilon", "layer_norm_eps", "norm_eps", "layer_norm_epsilon"),
    "p": ("prob", "rate", "dropout", "drop", "probability", "dropout_prob"),
    "times": ("repeat", "count", "n", "num_layers", "n_layer", "layers_count"),
    "kind": ("type", "layer", "op", "class", "module"),
    "tensor": ("tp", "tensor_parallel", "tensor_parallel_size", "model_parallel"),
    "data": ("dp", "data_parallel", "data_parallel_size"),
    "pipeline": ("pp", "pipeline_parallel", "pipeline_parallel_size", "stages"),
}
_KEY_SYNONYM = {s: key for key, names in KEY_SYNONYMS.items() for s in names}


@dataclass(frozen=True)
class _Error:
    """One of pydantic's errors, at its path in the document, with the model it lies in."""

    item: Any
    path: YamlPath
    model: type[BaseModel] | None

    @property
    def kind(self) -> str:
        return str(self.item["type"])


def report_validation_error(
    error: ValidationError, root: type[BaseModel], document: Document, diagnostics: Diagnostics
) -> list[YamlPath]:
    """Report pydantic's errors, each at its place; return the path of every one of them.

    A consequence is folded into its cause, so that the first error is the one to fix: a
    required key that is missing because it is misspelled (or indented under another
    key) is reported once, at the key as written.
    """
    errors = []
    for item in error.errors(include_url=False):
        branches: list[tuple[YamlPath, Any]] = []
        path, model = _locate(root, tuple(item["loc"]), branches=branches)
        # A value of `str | TensorSource` fails as each; report what it is written as.
        if any(not _written_as(m, _value_at(document.data, p)) for p, m in branches):
            continue
        errors.append(_Error(item, path, model))
    folded = _fold(errors, document)
    for index, error_ in enumerate(errors):
        if index in folded:
            report = folded[index]
            if report is not None:
                report(diagnostics)
        elif not document.is_refused(error_.path):
            _report_one(error_.item, error_.path, error_.model, document, diagnostics)
    return [e.path for e in errors]


_Report = Callable[[Diagnostics], None]


def _fold(errors: list[_Error], document: Document) -> dict[int, _Report | None]:
    """Pair each missing key with the unknown key that is its cause.

    Returns, by error index, what to report instead of it (None: nothing, it is folded).
    """
    replaced: dict[int, _Report | None] = {}
    unknown = {i: e for i, e in enumerate(errors) if e.kind == "extra_forbidden"}
    missing = [(i, e) for i, e in enumerate(errors) if e.kind == "missing"]
    for index, error in enumerate(errors):
        if error.kind == "union_tag_not_found":
            missing.append((index, _Error(error.item, (*error.path, "kind"), error.model)))
    for index, error in missing:
        mapping, key = error.path[:-1], str(error.path[-1])
        if document.is_refused(error.path):
            continue
        written = _keys_of(error, document)
        siblings = [i for i, u in unknown.items() if u.path[:-1] == mapping]
        if error.kind == "union_tag_not_found":  # pydantic lists no unknown keys of such a layer
            siblings = []
        cause = _misspelling(key, siblings, unknown, written, len(missing))
        if cause is not None and isinstance(cause, int):
            replaced[cause] = _misspelled(unknown.pop(cause), key, mapping, document)
            replaced.setdefault(index, None)
        elif cause is not None:
            replaced[index] = _misspelled(
                _Error({}, (*mapping, cause), None), key, mapping, document
            )
        elif (nested := _indented_under(key, mapping, unknown)) is not None:
            replaced[nested] = _misplaced(unknown.pop(nested), key, mapping, document)
            replaced.setdefault(index, None)
    return replaced


def _keys_of(error: _Error, document: Document) -> list[str]:
    """The keys written in a layer pydantic could not tell the kind of."""
    if error.kind != "union_tag_not_found":
        return []
    given = error.item.get("input")
    if not isinstance(given, dict):
        return []
    known = {"name", "stage", "layers"}
    return [k for k in given if isinstance(k, str) and k not in known]


def _misspelling(
    key: str, siblings: list[int], unknown: dict[int, _Error], written: list[str], missing: int
) -> int | str | None:
    """Which unknown key (by index), or which written key of a kindless layer, means `key`."""
    spelled = {i: str(unknown[i].path[-1]) for i in siblings}
    spelled_keys: dict[int | str, str] = {i: text for i, text in spelled.items()}
    spelled_keys.update({k: k for k in written})
    if key == "kind":
        # A key some kind has (select_token's `index`) is that kind's, not a slip for `kind`.
        spelled_keys = {c: t for c, t in spelled_keys.items() if t not in _LAYER_KEYS}
        spelled = {i: t for i, t in spelled.items() if t not in _LAYER_KEYS}
    for candidate, text in spelled_keys.items():
        if _normal(text) == _normal(key) or _KEY_SYNONYM.get(_normal(text)) == key:
            return candidate
    close = difflib.get_close_matches(key, list(spelled_keys.values()), n=1, cutoff=0.6)
    if close:
        return next(c for c, text in spelled_keys.items() if text == close[0])
    if len(spelled) == 1 and missing == 1 and not written:
        return next(iter(spelled))  # one key missing, one unknown: the one is the other
    return None


_LAYER_KEYS = frozenset(key for kind in kinds.KINDS for key in kind.model.model_fields)


def _value_at(data: Any, path: YamlPath) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _normal(key: str) -> str:
    return key.strip().lower().replace("-", "_").replace(" ", "_")


def _indented_under(key: str, mapping: YamlPath, unknown: dict[int, _Error]) -> int | None:
    """An unknown key spelled like the missing one, in a mapping nested in its own."""
    for index, error in unknown.items():
        path = error.path
        if path[-1] == key and len(path) > len(mapping) + 1 and path[: len(mapping)] == mapping:
            return index
    return None


def _misspelled(error: _Error, key: str, mapping: YamlPath, document: Document) -> _Report:
    written = str(error.path[-1])
    where = _describe(mapping)
    if _glued_colon(written) is not None:
        return lambda out: _report_glued_colon(error.path, document, out)
    similar = (
        _normal(written) == _normal(key)
        or difflib.SequenceMatcher(None, written, key).ratio() >= 0.6
    )
    question = "did you mean" if similar or _KEY_SYNONYM.get(_normal(written)) else "is it"
    message = f"unknown key `{written}` in {where}; {question} the missing `{key}`?"
    help_ = Help.of(
        Clause("rename it `{}`", Values(error.path, (key,), action=KEY)),
        otherwise=f"{where} needs `{key}`",
    )

    def report(out: Diagnostics) -> None:
        out.error("E200", message, document.span(error.path, key=True), help_)

    return report


def _misplaced(error: _Error, key: str, mapping: YamlPath, document: Document) -> _Report:
    path = error.path
    owner = _describe(mapping)
    under = _describe(path[:-1])
    message = (
        f"unknown key `{key}` in {under}: it is the missing `{key}` of {owner}, indented "
        f"under {under}"
    )
    help_ = f"move `{key}:` out of {under}, to where {owner}'s keys start"
    if not mapping:
        help_ = f"move `{key}:` out of {under}, to the left margin"

    def report(out: Diagnostics) -> None:
        out.error("E200", message, document.span(path, key=True), help_)

    return report


def _report_one(
    item: Any, path: YamlPath, model: type[BaseModel] | None, document: Document, out: Diagnostics
) -> None:
    kind = item["type"]
    ctx = item.get("ctx") or {}
    where = _describe(path)
    found = _show(item.get("input"))
    if kind == "extra_forbidden":
        _report_unknown_key(item, path, model, document, out)
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
                Help.of(
                    Clause(
                        f"this specc reads format version {expected}; write `specc: {{}}`",
                        Values(path, (1,)),
                    ),
                    otherwise=f"this specc reads format version {expected}",
                ),
            )
        else:
            given = item.get("input")
            likely = _closest(str(given), choices)
            hint = ""
            if isinstance(given, bool):
                hint = "YAML reads yes/no/on/off as true/false; quote the word; "
            rule = f"use one of: {expected}"
            help_: str | Help = hint + rule
            if likely:
                help_ = Help.of(
                    Clause(hint + "did you mean `{}`? " + rule, Values(path, (likely,))),
                    otherwise=hint + rule,
                )
            out.error(
                "E203",
                f"{where} is {found}, which is not one of the allowed values",
                document.span(path),
                help_,
            )
    elif kind in _RANGE_WORDS:
        bound = _RANGE_WORDS[kind].format(**ctx)
        out.error("E204", f"{where} must be {bound}, found {found}", document.span(path))
    elif kind in ("too_short", "too_long"):
        length = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        limit = "at least" if kind == "too_short" else "at most"
        items = "item" if length == 1 else "items"
        out.error("E209", f"{where} must hold {limit} {length} {items}", document.span(path))
    elif kind in _TYPE_WORDS and item.get("input") is None and _glued_colon(str(path[-1])):
        _report_glued_colon(path, document, out)  # `sizes: {hidden = 64}`: a key, no value
    elif kind in _TYPE_WORDS:
        out.error(
            "E202",
            f"{where} must be {_TYPE_WORDS[kind]}, found {found}",
            document.span(path),
            _type_help(kind, item.get("input"), path, document),
        )
    else:
        out.error("E202", f"{where}: {item['msg']}", document.span(path))


def _home(item: Any, path: YamlPath, document: Document) -> YamlPath | None:
    """The mapping above the one holding unknown key `path[-1]` whose key it is, and which
    does not have it, if one is: a key indented under the key before it."""
    chain: list[tuple[YamlPath, type[BaseModel]]] = []
    _locate(Spec, tuple(item["loc"]), chain)
    key = str(path[-1])
    for mapping, model in reversed(chain[:-1]):
        if len(mapping) < len(path) - 1 and key in model.model_fields:
            return None if (*mapping, key) in document.key_spans else mapping
    return None


def _glued_colon(key: str) -> tuple[str, str] | None:
    """`kind:relu` (a key and its value without the space YAML needs after the colon), or
    `kind = relu` (written with `=`): read as one key, without a value."""
    match = re.fullmatch(r"([A-Za-z_]\w*):(\S.*)", key) or re.fullmatch(
        r"([A-Za-z_]\w*)\s*=\s*(\S.*)", key
    )
    return None if match is None else (match[1], match[2])


def _report_glued_colon(path: YamlPath, document: Document, out: Diagnostics) -> None:
    written = str(path[-1])
    glued = _glued_colon(written)
    assert glued is not None
    meant = f"{glued[0]}: {glued[1]}"
    span = document.span(path, key=True)
    why = "YAML needs a space after the colon of a key"
    if "=" in written and ":" not in written:
        why = "a key and its value are separated by `: `, not `=`"
    out.error(
        "E200" if path[:1] != ("sizes",) else "E202",
        f"unknown key `{written}` in {_describe(path[:-1])}: {why}"
        if path[:1] != ("sizes",)
        else f"{_describe(path[:-1])} has a key `{written}` without a value: {why}",
        span,
        Help.of(
            Clause("write `{}`", Values(path, (meant,), action=TEXT, span=span)),
            otherwise=f"write `{meant}`",
        ),
    )


def _report_unknown_key(
    item: Any, path: YamlPath, model: type[BaseModel] | None, document: Document, out: Diagnostics
) -> None:
    """E200: a key the mapping does not have; a glued colon, a key of a mapping above it
    (indented under the key before it), or a misspelling."""
    key = str(path[-1])
    if _glued_colon(key) is not None:
        _report_glued_colon(path, document, out)
        return
    home = _home(item, path, document)
    if home is not None:
        under = _describe(path[:-1])
        to = "to the left margin" if not home else f"to where {_describe(home)}'s keys start"
        out.error(
            "E200",
            f"unknown key `{key}` in {under}: it is a key of {_describe(home)}, indented under "
            f"{under}",
            document.span(path, key=True),
            f"move `{key}:` out of {under}, {to}",
        )
        return
    valid = sorted(model.model_fields) if model else []
    close = _closest_key(key, valid)
    listing = "valid keys: " + ", ".join(valid) if valid else None
    help_: str | Help | None = listing
    if close:
        shown = f" ({listing})" if listing else ""
        help_ = Help.of(
            Clause("did you mean `{}`?" + shown, Values(path, (close,), action=KEY)),
            otherwise=listing,
        )
    out.error(
        "E200",
        f"unknown key `{key}` in {_describe(path[:-1])}",
        document.span(path, key=True),
        help_,
    )


def _closest_key(key: str, valid: Sequence[str]) -> str | None:
    """The valid key an unknown one most likely means: spelling, then other frameworks' words."""
    for choice in valid:
        if _normal(choice) == _normal(key):
            return choice
    synonym = _KEY_SYNONYM.get(_normal(key))
    if synonym in valid:
        return synonym
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return close[0] if close else None


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
        missing: str | Help = f"{hint}valid kinds: {tags}"
        fits = [] if named else kinds.fitting(keys)
        if 0 < len(fits) <= _KINDS_OFFERED:
            offered = Values(
                (*path, "kind"),
                tuple(fits),
                separator=" or ",
                labels=tuple(f"`kind: {kind}`" for kind in fits),
            )
            missing = Help.of(
                Clause(f"from its keys: add {{}}; valid kinds: {tags}", offered),
                otherwise=f"valid kinds: {tags}",
            )
        out.error("E201", f"{where} is missing `kind`", document.span(path), missing)
    else:
        raw = given.get("kind") if isinstance(given, dict) else None
        shown = names.shown(raw) if isinstance(raw, str) else _show(raw)
        tag = str(ctx.get("tag"))
        close = _closest(tag, LAYER_KINDS)
        listing = f"valid kinds: {tags}"
        help_: str | Help = listing
        if close:
            help_ = Help.of(
                Clause(f"did you mean `{{}}`? {listing}", Values((*path, "kind"), (close,))),
                otherwise=listing,
            )
        out.error(
            "E205",
            f"unknown layer kind {shown} in {where}",
            document.span((*path, "kind")),
            help_,
        )


# A forgotten `kind` is suggested from the layer's keys when they fit this many kinds
# at most; keys that many kinds have (`hidden`) say too little.
_KINDS_OFFERED = 3


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


def _type_help(kind: str, value: Any, path: YamlPath, document: Document) -> str | Help | None:
    mapping = kind in ("dict_type", "model_type", "model_attributes_type")
    number = kind[:3] in ("int", "flo")
    if mapping and path == ("sizes",):
        return _sizes_help(value)
    if mapping and isinstance(value, str):
        if value.strip().lower() in LAYER_KINDS:
            word = value.strip().lower()
            return Help.of(
                Clause(
                    "a layer is a mapping: write `- {}`",
                    Values(path, ({"kind": word},), labels=(f"kind: {word}",)),
                ),
                otherwise=f"a layer is a mapping: `- kind: {word}` and the keys of a {word}",
            )
        if match := re.fullmatch(r"([A-Za-z_]\w*)\s*=\s*(\S.*)", value):
            meant = f"{match[1]}: {match[2]}"
            return Help.of(
                Clause(
                    "a key and its value are separated by `: `; write `{}`",
                    Values(path, (meant,), action=TEXT, span=document.span(path)),
                ),
                otherwise=f"a key and its value are separated by `: `; write `{meant}`",
            )
        if re.fullmatch(r"[A-Za-z_]+:\S.*", value):
            key, _, rest = value.partition(":")
            return Help.of(
                Clause(
                    "put a space after the colon: `{}`",
                    Values(path, (f"{key}: {rest}",), action=TEXT, span=document.span(path)),
                ),
                otherwise="put a space after the colon",
            )
    if number and isinstance(value, str):
        return _number_help(kind, value.strip(), path, document)
    if kind == "list_type" and isinstance(value, str):
        items = re.fullmatch(r"[\[(]?\s*(\d+(?:\s*,\s*\d+)+)\s*[\])]?", value)
        if items:
            numbers = [int(n) for n in re.split(r"\s*,\s*", items[1])]
            return _offer("write the list in square brackets: {}", path, numbers)
    if kind == "list_type" and isinstance(value, dict):
        glued = [k for k in value if isinstance(k, str) and re.fullmatch(r"-[A-Za-z_]\w*", k)]
        first: YamlPath = (*path, glued[0]) if glued else ()
        if glued and first in document.key_spans:
            span = document.key_spans[first]
            meant = f"- {glued[0][1:]}"
            return Help.of(
                Clause(
                    "a list item starts with `- `, a space after the dash: write `{}`",
                    Values(path, (meant,), action=TEXT, span=span),
                ),
                otherwise="a list item starts with `- `, a space after the dash",
            )
        return "a list's items start with `- ` (or write `[a, b]`)"
    if kind.startswith("int") and isinstance(value, float) and value.is_integer():
        return _offer("write a whole number: {}", path, int(value))
    if kind.startswith("int") and isinstance(value, bool):
        return "sizes are whole numbers, not true/false"
    return None


def _offer(text: str, path: YamlPath, value: Any, *, label: str | None = None) -> Help:
    """A help offering one value at `path`; without the clause if the value does not work."""
    labels = None if label is None else (label,)
    return Help.of(Clause(text, Values(path, (value,), labels=labels)))


def _number_help(kind: str, text: str, path: YamlPath, document: Document) -> str | Help | None:
    """A number YAML read as text: an exponent YAML 1.1 does not take, a decimal comma,
    quotes, a `$name` meant as a reference."""
    integer = kind.startswith("int")
    if _YAML11_EXPONENT.fullmatch(text):
        number = float(text)
        if integer and number.is_integer():
            return _offer(
                f"YAML reads `{text}` as text; write the whole number {{}}", path, int(number)
            )
        mantissa, _, exponent = text.lower().partition("e")
        mantissa = mantissa if "." in mantissa else mantissa + ".0"
        exponent = exponent if exponent[0] in "+-" else "+" + exponent
        fixed = f"{mantissa}e{exponent}"
        return Help.of(
            Clause(
                f"YAML reads `{text}` as text; write the mantissa with a dot and the exponent "
                "with a sign: {}",
                Values(path, (fixed,), action=TEXT, span=document.span(path)),
            ),
            otherwise=f"YAML reads `{text}` as text; write the mantissa with a dot and the "
            "exponent with a sign, as in 1.0e-5",
        )
    if integer and re.fullmatch(r"\d{1,3}(,\d{3})+", text):
        whole = int(text.replace(",", ""))
        return _offer("write the number without thousands separators: {}", path, whole)
    if re.fullmatch(r"[+-]?\d+,\d+", text):
        fixed = text.replace(",", ".")
        value = float(fixed)
        if integer:
            return f"write a whole number; `{text}` has a decimal comma"
        return _offer(f"`{text}` has a decimal comma; write a decimal point: {{}}", path, value)
    if re.fullmatch(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", text) and not text.startswith("${"):
        name = text.strip("${}")
        reference = "${" + name + "}"
        return _offer("a size is referred to with braces: `{}`", path, reference, label=reference)
    if _is_number(text):
        number = float(text)
        shown: int | float = int(number) if integer and number.is_integer() else number
        if integer and not number.is_integer():
            return None
        return _offer("write the number without quotes: {}", path, shown)
    return None


def _sizes_help(value: Any) -> str | Help:
    """`sizes:` is a mapping of names to numbers."""
    if isinstance(value, list) and all(isinstance(i, dict) and len(i) == 1 for i in value):
        mapping = {k: v for item in value for k, v in item.items()}
        shown = ", ".join(f"{k}: {show_value(v)}" for k, v in mapping.items())
        return Help.of(
            Clause(
                "write the sizes as a mapping, without `-`: `sizes: {}`",
                Values(("sizes",), (mapping,), labels=("{" + shown + "}",)),
            ),
            otherwise="write the sizes as a mapping, without `-`",
        )
    return "`sizes:` is a mapping of names to sizes, as in `sizes: {hidden: ..., heads: ...}`"


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


def _locate(
    root: type[BaseModel],
    loc: tuple[Any, ...],
    chain: list[tuple[YamlPath, type[BaseModel]]] | None = None,
    branches: list[tuple[YamlPath, Any]] | None = None,
) -> tuple[YamlPath, type[BaseModel] | None]:
    """Walk `loc` through the models; return the YAML path and the model owning its last key.

    `chain`, if given, receives each mapping on the way with its model; `branches` each
    member of a union (without a tag) the error is about, with the union's path.
    """
    path: list[str | int] = []
    annotation: Any = root
    owner: type[BaseModel] | None = root
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner = annotation
            if chain is not None:
                chain.append((tuple(path), annotation))
            field = annotation.model_fields.get(str(part))
            path.append(part)
            annotation = field.annotation if field else None
        elif typing.get_origin(annotation) is list and isinstance(part, int):
            path.append(part)
            annotation = typing.get_args(annotation)[0]
        elif typing.get_origin(annotation) is dict:
            path.append(part)
            annotation = typing.get_args(annotation)[1]
        elif _is_union(annotation):
            tagged = _tagged_member(annotation, part)
            member = _named_member(annotation, part)
            if tagged is not None:
                annotation = tagged  # a discriminator tag: not part of the YAML path
            elif member is not None:
                annotation = member  # the member of `str | TensorSource` tried: no key either
                if branches is not None:
                    branches.append((tuple(path), member))
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


def _named_member(annotation: Any, name: Any) -> Any:
    """The member of a union pydantic names `name` in a loc (`str`, `TensorSource`)."""
    for candidate in typing.get_args(annotation):
        member = _unwrap(candidate)
        if getattr(member, "__name__", None) == name:
            return member
    return None


def _written_as(member: Any, value: Any) -> bool:
    """Whether `value` is written as a `member` of a union is: a mapping for a model, a
    list for a list, a scalar for the rest."""
    if isinstance(member, type) and issubclass(member, BaseModel):
        return isinstance(value, dict)
    if typing.get_origin(member) is list:
        return isinstance(value, list)
    return not isinstance(value, dict | list)


def _tagged_member(annotation: Any, tag: Any) -> type[BaseModel] | None:
    for candidate in typing.get_args(annotation):
        member = _unwrap(candidate)
        if isinstance(member, type) and issubclass(member, BaseModel):
            kind = member.model_fields.get("kind")
            if kind is not None and tag in typing.get_args(kind.annotation):
                return member
    return None
