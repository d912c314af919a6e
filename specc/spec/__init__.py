"""Stage 2: validate a loaded document against the spec models and the naming rules.

`parse` returns a `Spec` only when the document is well formed; whether its parallel
plan is sound is the lowering stage's question.
"""

from __future__ import annotations

from pydantic import ValidationError

from specc import names
from specc.diagnostics import Diagnostics
from specc.source import Document
from specc.spec.errors import report_validation_error
from specc.spec.models import (
    FORMAT_VERSION,
    Activation,
    Dropout,
    Input,
    Layer,
    LayerNorm,
    Linear,
    Parallel,
    Spec,
)

__all__ = [
    "FORMAT_VERSION",
    "Activation",
    "Dropout",
    "Input",
    "Layer",
    "LayerNorm",
    "Linear",
    "Parallel",
    "Spec",
    "layer_names",
    "parse",
]


def parse(document: Document, diagnostics: Diagnostics) -> Spec | None:
    """Validate `document`, reporting every problem found.

    Returns the spec whenever its structure is valid, even if a name is not, so the
    plan can still be checked and all errors reported together; callers must not
    generate code while `diagnostics` has errors.
    """
    if not isinstance(document.data, dict):
        found = "a list" if isinstance(document.data, list) else f"{document.data!r}"
        diagnostics.error(
            "E105",
            f"a spec must be a mapping of keys to values, found {found}",
            document.span(()),
            help="start the file with `specc: 1` and `name: ...` at the left margin",
        )
        return None
    try:
        spec = Spec.model_validate(document.data)
    except ValidationError as error:
        report_validation_error(error, Spec, document, diagnostics)
        return None
    _check_names(spec, document, diagnostics)
    if len(spec.inputs) > 1:
        diagnostics.error(
            "E305",
            f"the model has {len(spec.inputs)} inputs; layers in format version 1 take one",
            document.span(("inputs", 1)),
            help="keep the input the first layer consumes",
        )
    return spec


def layer_names(spec: Spec) -> list[str]:
    """The attribute name of every layer, given or defaulted, in spec order."""
    return [
        layer.name or names.default_layer_name(layer.kind, index)
        for index, layer in enumerate(spec.layers)
    ]


def _check_names(spec: Spec, document: Document, diagnostics: Diagnostics) -> None:
    problem = names.identifier_problem(spec.name, package=True)
    if problem:
        diagnostics.error(
            "E207",
            f"{names.shown(spec.name)} cannot be a package name: {problem}",
            document.span(("name",)),
            help=f"try `{names.suggest_identifier(spec.name, package=True)}`",
        )
    seen: dict[str, tuple[str | int, ...]] = {}
    named = [(("inputs", i, "name"), item.name, True) for i, item in enumerate(spec.inputs)]
    named += [
        (("layers", i, "name"), name, spec.layers[i].name is not None)
        for i, name in enumerate(layer_names(spec))
    ]
    for path, name, written in named:
        if written and (problem := names.identifier_problem(name)):
            diagnostics.error(
                "E207",
                f"{names.shown(name)} cannot be a name in generated code: {problem}",
                document.span(path),
                help=f"try `{names.suggest_identifier(name)}`",
            )
            continue
        if name in seen:
            first = document.span(seen[name])
            diagnostics.error(
                "E208",
                f"name `{name}` is used twice (first at {first.line}:{first.column})",
                document.span(path if written else path[:-1]),
                help="give each input and layer its own `name`",
            )
        seen.setdefault(name, path if written else path[:-1])
