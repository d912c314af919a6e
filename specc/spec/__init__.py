"""Stage 2: validate a loaded document against the spec models and the naming rules.

`parse` returns a `Spec` only when the document is well formed; whether its parallel
plan is sound is the lowering stage's question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import ValidationError

from specc import names
from specc.diagnostics import Clause, Diagnostic, Diagnostics, Help, Span, Values
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
    "Parsed",
    "Spec",
    "Training",
    "Unchecked",
    "parse",
    "walk_layers",
]


@dataclass(frozen=True)
class Unchecked:
    """What the checks of a spec with errors could not see.

    The parts of a spec with schema errors cannot be lowered; the rest still is, so that
    one run reports the world size and batch mistakes too. A diagnostic of the plan
    (and naming) checks is kept unless it lies in `regions` (the unsound parts, and the
    top-level layers after the first unsound one, whose input is unknown) or its code is
    in `codes` (checks that need the whole spec: every layer, or the training section).
    `plan`: no plan check ran at all. `document`: the YAML could not be read, so nothing
    was checked.
    """

    regions: tuple[Span, ...] = ()
    codes: frozenset[str] = frozenset()
    plan: bool = False
    document: bool = False

    def covers(self, diagnostic: Diagnostic) -> bool:
        """Whether `diagnostic` is about a part these checks could not see."""
        if self.document or diagnostic.code in self.codes:
            return True
        if not _PLAN_CODE.match(diagnostic.code):
            return False  # the schema was checked everywhere
        return self.plan or any(_inside(diagnostic.span, region) for region in self.regions)


# The codes of the plan and naming checks, which only a sound part of a spec gets.
_PLAN_CODE = re.compile(r"E3|W5|E20[78]")


def _inside(span: Span, region: Span) -> bool:
    start = (span.line, span.column)
    return (region.line, region.column) <= start < (region.end_line, region.end_column)


@dataclass(frozen=True)
class Parsed:
    """What validation made of a document.

    `spec` is the whole spec when `unchecked` is None. Otherwise (the spec has schema
    errors) it is the sound part of the spec, to lower for what it can tell, keeping the
    diagnostics `unchecked` does not cover, or None when no part can be lowered; `scope`
    says how much of it can be: "all" (its sections and its layers before the first
    unsound one), "setup" (no layer: the mesh, the inputs and the training batch) or
    "mesh" (the inputs are not sound either). `overrides`: the `--set` applied, by name.
    """

    spec: Spec | None
    overrides: dict[str, int]
    unchecked: Unchecked | None = None
    scope: str = "all"


def parse(document: Document, diagnostics: Diagnostics, overrides: Sequence[str] = ()) -> Parsed:
    """Validate `document`, reporting every problem found.

    The spec is returned whenever its structure is valid, even if a name is not, so the
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
        return Parsed(None, {}, Unchecked(plan=True))
    document, applied = resolve(document, overrides, diagnostics)
    try:
        spec = Spec.model_validate(document.data)
    except ValidationError as error:
        broken = report_validation_error(error, Spec, document, diagnostics)
        return _sound_part(document, [*broken, *document.refused], applied, diagnostics)
    if document.refused:  # a duplicate key kept its first value, which is not to be trusted
        return _sound_part(document, list(document.refused), applied, diagnostics)
    _check_names(spec, document, diagnostics)
    return Parsed(spec, applied)


# What stands in for a top-level section that is not sound, so the rest validates.
_STAND_INS: dict[str, Any] = {"name": "spec", "specc": 1}
# Sections the plan checks cannot do without.
_ESSENTIAL = ("specc", "parallel")
# Sections that describe the whole model: left out when some layers are.
_WHOLE_MODEL = ("outputs", "loss", "checkpoint")


