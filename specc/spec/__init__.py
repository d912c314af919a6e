"""Stage 2: validate a loaded document against the spec models and the naming rules.

`parse` returns a `Spec` only when the document is well formed; whether its parallel
plan is sound is the lowering stage's question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from specc import names
from specc.diagnostics import Diagnostics, Span
from specc.source import Document, YamlPath
from specc.spec.errors import report_validation_error
from specc.spec.models import (
    FORMAT_VERSION,
    LAYER_KINDS,
    Input,
    Layer,
    Loss,
    Parallel,
    Spec,
    Training,
)
from specc.spec.sizes import resolve

__all__ = [
    "FORMAT_VERSION",
    "LAYER_KINDS",
    "Input",
    "Layer",
    "LayerRef",
    "Loss",
    "Parallel",
    "Spec",
    "Training",
    "parse",
    "walk_layers",
]


def parse(
    document: Document, diagnostics: Diagnostics, overrides: Sequence[str] = ()
) -> tuple[Spec | None, dict[Span, str]]:
    """Validate `document`, reporting every problem found.

    Returns the spec whenever its structure is valid, even if a name is not, so the
    plan can still be checked and all errors reported together; callers must not
    generate code while `diagnostics` has errors. Also returns the spans whose value
    came from an `overrides` entry (`--set name=value`), with a note naming it.
    """
    if not isinstance(document.data, dict):
        found = "a list" if isinstance(document.data, list) else f"{document.data!r}"
        diagnostics.error(
            "E105",
            f"a spec must be a mapping of keys to values, found {found}",
            document.span(()),
            help="start the file with `specc: 1` and `name: ...` at the left margin",
        )
        return None, {}
    document, origins = resolve(document, overrides, diagnostics)
    try:
        spec = Spec.model_validate(document.data)
    except ValidationError as error:
        report_validation_error(error, Spec, document, diagnostics)
        return None, origins
    _check_names(spec, document, diagnostics)
    return spec, origins


@dataclass(frozen=True)
class LayerRef:
    """A layer anywhere in the spec, with the attribute name generated code gives it.

    `scope` is the path of the layer list whose module class holds the attribute: the
    top level, or a `repeat` body. Residual bodies are inlined into their enclosing
    scope, so their layers' default names carry the residual's name as a prefix.
    """

    path: YamlPath
    layer: Layer
    name: str
    written: bool
    scope: YamlPath


def walk_layers(spec: Spec) -> list[LayerRef]:
    """Every layer, depth first in spec order."""
    found: list[LayerRef] = []

    def visit(layers: Sequence[Layer], path: YamlPath, scope: YamlPath, prefix: str) -> None:
        for index, layer in enumerate(layers):
            here = (*path, index)
            given = layer.name is not None
            default = prefix + names.default_layer_name(layer.kind, index)
            name = default if layer.name is None else layer.name
            found.append(LayerRef(here, layer, name, given, scope))
            body = layer.sublayers()
            if body and layer.opens_scope:
                visit(body, (*here, "layers"), (*here, "layers"), "")
            elif body:
                visit(body, (*here, "layers"), scope, f"{name}_")

    visit(spec.layers, ("layers",), ("layers",), "")
    return found


def _check_names(spec: Spec, document: Document, diagnostics: Diagnostics) -> None:
    problem = names.identifier_problem(spec.name, package=True)
    if problem:
        diagnostics.error(
            "E207",
            f"{names.shown(spec.name)} cannot be a package name: {problem}",
            document.span(("name",)),
            help=f"try `{names.suggest_identifier(spec.name, package=True)}`",
        )
    seen: dict[tuple[YamlPath, str], YamlPath] = {}
    top: YamlPath = ("layers",)
    refs = walk_layers(spec)
    named: list[tuple[YamlPath, str, bool, YamlPath]] = [
        (("inputs", i, "name"), item.name, True, top) for i, item in enumerate(spec.inputs)
    ]
    named += [((*r.path, "name"), r.name, r.written, r.scope) for r in refs]
    for path, name, written, scope in named:
        if written and (problem := names.identifier_problem(name)):
            diagnostics.error(
                "E207",
                f"{names.shown(name)} cannot be a name in generated code: {problem}",
                document.span(path),
                help=f"try `{names.suggest_identifier(name)}`",
            )
            continue
        if (scope, name) in seen:
            first = document.span(seen[scope, name])
            diagnostics.error(
                "E208",
                f"name `{name}` is used twice (first at {first.line}:{first.column})",
                document.span(path if written else path[:-1]),
                help="give each input and layer its own `name`",
            )
        seen.setdefault((scope, name), path if written else path[:-1])
    _check_body_classes(refs, document, diagnostics)


def _check_body_classes(refs: list[LayerRef], document: Document, diagnostics: Diagnostics) -> None:
    """Two repeats whose names differ only in underscores would generate one class."""
    classes: dict[str, LayerRef] = {}
    taken = {ref.name for ref in refs}
    for ref in refs:
        if not ref.layer.opens_scope:
            continue
        cls = names.body_class(ref.name)
        first = classes.setdefault(cls, ref)
        if first is ref:
            continue
        where = document.span((*first.path, "name") if first.written else first.path)
        diagnostics.error(
            "E208",
            f"repeats `{first.name}` (at {where.line}:{where.column}) and `{ref.name}` would "
            f"both generate the class `{cls}`",
            document.span((*ref.path, "name") if ref.written else ref.path),
            help=f"rename one of them, e.g. `{names.distinct_name(ref.name, taken)}`",
        )