def _sound_part(
    document: Document, broken: list[YamlPath], applied: dict[str, int], out: Diagnostics
) -> Parsed:
    """The part of a spec with schema errors that can still be lowered (see `Unchecked`)."""
    nothing = Parsed(None, applied, Unchecked(plan=True))
    sections = {str(path[0]) for path in broken if path}
    if not broken or not all(broken) or sections & set(_ESSENTIAL):
        return nothing
    data = dict(document.data)
    regions: list[Span] = []
    codes: set[str] = set()

    def drop(key: str) -> None:
        regions.extend(_spans(document, (key,)))
        if key in _STAND_INS:
            data[key] = _STAND_INS[key]
        else:
            data.pop(key, None)

    for key in sorted(sections - {"layers", "inputs"}):
        drop(key)
    if "training" in sections:
        codes |= {"E316", "W503"}
    layer_cuts = [
        p[1] if len(p) > 1 and isinstance(p[1], int) else 0 for p in broken if p[0] == "layers"
    ]
    cut = min(layer_cuts) if layer_cuts else None
    scope = "all"
    if "inputs" in sections:
        # Every layer starts from the inputs: only the mesh is left to check.
        regions.extend(_spans(document, ("inputs",)))
        data["inputs"] = [{"name": "x", "shape": [1, 1]}]
        scope, cut = "mesh", 0
    if cut is not None:
        layers = data.get("layers")
        written = layers if isinstance(layers, list) else []
        regions.extend(s for i in range(cut, len(written)) for s in _spans(document, ("layers", i)))
        if cut == 0:
            regions.extend(_spans(document, ("layers",)))
            scope = "setup" if scope == "all" else scope
        data["layers"] = written[:cut] or [{"kind": "relu"}]  # a stand-in, never walked
        for key in _WHOLE_MODEL:
            drop(key)
        codes |= {"E315", "W502"}
    try:
        spec = Spec.model_validate(data)
    except ValidationError:
        return nothing
    unchecked = Unchecked(tuple(regions), frozenset(codes))
    checked = Diagnostics()  # the layers stood in for are not named
    _check_names(spec, document, checked, layers=scope == "all")
    out.items += [d for d in checked.items if not unchecked.covers(d)]
    return Parsed(spec, applied, unchecked, scope)


def _spans(document: Document, path: YamlPath) -> list[Span]:
    spans = [document.value_spans[path]] if path in document.value_spans else []
    return spans + ([document.key_spans[path]] if path in document.key_spans else [])


class LayerRef(NamedTuple):
    """A layer anywhere in the spec, with the attribute name generated code gives it.

    `scope` is the path of the layer list whose module class holds the attribute: the
    top level, or a `repeat` body. Residual bodies are inlined into their enclosing
    scope, so their layers' default names carry the residual's name as a prefix.
    (A named tuple: every layer gets one, twice per check, and a tuple is built in a
    third of a frozen dataclass's time.)
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


def _check_names(
    spec: Spec, document: Document, diagnostics: Diagnostics, *, layers: bool = True
) -> None:
    """The package name, and the names of the inputs and (with `layers`) the layers."""
    problem = names.identifier_problem(spec.name, package=True)
    if problem:
        diagnostics.error(
            "E207",
            f"{names.shown(spec.name)} cannot be a package name: {problem}",
            document.span(("name",)),
            help=_try_name(("name",), names.suggest_identifier(spec.name, package=True)),
        )
    seen: dict[tuple[YamlPath, str], YamlPath] = {}
    top: YamlPath = ("layers",)
    refs = walk_layers(spec) if layers else []
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
                help=_try_name(path, names.suggest_identifier(name)),
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
    if layers:
        _check_body_classes(refs, document, diagnostics)


def _try_name(path: YamlPath, suggestion: str) -> Help:
    return Help.of(
        Clause("try `{}`", Values(path, (suggestion,))),
        otherwise="a lower-case identifier of at most 32 characters, not a Python keyword",
    )


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
            help=Help.of(
                Clause(
                    "rename one of them, e.g. `{}`",
                    Values((*ref.path, "name"), (names.distinct_name(ref.name, taken),)),
                ),
                otherwise="rename one of them",
            ),
        )
