"""Random specs as YAML text: valid by construction, then optionally broken by one mutation.

A spec is first drawn as a `Draft` that tracks the running feature size through the
layers, so every linear's `in_features`, every written layernorm `features` and every
split size is right by construction; or (`Limits.stack_percent` of the time) as a
transformer stack from tests/fuzz/stacks.py, which does the same for every other layer
kind. One mutation may then break it, at one of four levels, and the mutation knows
which codes specc must report (`Case.expect`):

* semantic: a wrong in_features or features, a size not divisible by its group, a
  batch not divisible by data, a wrong world_size, pipeline > 1, two inputs, bad
  stages or batching; for stacks the mistakes listed in stacks.py (heads, ffn,
  vocabulary, positions, patches, tied heads, second inputs, bodies that change shape);
* schema: unknown keys and kinds, misspelled keys (slips and other frameworks' words),
  wrong types, lists written for mappings and mappings for lists, out-of-range numbers,
  bad choices, missing keys, names no code may use, duplicate names, empty lists, bad
  versions, `${...}` references that cannot be resolved;
* YAML: duplicate keys and sections, tags that construct objects, non-string keys, a
  top level that is not a mapping, an empty document, unclosed brackets, tabs, several
  documents, a `${...}` unquoted inside `[...]`.

Where a mutation knows the line of its mistake (`Case.first_line`), the first error
must be there: specc reports the cause, not a consequence of it further up.
* text: random insertions, deletions, duplicated lines and truncations, whose outcome
  is not predicted (only that specc answers with located diagnostics or accepts).

Valid specs also vary in how they are written: block or flow style, indentation,
comments, CRLF line ends, document markers, a BOM, anchors and aliases, YAML 1.1
spellings of booleans and integers, quoting, key order, sizes moved into `sizes:` and
referred to as `${name}` or `${k * name}`.

Every choice goes through a `Chooser`, so the same generator runs under hypothesis
(`cases()`, which shrinks a failing example) and from `random.Random(seed)`
(`sample()`, a reproducible sample for the launcher tests).
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml
from hypothesis import strategies as st

from specc import kinds
from specc.spec import Input, Loss, Parallel, Spec, Training
from specc.spec.errors import KEY_SYNONYMS
from tests.fuzz.choices import (
    ACTIVATIONS,
    BAD_INPUT_NAMES,
    BAD_LAYER_NAMES,
    BAD_PACKAGES,
    FUZZ,
    KINDS,
    MAX_GROUP,
    MAX_SIZE,
    RUN,
    Chooser,
    DrawChooser,
    Limits,
    MeshSizes,
    RandomChooser,
    draw_batch,
    draw_name,
    draw_package,
    draw_parallel,
    feature_size,
    non_multiple,
    safe_name,
)
from tests.fuzz.stacks import STACK_SEMANTIC, STACK_SINGLE_MISTAKES, StackDraft, draw_stack

# Every key of the spec's models: a typo must not be one of them.
_KNOWN_KEYS = frozenset(
    key
    for model in (Spec, Parallel, Input, Training, Loss, *(k.model for k in kinds.KINDS))
    for key in model.model_fields
)

T = TypeVar("T")
E2 = frozenset(f"E2{n:02d}" for n in range(10))  # any schema problem

# -- drafts ------------------------------------------------------------------------------


@dataclass
class LayerDraft:
    kind: str
    name: str | None = None
    stage: int | None = None  # pipeline stage, written when not None
    out_features: int = 0  # linear
    split: str | None = None  # linear; None leaves the key out (default data)
    bias: bool | None = None  # linear; None leaves the key out (default true)
    p: float = 0.0  # dropout
    write_features: bool = False  # layernorm
    eps: float | None = None  # layernorm
    affine: bool | None = None  # layernorm
    forced: dict[str, Any] = field(default_factory=dict)  # keys written with these values


@dataclass
class Draft(MeshSizes):
    package: str
    device: str | None
    parallel: dict[str, int]  # the keys written under `parallel:`
    input_name: str
    shape: list[int]
    input_split: str | None  # None leaves the key out (default data)
    layers: list[LayerDraft]
    extra_inputs: list[dict[str, Any]] = field(default_factory=list)
    training: dict[str, int] | None = None
    tricky: bool = False  # some name came from TRICKY_NAMES: acceptance is not predicted

    def kinds(self) -> set[str]:
        return {layer.kind for layer in self.layers}

    def taken_names(self) -> set[str]:
        return set(self.names()) | {item["name"] for item in self.extra_inputs}

    def units(self) -> int:
        return len(self.layers)

    def stageable(self) -> list[int]:
        return list(range(len(self.layers)))

    def has_parameters(self) -> bool:
        return any(
            layer.kind == "linear" or (layer.kind == "layernorm" and layer.affine is not False)
            for layer in self.layers
        )

    def has_explicit_stages(self) -> bool:
        return any(layer.stage is not None for layer in self.layers)

    def clear_stages(self) -> None:
        for layer in self.layers:
            layer.stage = None

    def sizes(self) -> list[int]:
        """The feature size entering each layer, then the output's."""
        sizes = [self.shape[-1]]
        for layer in self.layers:
            sizes.append(layer.out_features if layer.kind == "linear" else sizes[-1])
        return sizes

    def names(self) -> list[str]:
        """Input name, then every layer's given or default name."""
        return [self.input_name] + [
            layer.name or f"{layer.kind}_{index}" for index, layer in enumerate(self.layers)
        ]

    def to_data(self) -> dict[str, Any]:
        parallel = dict(self.parallel)
        data: dict[str, Any] = {"specc": 1, "name": self.package}
        if self.device is not None:
            data["device"] = self.device
        if parallel:
            data["parallel"] = parallel
        if self.training is not None:
            data["training"] = dict(self.training)
        item: dict[str, Any] = {"name": self.input_name, "shape": list(self.shape)}
        if self.input_split is not None:
            item["split"] = self.input_split
        data["inputs"] = [item, *copy.deepcopy(self.extra_inputs)]
        layers = []
        for layer, size in zip(self.layers, self.sizes(), strict=False):
            entry: dict[str, Any] = {"kind": layer.kind}
            if layer.name is not None:
                entry["name"] = layer.name
            if layer.stage is not None:
                entry["stage"] = layer.stage
            if layer.kind == "linear":
                entry["in_features"] = size
                entry["out_features"] = layer.out_features
                if layer.bias is not None:
                    entry["bias"] = layer.bias
                if layer.split is not None:
                    entry["split"] = layer.split
            elif layer.kind == "dropout":
                entry["p"] = layer.p
            elif layer.kind == "layernorm":
                if layer.write_features:
                    entry["features"] = size
                if layer.eps is not None:
                    entry["eps"] = layer.eps
                if layer.affine is not None:
                    entry["affine"] = layer.affine
            entry.update(layer.forced)
            layers.append(entry)
        data["layers"] = layers
        return data


def draw_draft(ch: Chooser, limits: Limits, *, package: str | None = None) -> Draft:
    """A valid spec, built so that every size fits the layer before it and its split."""
    flags = {"tricky": False}
    parallel, (data, tensor, pipeline) = draw_parallel(ch, limits)
    package = draw_package(ch, limits, flags) if package is None else package
    input_split = ch.pick((None, "data", "none"))
    batch, training = draw_batch(ch, limits, data, input_split)
    middle = [
        ch.integer(1, limits.max_middle_size) for _ in range(ch.integer(0, limits.max_middle))
    ]
    features = feature_size(ch, limits, tensor if ch.chance(50) else 1)
    input_name = draw_name(ch, limits, set(), flags) if ch.chance(60) else "x"
    layers: list[LayerDraft] = []
    current = features
    for _ in range(ch.integer(pipeline, max(pipeline, limits.max_layers))):
        layers.append(_draw_layer(ch, limits, tensor, current))
        current = layers[-1].out_features if layers[-1].kind == "linear" else current
    # Names last, so that none repeats an input name or a default `<kind>_<index>`.
    taken = {input_name} | {f"{layer.kind}_{i}" for i, layer in enumerate(layers)}
    for layer in layers:
        if ch.chance(40):
            layer.name = draw_name(ch, limits, taken, flags)
            taken.add(layer.name)
    if pipeline > 1 and ch.chance(25):
        _explicit_stages(ch, layers, pipeline)
    device = ch.pick(limits.devices)
    return Draft(
        package, device, parallel, input_name, [batch, *middle, features], input_split, layers,
        training=training, tricky=flags["tricky"],
    )  # fmt: skip


def _draw_layer(ch: Chooser, limits: Limits, tensor: int, current: int) -> LayerDraft:
    """A layer taking `current` features, with sizes its split over `tensor` allows."""
    kind = ch.pick((*KINDS, "linear", "linear"))
    layer = LayerDraft(kind)
    if kind == "linear":
        splits: list[str | None] = [None, "col", "row", "data", "none"]
        if tensor > 1 and current % tensor:
            splits.remove("row")
        layer.split = ch.pick(splits)
        whole = tensor > 1 and layer.split == "col"
        layer.out_features = feature_size(ch, limits, tensor if whole or ch.chance(40) else 1)
        layer.bias = ch.pick((None, True, False))
    elif kind == "dropout":
        layer.p = ch.pick((0.0, 0.1, 0.5, 0.25, 0.999, 1e-7))
    elif kind == "layernorm":
        layer.write_features = ch.chance(50)
        layer.eps = ch.pick((None, 1e-5, 1e-6, 0.001, 1.0, 1e-12))
        layer.affine = ch.pick((None, True, False))
    return layer


def _explicit_stages(ch: Chooser, layers: list[LayerDraft], pipeline: int) -> None:
    """Write `stage` by hand: contiguous, never going back, every stage used."""
    cuts: set[int] = set()
    while len(cuts) < pipeline - 1:
        cuts.add(ch.integer(1, len(layers) - 1))
    stage = 0
    for index, layer in enumerate(layers):
        first = index in cuts
        stage += first
        if first or ch.chance(40):
            layer.stage = stage


# -- writing YAML ------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """YAML text written as is (tags, odd spellings, broken syntax)."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """A mapping written with exactly these keys, repeated or not strings."""

    items: tuple[tuple[Any, Any], ...]


@dataclass(frozen=True)
class Anchored:
    name: str
    value: Any


@dataclass(frozen=True)
class Alias:
    name: str


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED = {"yes", "no", "true", "false", "on", "off", "null", "y", "n"}
_BOOLS = (("true", "false"), ("True", "False"), ("yes", "no"), ("on", "off"), ("TRUE", "FALSE"))


def yaml_float(value: float) -> str:
    """A float as YAML 1.1 resolves it: a dot in the mantissa and a signed exponent."""
    text = repr(float(value))
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    if "." not in mantissa:
        mantissa += ".0"
    sign = exponent[0] if exponent[0] in "+-" else "+"
    return f"{mantissa}e{sign}{exponent.lstrip('+-')}"


def quote(text: str) -> str:
    """A YAML double-quoted scalar that reads back as `text`."""
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF, 0xFEFF):
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


_COMMENTS = ("note", "TODO: {{ x }}", "a: b", "\u00e9t\u00e9 \u2192 \u65e5\u672c", "#", "'\"")


class Emitter:
    """Writes plain data (plus Raw, Pairs, Anchored, Alias) as YAML in a drawn style."""

    def __init__(self, ch: Chooser, plain: bool = False) -> None:
        self.ch = ch
        self.indent = 2 if plain else ch.pick((2, 4, 2, 3))
        self.indent_sequences = plain or ch.chance(50)
        self.flow_percent = 0 if plain else ch.pick((0, 50, 100))
        self.comments = not plain and ch.chance(30)
        self.bools = _BOOLS[0] if plain else ch.pick(_BOOLS)
        self.odd_ints = not plain and ch.chance(10)

    def document(self, value: Any) -> str:
        if isinstance(value, dict | Pairs) and _items(value):
            lines = self.block_mapping(value, 0)
        else:
            lines = [self.flow(value)]
        return "\n".join(lines) + "\n"

    def block_mapping(self, mapping: Any, indent: int, inline_first: bool = False) -> list[str]:
        lines: list[str] = []
        pad = " " * indent
        for number, (key, value) in enumerate(_items(mapping)):
            if self.comments and not (inline_first and number == 0) and self.ch.chance(15):
                lines.append(f"{pad}# {self.ch.pick(_COMMENTS)}")
            head = f"{pad}{self.key(key)}:"
            if isinstance(value, dict | Pairs) and _items(value) and not self.use_flow(indent):
                lines.append(head)
                lines += self.block_mapping(value, indent + self.indent)
            elif isinstance(value, list) and value and not self.use_flow(indent):
                lines.append(head)
                step = self.indent if self.indent_sequences else 0
                lines += self.block_sequence(value, indent + step)
            else:
                line = f"{head} {self.flow(value)}"
                if self.comments and self.ch.chance(10):
                    line += f"  # {self.ch.pick(_COMMENTS)}"
                lines.append(line)
        return lines

    def block_sequence(self, items: list[Any], indent: int) -> list[str]:
        lines: list[str] = []
        pad = " " * indent
        for item in items:
            if isinstance(item, dict | Pairs) and _items(item) and not self.use_flow(indent):
                inner = self.block_mapping(item, indent + 2, inline_first=True)
                inner[0] = f"{pad}- {inner[0][indent + 2 :]}"
                lines += inner
            else:
                lines.append(f"{pad}- {self.flow(item)}")
        return lines

    def use_flow(self, indent: int) -> bool:
        return self.ch.chance(self.flow_percent if indent else 10)

    def key(self, key: Any) -> str:
        return key.text if isinstance(key, Raw) else self.scalar(key)

    def flow(self, value: Any) -> str:
        if isinstance(value, dict | Pairs):
            inner = ", ".join(f"{self.key(k)}: {self.flow(v)}" for k, v in _items(value))
            return "{" + inner + "}"
        if isinstance(value, list):
            return "[" + ", ".join(self.flow(v) for v in value) + "]"
        if isinstance(value, Anchored):
            return f"&{value.name} {self.flow(value.value)}"
        if isinstance(value, Alias):
            return f"*{value.name}"
        if isinstance(value, Raw):
            return value.text
        return self.scalar(value)

    def scalar(self, value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return self.bools[0] if value else self.bools[1]
        if isinstance(value, int):
            if self.odd_ints and 0 < value < 2**40 and self.ch.chance(30):
                return self.ch.pick((hex(value), f"+{value}", f"{value:_}"))
            return str(value)
        if isinstance(value, float):
            return yaml_float(value)
        if _PLAIN.match(value) and value.lower() not in _RESERVED:
            return value
        return quote(value)


def _items(mapping: Any) -> tuple[tuple[Any, Any], ...]:
    return mapping.items if isinstance(mapping, Pairs) else tuple(mapping.items())


def _dress(ch: Chooser, text: str) -> str:
    """Valid ways to frame the same document: header lines, markers, BOM, CRLF."""
    header = ch.pick(
        (
            "",
            "# yaml-language-server: $schema=../schemas/specc.schema.json\n",
            "---\n",
            "%YAML 1.1\n---\n",
            "\ufeff",
            "\n\n# leading comment\n",
        )
    )
    footer = ch.pick(("", "", "...\n", "\n\n", "# trailing comment\n"))
    text = header + text + footer
    if ch.chance(15):
        text = text.replace("\n", ch.pick(("\r\n", "\r\n", "\r")))
    if ch.chance(5):
        text = text.rstrip("\n")
    return text


# -- cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A spec to feed specc, and what it must say about it."""

    text: str
    mutation: str  # "none" for a spec that is valid by construction
    # Codes of which at least one must be reported (exit 2); empty: it must be accepted
    # (exit 0); None: either is right, as long as the answer is well formed.
    expect: frozenset[str] | None
    draft: Draft
    mistake: dict[str, Any] | None = None  # the numbers of a semantic mistake (test D)
    file_name: str = "spec.yaml"
    location: tuple[int, int] | None = None  # (line, column) of an expected diagnostic
    # The line of the mistake, where the first error must be (the cause, not a consequence).
    first_line: int | None = None

    def __repr__(self) -> str:
        return f"Case(mutation={self.mutation!r}, expect={self.describe_expect()})\n{self.text}"

    def describe_expect(self) -> str:
        if self.expect is None:
            return "either"
        return "accepted" if not self.expect else "one of " + ", ".join(sorted(self.expect))


@dataclass
class _Mutated:
    draft: Draft
    data: Any = None
    text_edit: Callable[[str], str] | None = None
    expect: frozenset[str] | None = frozenset()
    mistake: dict[str, Any] | None = None
    location: tuple[int, int] | None = None  # where the expected diagnostic must be
    # Finds, in the final text, the line of the mistake, where the first error must be.
    locate: Callable[[str], int | None] | None = None


def _linears(draft: Draft, split: str | None = None) -> list[int]:
    return [
        i
        for i, layer in enumerate(draft.layers)
        if layer.kind == "linear" and (split is None or (layer.split or "data") == split)
    ]


def _off_by(ch: Chooser, size: int) -> int:
    wrong = size + ch.pick((1, -1, 2, 7, size, -(size // 2)))
    if 1 <= wrong <= MAX_SIZE and wrong != size:
        return wrong
    return size + 1 if size < MAX_SIZE else size - 1


# Semantic mutations: each returns the mutated draft and its facts, or None when the
# draft has nothing it applies to.


def _m_in_features(ch: Chooser, m: _Mutated) -> str | None:
    linears = _linears(m.draft)
    if not linears:
        return None
    index = ch.pick(linears)
    size = m.draft.sizes()[index]
    wrong = _off_by(ch, size)
    m.draft.layers[index].forced["in_features"] = wrong
    layer = m.draft.layers[index]
    m.expect = frozenset({"E303"})
    m.mistake = {
        "kind": "in_features",
        "index": index,
        "data": m.draft.data,
        "tensor": m.draft.tensor,
        "batch": m.draft.shape[0],
        "previous": size,
        "in_features": wrong,
        "out_features": layer.out_features,
    }
    return "in_features"


def _m_features(ch: Chooser, m: _Mutated) -> str | None:
    norms = [i for i, layer in enumerate(m.draft.layers) if layer.kind == "layernorm"]
    if not norms:
        return None
    index = ch.pick(norms)
    size = m.draft.sizes()[index]
    wrong = _off_by(ch, size)
    m.draft.layers[index].forced["features"] = wrong
    m.expect = frozenset({"E304"})
    m.mistake = {
        "kind": "features",
        "index": index,
        "data": m.draft.data,
        "tensor": m.draft.tensor,
        "batch": m.draft.shape[0],
        "previous": size,
        "features": wrong,
    }
    return "features"


def _m_col(ch: Chooser, m: _Mutated) -> str | None:
    tensor = m.draft.tensor
    cols = _linears(m.draft, "col")
    if tensor == 1 or not cols:
        return None
    index = ch.pick(cols)
    layer = m.draft.layers[index]
    layer.out_features = non_multiple(ch, tensor)
    m.expect = frozenset({"E301"})
    m.mistake = {
        "kind": "col",
        "index": index,
        "data": m.draft.data,
        "tensor": tensor,
        "batch": m.draft.shape[0],
        "in_features": m.draft.sizes()[index],
        "out_features": layer.out_features,
        "input_split": m.draft.input_split or "data",
    }
    return "col_not_divisible"


def _m_row(ch: Chooser, m: _Mutated) -> str | None:
    tensor = m.draft.tensor
    rows = _linears(m.draft, "row")
    if tensor == 1 or not rows:
        return None
    index = ch.pick(rows)
    producer = max((i for i in _linears(m.draft) if i < index), default=None)
    size = non_multiple(ch, tensor)
    if producer is None:
        m.draft.shape[-1] = size
    else:
        m.draft.layers[producer].out_features = size
    m.expect = frozenset({"E301"})
    m.mistake = {
        "kind": "row",
        "index": index,
        "data": m.draft.data,
        "tensor": tensor,
        "batch": m.draft.shape[0],
        "in_features": size,
        "out_features": m.draft.layers[index].out_features,
        "input_split": m.draft.input_split or "data",
    }
    return "row_not_divisible"


def _m_batch(ch: Chooser, m: _Mutated) -> str | None:
    data = m.draft.data
    if data == 1 or m.draft.input_split == "none":
        return None
    m.draft.shape[0] = non_multiple(ch, data)
    m.expect = frozenset({"E302"})
    m.mistake = {
        "kind": "batch",
        "data": data,
        "tensor": m.draft.tensor,
        "batch": m.draft.shape[0],
        "features": m.draft.shape[-1],
    }
    return "batch_not_divisible"


def _m_world(ch: Chooser, m: _Mutated) -> str | None:
    m.draft.parallel["world_size"] = m.draft.world + ch.pick((1, -1, 2, m.draft.world))
    if m.draft.parallel["world_size"] < 1:
        m.draft.parallel["world_size"] = m.draft.world + 1
    m.expect = frozenset({"E300"} | ({"E204"} if m.draft.world >= MAX_GROUP else set()))
    return "world_size_mismatch"


def _m_pipeline(ch: Chooser, m: _Mutated) -> str | None:
    m.draft.clear_stages()
    m.draft.parallel["pipeline"] = m.draft.units() + ch.integer(1, 2)
    m.expect = frozenset({"E315"})
    return "pipeline_too_deep"


def _m_mesh_too_big(ch: Chooser, m: _Mutated) -> str | None:
    """More than 65536 processes (tests/regressions/huge_mesh.yaml)."""
    axis = ch.pick(("data", "tensor", "pipeline"))
    m.draft.parallel[axis] = ch.pick((MAX_GROUP, MAX_GROUP // 2 + 1, 40000))
    if m.draft.world <= MAX_GROUP:
        m.draft.parallel[ch.pick([a for a in ("data", "tensor", "pipeline") if a != axis])] = 2
    m.expect = frozenset({"E204"})
    return "mesh_too_big"


def _m_stage(ch: Chooser, m: _Mutated) -> str | None:
    pipeline, layers = m.draft.pipeline, m.draft.layers
    if pipeline == 1:
        return None
    choice = ch.pick(("out_of_range", "backwards", "empty"))
    m.draft.clear_stages()
    # A tied lm_head's `stage` is not one of the sequence: it must equal its table's.
    stageable = m.draft.stageable()
    if choice == "out_of_range":
        layers[ch.pick(stageable)].stage = pipeline + ch.integer(0, 2)
        m.expect = frozenset({"E314"})
    elif choice == "backwards" and len(stageable) > 1:
        position = ch.integer(0, len(stageable) - 2)
        first, then = stageable[position], stageable[position + 1]
        layers[first].stage, layers[then].stage = pipeline - 1, 0
        m.expect = frozenset({"E314"})
    else:
        layers[ch.pick(stageable)].stage = 0
        for index in stageable:
            if layers[index].stage is None:
                layers[index].stage = ch.pick((None, 0))
        m.expect = frozenset({"E315"})
    return "stage_" + choice


def _m_training(ch: Chooser, m: _Mutated) -> str | None:
    training = m.draft.training
    if training is None:
        m.draft.training = training = {"micro_batch": m.draft.shape[0] + ch.integer(1, 3)}
    elif ch.chance(50):
        product = training["micro_batch"] * m.draft.data * training.get("accumulation", 1)
        training["global_batch"] = product + ch.pick((1, -1, product))
        if training["global_batch"] < 1:
            training["global_batch"] = product + 1
    else:
        training["micro_batch"] += 1
    m.expect = frozenset({"E316"})
    return "training_batch"


def _m_two_inputs(ch: Chooser, m: _Mutated) -> str | None:
    """An unused second input: accepted with a warning (W502)."""
    taken = m.draft.taken_names()
    extra: dict[str, Any] = {"name": safe_name(ch, taken), "shape": list(m.draft.shape)}
    if m.draft.input_split is not None:
        extra["split"] = m.draft.input_split
    m.draft.extra_inputs.append(extra)
    m.expect = frozenset() if not m.draft.tricky else None
    return "two_inputs"


SEMANTIC = (
    _m_in_features, _m_features, _m_col, _m_row, _m_batch, _m_world, _m_pipeline, _m_stage,
    _m_training, _m_mesh_too_big,
)  # fmt: skip
# The mutations that apply to any draft, transformer stacks too.
GENERIC = (_m_batch, _m_world, _m_pipeline, _m_stage, _m_training, _m_mesh_too_big)
SINGLE_MISTAKES = (_m_in_features, _m_features, _m_col, _m_row, _m_batch)


# Schema mutations work on the data about to be written.


SIZE_KEYS = (
    "in_features", "out_features", "features", "vocab_size", "hidden", "max_positions",
    "pad_vocab_to_multiple_of", "types", "image_size", "patch_size", "channels", "heads",
    "ffn", "times",
)  # fmt: skip
# The keys each kind's model requires, besides `kind`.
_REQUIRED = {
    name: tuple(key for key, info in kind.model.model_fields.items() if info.is_required())
    for name, kind in kinds.BY_NAME.items()
}


def _layer_paths(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The path of every layer mapping, those in residual and repeat bodies too."""
    paths: list[tuple[Any, ...]] = []

    def visit(layers: Any, path: tuple[Any, ...]) -> None:
        for i, layer in enumerate(layers if isinstance(layers, list) else []):
            if isinstance(layer, dict):
                paths.append((*path, i))
                visit(layer.get("layers"), (*path, i, "layers"))

    visit(data.get("layers"), ("layers",))
    return paths


def _size_paths(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    paths: list[tuple[Any, ...]] = []
    for n, item in enumerate(data["inputs"]):
        paths += [("inputs", n, "shape", i) for i in range(len(item["shape"]))]
    paths += [("parallel", k) for k in data.get("parallel", {})]
    paths += [("training", k) for k in data.get("training", {})]
    for path in _layer_paths(data):
        layer = _get(data, path)
        paths += [(*path, k) for k in SIZE_KEYS if k in layer]
    return paths


def _shape(data: dict[str, Any]) -> list[Any]:
    return data["inputs"][0]["shape"]


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    _get(data, path[:-1])[path[-1]] = value


def _delete(data: Any, path: tuple[Any, ...]) -> None:
    del _get(data, path[:-1])[path[-1]]


def _mappings(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    paths: list[tuple[Any, ...]] = [(), *(("inputs", i) for i in range(len(data["inputs"])))]
    paths += [(key,) for key in ("parallel", "training", "loss", "sizes") if data.get(key)]
    return paths + _layer_paths(data)


_TYPOS = {
    "in_features": "in_feature",
    "out_features": "out_feature",
    "split": "splt",
    "tensor": "tensors",
    "bias": "bais",
    "shape": "shapes",
    "name": "Name",
    "layers": "layer",
    "kind": "type",
    "data": "dp",
}


def _s_unknown_key(ch: Chooser, m: _Mutated) -> str:
    path = ch.pick(_mappings(m.data))
    mapping = _get(m.data, path)
    typos = [_TYPOS[k] for k in mapping if k in _TYPOS and _TYPOS[k] not in mapping]
    key = ch.pick([*typos, "extra", "activation", "repeat_", "dtype_", "x"])
    if key in mapping:
        key += "_"
    mapping[key] = ch.pick((1, "col", True, [1], None))
    m.expect = frozenset({"E200"})
    return "unknown_key"


def _s_unknown_kind(ch: Chooser, m: _Mutated) -> str:
    index = ch.integer(0, len(m.data["layers"]) - 1)
    kinds = ("conv", "Linear", "lstm", "", "re lu", 3, True, "re\nlu", "sigm\u2028oid", "gel\x85u")
    m.data["layers"][index]["kind"] = ch.pick(kinds)
    m.expect = frozenset({"E205", "E202", "E203"})
    return "unknown_kind"


def _s_wrong_type(ch: Chooser, m: _Mutated) -> str:
    choices: list[tuple[tuple[Any, ...], Sequence[Any]]] = []
    wrong_sizes = (Raw('"16"'), 16.5, Raw("16.0"), True, [16], {"n": 16}, "sixteen", Raw("1e3"))
    choices += [(path, wrong_sizes) for path in _size_paths(m.data)]
    for path in _layer_paths(m.data):
        layer = _get(m.data, path)
        for key in ("bias", "affine", "causal", "class_token"):
            if key in layer:
                choices.append(((*path, key), (Raw('"yes"'), 1, 0, "true_", [True])))
        for key in ("p", "eps"):
            if key in layer:
                choices.append(((*path, key), (Raw('"0.1"'), [0.1], True, Raw("1e-6"))))
        for key in ("split", "tied_to", "input", "mask", "activation"):
            if key in layer:
                choices.append(((*path, key), (1, True, ["col"], {"col": 1})))
        if "layers" in layer:
            choices.append(((*path, "layers"), ({"kind": "relu"}, "relu", 3)))
        if "index" in layer:
            choices.append(((*path, "index"), ("0", 1.5, [0], True)))
    choices.append((("name",), (1, True, ["x"], {"a": 1}, 1.5)))
    choices.append((("inputs", 0, "name"), (1, False, ["x"])))
    choices.append((("inputs", 0, "shape"), (8, "8, 16", {"batch": 8})))
    choices.append((("inputs",), ({"x": 1}, "x", 3)))
    choices.append((("layers",), ({"kind": "relu"}, "relu", 3)))
    if "parallel" in m.data:
        choices.append((("parallel",), ([1, 2], 4, "data")))
    path, values = ch.pick(choices)
    _set(m.data, path, ch.pick(values))
    m.expect = E2
    return "wrong_type"


def _s_out_of_range(ch: Chooser, m: _Mutated) -> str:
    choices: list[tuple[tuple[Any, ...], Sequence[Any]]] = []
    big = (0, -3, MAX_SIZE + 1, 10**30, -(10**30))
    choices += [(p, big) for p in _size_paths(m.data) if p[0] != "parallel"]
    choices += [
        (p, (0, -1, MAX_GROUP + 1, 10**20)) for p in _size_paths(m.data) if p[0] == "parallel"
    ]
    for i, layer in enumerate(m.data["layers"]):
        if "p" in layer:
            choices.append((("layers", i, "p"), (1.0, -0.1, 1.5, 100.0)))
        if "eps" in layer:
            choices.append((("layers", i, "eps"), (0.0, -1e-5, -1.0)))
    path, values = ch.pick(choices)
    _set(m.data, path, ch.pick(values))
    m.expect = frozenset({"E204", "E202"})
    return "out_of_range"


def _s_bad_choice(ch: Chooser, m: _Mutated) -> str:
    choices: list[tuple[tuple[Any, ...], Sequence[Any]]] = [
        (("device",), ("gpu", "CPU", "tpu", "")),
        (("inputs", 0, "split"), ("tensor", "Data", "both", "col")),
        (("inputs", 0, "dtype"), ("float16", "int", "bfloat16")),
    ]
    for path in _layer_paths(m.data):
        kind = _get(m.data, path).get("kind")
        if kind == "linear":
            choices.append(((*path, "split"), ("column", "COL", "both", "tensor", "rows")))
        elif kind == "mlp":
            choices.append(((*path, "activation"), ("relu6", "GELU", "softmax", "swish")))
    if "loss" in m.data:
        choices.append((("loss", "kind"), ("mse", "CrossEntropy", "nll")))
    path, values = ch.pick(choices)
    _set(m.data, path, ch.pick(values))
    m.expect = frozenset({"E203"})
    return "bad_choice"


def _s_missing_key(ch: Chooser, m: _Mutated) -> str:
    required: list[tuple[Any, ...]] = [
        ("specc",),
        ("name",),
        ("inputs",),
        ("layers",),
        ("inputs", 0, "name"),
        ("inputs", 0, "shape"),
    ]
    for path in _layer_paths(m.data):
        layer = _get(m.data, path)
        required += [(*path, "kind")]
        required += [(*path, k) for k in _REQUIRED.get(layer["kind"], ()) if k in layer]
    if "loss" in m.data:
        required.append(("loss", "kind"))
    path = ch.pick(required)
    _delete(m.data, path)
    m.expect = frozenset({"E201", "E205"})
    return "missing_key"


def _s_bad_name(ch: Chooser, m: _Mutated) -> str:
    where = ch.pick(("package", "input", "layer"))
    if where == "package":
        m.data["name"] = ch.pick(BAD_PACKAGES)
    elif where == "input":
        m.data["inputs"][0]["name"] = ch.pick(BAD_INPUT_NAMES)
    else:  # any layer, those in residual and repeat bodies too
        _get(m.data, ch.pick(_layer_paths(m.data)))["name"] = ch.pick(BAD_LAYER_NAMES)
    m.expect = frozenset({"E207"})
    return "bad_name"


def _s_duplicate_name(ch: Chooser, m: _Mutated) -> str:
    names = m.draft.names()
    index = ch.integer(0, len(m.data["layers"]) - 1)
    others = [n for i, n in enumerate(names) if i != index + 1]
    m.data["layers"][index]["name"] = ch.pick(others)
    # A name that is itself refused (E207) is not compared with the others.
    m.expect = frozenset({"E208", "E207"})
    return "duplicate_name"


def _s_version(ch: Chooser, m: _Mutated) -> str:
    m.data["specc"] = ch.pick((2, 0, "1", Raw("'1'"), [1], -1, True, 1.0, Raw("1.0")))
    m.expect = frozenset({"E206", "E202"})
    return "version"


def _s_lists(ch: Chooser, m: _Mutated) -> str:
    choice = ch.pick(("layers", "inputs", "short_shape", "long_shape"))
    if choice in ("layers", "inputs"):
        m.data[choice] = []
    elif choice == "short_shape":
        m.data["inputs"][0]["shape"] = _shape(m.data)[:1]
    else:
        m.data["inputs"][0]["shape"] = [2] * 9
    m.expect = frozenset({"E209"})
    return "list_length"


_SIZE_NAMES = ("hidden", "heads", "seq", "vocab", "ffn", "batch", "width", "n", "layers", "tp")


def _refer_to_sizes(ch: Chooser, data: dict[str, Any]) -> None:
    """Move some sizes into `sizes:` and refer to them as `${name}` or `${k * name}`."""
    sizes: dict[str, int] = data.setdefault("sizes", {})
    by_value: dict[int, str] = {}
    for path in [p for p in _size_paths(data) if ch.chance(30)]:
        value = _get(data, path)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        factor = ch.pick([k for k in (1, 2, 3, 4) if value % k == 0])
        base = value // factor
        if base not in by_value:
            name = ch.pick(_SIZE_NAMES)
            name = name if name not in sizes else f"{name}_{len(sizes)}"
            sizes[name], by_value[base] = base, name
        name = by_value[base]
        written = ch.pick(
            ((f"${{{name}}}",) if factor == 1 else ())
            + (f"${{{factor} * {name}}}", f"${{ {name} * {factor} }}",
               f"${{({name} + 1) * {factor} - {factor}}}", f"${{{name} * {factor} // 1}}")
        )  # fmt: skip
        _set(data, path, written)
    if not sizes or ch.chance(20):
        sizes[f"unused_{len(sizes)}"] = ch.integer(1, 99)


def _s_reference(ch: Chooser, m: _Mutated) -> str:
    """A `${...}` that cannot be resolved: unknown, not an expression, not allowed."""
    path = ch.pick(_size_paths(m.data))
    sizes = m.data.setdefault("sizes", {"hidden": 64})
    known = ch.pick(sorted(sizes))
    m.expect = frozenset({"E211"})
    written = ch.pick(
        ("${nosuch}", f"${{{known} +}}", f"${{{known} / 2}}", f"${{{known} ** 2}}",
         f"${{{known} // 0}}", "${__import__('os').system('true')}", f"${{-{known}}}",
         "${}", f"${{{known}.real}}", "${1.5}", f"${{{known}_typo}}", "${'8'}")
    )  # fmt: skip
    if ch.chance(15):  # the size itself is not an integer
        sizes[known] = ch.pick(("64", 6.4, True, [64]))
        written = f"${{{known}}}"
        m.expect = frozenset({"E211", "E202"})
    _set(m.data, path, written)
    return "size_reference"


def _typo(ch: Chooser, key: str) -> str:
    """A slip of the fingers, or another framework's word for `key`."""
    synonyms = KEY_SYNONYMS.get(key, ())
    choice = ch.pick(("drop", "double", "swap", "plural", "capital", "synonym"))
    if choice == "synonym" and synonyms:
        return ch.pick(synonyms)
    if choice == "drop" and len(key) > 2:
        at = ch.integer(1, len(key) - 1)
        return key[:at] + key[at + 1 :]
    if choice == "double":
        at = ch.integer(0, len(key) - 1)
        return key[: at + 1] + key[at:]
    if choice == "swap" and len(key) > 3:
        at = ch.integer(1, len(key) - 3)
        return key[:at] + key[at + 1] + key[at] + key[at + 2 :]
    if choice == "capital":
        return key[:1].upper() + key[1:]
    return key + "s"


def _s_misspelled_key(ch: Chooser, m: _Mutated) -> str | None:
    """A key of the spec misspelled where it is written: one error, at the key as written,
    however required the key (not also "missing" where its mapping starts)."""
    paths = [p for p in _mappings(m.data) if p != ("sizes",) and _get(m.data, p)]
    path = ch.pick(paths)
    mapping = _get(m.data, path)
    key = ch.pick([k for k in mapping if isinstance(k, str)])
    typo = _typo(ch, key)
    if typo in _KNOWN_KEYS or typo in mapping or not typo.isidentifier():
        typo = key + "_"
    renamed = {(typo if k == key else k): v for k, v in mapping.items()}
    if path:
        _set(m.data, path, renamed)
    else:
        m.data = renamed
    m.expect = frozenset({"E200"})
    m.locate = lambda text: key_line(text, path, typo, 0)
    return "misspelled_key"


def _s_container(ch: Chooser, m: _Mutated) -> str:
    """A list where a mapping goes, or a mapping where a list goes."""
    choices = [("parallel",)] if m.data.get("parallel") else []
    choices += [("inputs",), ("inputs", 0, "shape"), ("layers",), ("sizes",)]
    path = ch.pick(choices)
    value = _get(m.data, path) if path != ("sizes",) else m.data.get("sizes") or {"n": 4}
    if isinstance(value, dict):
        wrong: Any = [{k: v} for k, v in value.items()]  # written with `- ` before each key
    elif path == ("inputs", 0, "shape"):
        wrong = {f"d{i}": size for i, size in enumerate(value)}
    elif path == ("inputs",):
        wrong = {item["name"]: item["shape"] for item in value}
    else:
        wrong = value[0]  # the first layer, written without `- `
    _set(m.data, path, wrong)
    m.expect = frozenset({"E202"})
    m.locate = lambda text: value_line(text, path)
    return "container_" + "_".join(map(str, path))


SCHEMA = (
    _s_reference,
    _s_unknown_key,
    _s_unknown_kind,
    _s_wrong_type,
    _s_out_of_range,
    _s_bad_choice,
    _s_missing_key,
    _s_bad_name,
    _s_duplicate_name,
    _s_version,
    _s_lists,
    _s_misspelled_key,
    _s_container,
)


# YAML-level mutations.

OBJECT_TAGS = (
    '!!python/object/apply:os.system ["true"]',
    "!!python/name:os.system ''",
    "!!python/object:__main__.Evil {}",
    "!!python/tuple [1, 2]",
    "!custom 3",
    "!!set {a: null}",
    "!!omap [{a: 1}]",
    "!<tag:example.com,2000:app/x> 3",
)


def _y_duplicate_key(ch: Chooser, m: _Mutated) -> str:
    path = ch.pick(_mappings(m.data))
    mapping = _get(m.data, path)
    items = list(mapping.items())
    if not items:
        mapping["kind"] = "relu"
        items = list(mapping.items())
    position = ch.integer(0, len(items) - 1)
    key, value = items[position]
    again = ch.pick((value, 1, "x"))
    items.insert(ch.integer(position + 1, len(items)), (key, again))
    pairs = Pairs(tuple(items))
    if path:
        _set(m.data, path, pairs)
    else:
        m.data = pairs
    m.expect = frozenset({"E101"})
    m.locate = lambda text: key_line(text, path, key, 1)
    return "duplicate_key"


def _y_duplicate_section(ch: Chooser, m: _Mutated) -> str:
    """A top-level section given twice, the second copy written again further down (two
    drafts pasted together, a section copied from another spec)."""
    sections = [k for k in m.data if k in ("parallel", "inputs", "layers", "training", "sizes")]
    key = ch.pick(sections)
    again = copy.deepcopy(m.data[key])
    if key == "parallel" and isinstance(again, dict):
        again["data"] = again.get("data", 1) * 2
    elif key == "layers" and isinstance(again, list) and ch.chance(50):
        again = again[: max(1, len(again) // 2)]
    m.data = Pairs((*m.data.items(), (key, again)))
    m.expect = frozenset({"E101"})
    m.locate = lambda text: key_line(text, (), key, 1)
    return "duplicate_section"


def _y_unquoted_reference(ch: Chooser, m: _Mutated) -> str:
    """A `${...}` left unquoted inside `[...]`, where YAML reads `{` as a mapping."""
    shape = list(_shape(m.data))
    index = ch.integer(0, len(shape) - 1)
    name = f"unquoted_{index}"
    sizes = m.data.setdefault("sizes", {})
    if not isinstance(sizes, dict):
        sizes = m.data["sizes"] = {}
    sizes[name] = shape[index] if isinstance(shape[index], int) else 8
    shape[index] = Raw("${" + name + "}")
    written = ", ".join(
        x.text if isinstance(x, Raw) else Emitter(ch, plain=True).flow(x) for x in shape
    )
    _set(m.data, ("inputs", 0, "shape"), Raw(f"[{written}]"))
    m.expect = frozenset({"E100"})
    m.locate = lambda text: _line_holding(text, "${" + name + "}")
    return "unquoted_reference"


def _y_tag(ch: Chooser, m: _Mutated) -> str:
    paths = [*_size_paths(m.data), ("name",), ("inputs", 0, "name"), ("inputs", 0), ("layers", 0)]
    _set(m.data, ch.pick(paths), Raw(ch.pick(OBJECT_TAGS)))
    m.expect = frozenset({"E102"})
    return "object_tag"


def _y_text_tag(ch: Chooser, m: _Mutated) -> str:
    """Tags that build text or numbers: the schema decides."""
    raw = ch.pick(("!!binary aGVsbG8=", "!!timestamp 2001-12-14", "!!str 16", "!!float 16"))
    _set(m.data, ch.pick(_size_paths(m.data)), Raw(raw))
    m.expect = E2
    return "text_tag"


def _y_key(ch: Chooser, m: _Mutated) -> str:
    path = ch.pick(_mappings(m.data))
    mapping = _get(m.data, path)
    bad = Raw(ch.pick(("1", "null", "true", "[a, b]", "3.5", "{a: 1}")))
    pairs = Pairs((*mapping.items(), (bad, 1)))
    if path:
        _set(m.data, path, pairs)
    else:
        m.data = pairs
    m.expect = frozenset({"E108"})
    return "non_string_key"


def _y_top_level(ch: Chooser, m: _Mutated) -> str:
    choice = ch.pick(("list", "scalar", "empty", "comment", "documents"))
    if choice == "list":
        m.data = [m.data]
        m.expect = frozenset({"E105"})
    elif choice == "scalar":
        m.data = Raw(ch.pick(("specc", "1", '"specc: 1"', "null_", "[]")))
        m.expect = frozenset({"E105"})
    elif choice in ("empty", "comment"):
        text = "" if choice == "empty" else "# only a comment\n"
        m.text_edit = lambda _: text
        m.expect = frozenset({"E106"})
    else:
        m.text_edit = lambda text: text + "\n---\nspecc: 1\n"
        m.expect = frozenset({"E100"})
    return "top_level_" + choice


def _y_syntax(ch: Chooser, m: _Mutated) -> str:
    choice = ch.pick(("bracket", "quote", "tab", "colon"))
    if choice == "bracket":
        _set(m.data, ("inputs", 0, "shape"), Raw("[8, 16"))
    elif choice == "quote":
        _set(m.data, ("name",), Raw('"unterminated'))
    elif choice == "tab":

        def tab(text: str) -> str:
            lines = text.split("\n")
            indented = [i for i, line in enumerate(lines) if line.startswith(" ") and line.strip()]
            if not indented:
                return "specc: 1\n\tname: x\n"
            i = indented[len(indented) // 2]
            lines[i] = "\t" + lines[i].lstrip(" ")
            return "\n".join(lines)

        m.text_edit = tab
    else:
        # On a line of its own: the text may end in a comment without a line break.
        m.text_edit = lambda text: (
            text + ("" if text.endswith(("\n", "\r")) else "\n") + ("name x: : y\n")
        )
    m.expect = frozenset({"E100"})
    if choice == "quote":  # a later `"` (in a comment, say) may close it: then a bad name
        m.expect |= E2
    return "syntax_" + choice


# Characters YAML forbids anywhere in a file, even in a comment.
NON_PRINTABLE = ("\x00", "\x07", "\x0b", "\x0c", "\x1b", "\x7f", "\x9f", "\ufffe")


def _y_non_printable(ch: Chooser, m: _Mutated) -> str:
    """A character YAML forbids anywhere, even in a comment; it is reported where it is.

    (tests/regressions/nonprintable_in_comment.yaml, control_char_after_cr.yaml)
    """
    char = ch.pick(NON_PRINTABLE)
    position = ch.integer(0, 10**6)

    def edit(text: str) -> str:
        at = position % (len(text) + 1)
        m.location = yaml_location(text, at)
        return text[:at] + char + text[at:]

    m.text_edit = edit
    m.expect = frozenset({"E100"})
    return "non_printable"


_YAML_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")


def yaml_location(text: str, index: int) -> tuple[int, int]:
    """Line and column of text[index] as YAML counts them (a leading BOM takes no column)."""
    before = _YAML_BREAK.split(text[:index])
    column = len(before[-1]) + 1 - (len(before) == 1 and before[0].startswith("\ufeff"))
    return len(before), column


YAML_LEVEL = (_y_duplicate_key, _y_duplicate_section, _y_unquoted_reference, _y_tag,
              _y_text_tag, _y_key, _y_top_level, _y_syntax, _y_non_printable)  # fmt: skip


# -- where a mistake is in the final text ----------------------------------------------------


def _node_at(text: str, path: tuple[Any, ...]) -> yaml.Node | None:
    """The node at `path` of the text as PyYAML composes it (duplicate keys: the first)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            return None
        if node is None:
            return None
    return node


def key_line(text: str, path: tuple[Any, ...], key: str, occurrence: int) -> int | None:
    """The line of the `occurrence`-th (from 0) key `key` of the mapping at `path`."""
    node = _node_at(text, path)
    if not isinstance(node, yaml.MappingNode):
        return None
    keys = [k for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value == key]
    return keys[occurrence].start_mark.line + 1 if occurrence < len(keys) else None


def value_line(text: str, path: tuple[Any, ...]) -> int | None:
    """The line where the value at `path` starts."""
    node = _node_at(text, path)
    return None if node is None else node.start_mark.line + 1


def _line_holding(text: str, piece: str) -> int | None:
    """The line of the one place `piece` is written; None if it is not written once."""
    if text.count(piece) != 1:
        return None
    return yaml_location(text, text.index(piece))[0]


# Text-level mutations: random edits whose outcome is not predicted.

_INSERTS = ("[", "{", "]", "}", ":", ": ", "\t", '"', "'", "&a ", "*a", "!", "%", "@", "`",
            "|", ">", "#", "- ", "?", ",", "\n", "\n  ", "  ", "\u00e9", "\r", "0", "-1",
            "\ufeff", "\u2028", "\x85", "\x0c", "\x00", "\x7f")  # fmt: skip


def _t_edit(ch: Chooser, m: _Mutated) -> str:
    choice = ch.pick(("insert", "delete", "duplicate_line", "truncate", "swap_lines"))
    position = ch.integer(0, 10**6)
    span = ch.integer(1, 40)
    inserted = ch.pick(_INSERTS)

    def edit(text: str) -> str:
        at = position % (len(text) + 1)
        if choice == "insert":
            return text[:at] + inserted + text[at:]
        if choice == "delete":
            return text[:at] + text[at + span :]
        if choice == "truncate":
            return text[:at]
        lines = text.split("\n")
        i = position % len(lines)
        if choice == "duplicate_line":
            lines.insert(i, lines[i])
        else:
            j = (i + span) % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)

    m.text_edit = edit
    m.expect = None
    return "edit_" + choice


# -- valid variations ----------------------------------------------------------------------


def _aliases(ch: Chooser, data: dict[str, Any]) -> None:
    """Anchor the shape or an unnamed activation and refer back to it: still valid."""
    layers = data["layers"]
    plain = [
        i
        for i, layer in enumerate(layers)
        if set(layer) == {"kind"} and layer["kind"] in ACTIVATIONS
    ]
    if plain and ch.chance(50):
        first = plain[0]
        layers[first] = Anchored("act", layers[first])
        for i in plain[1:]:
            if layers[i]["kind"] == layers[first].value["kind"]:
                layers[i] = Alias("act")
    else:
        data["inputs"][0]["shape"] = Anchored("shape", data["inputs"][0]["shape"])


def _shuffle_keys(ch: Chooser, data: dict[str, Any]) -> dict[str, Any]:
    keys = list(data)
    for i in range(len(keys) - 1, 0, -1):
        j = ch.integer(0, i)
        keys[i], keys[j] = keys[j], keys[i]
    return {k: data[k] for k in keys}


# -- putting it together -------------------------------------------------------------------

FILE_NAMES = ("spec.yaml", "spec.yaml", "My Spec (1).yaml", "\u00fcn\u00ef.yml", "a'b\"c.yaml")


def draw_case(
    ch: Chooser,
    limits: Limits = FUZZ,
    *,
    mutate_percent: int = 70,
    levels: Sequence[str] = ("semantic", "schema", "yaml", "text"),
    package: str | None = None,
    plain: bool = False,
) -> Case:
    """A spec valid by construction, then with `mutate_percent` chance one mutation."""
    stack = ch.chance(limits.stack_percent)
    draft: Draft | StackDraft = (
        draw_stack(ch, limits, package=package)
        if stack
        else draw_draft(ch, limits, package=package)
    )
    m = _Mutated(draft)
    mutation = "none"
    level = ch.pick(levels) if ch.chance(mutate_percent) else None
    if level == "semantic":
        mutations = (*(STACK_SEMANTIC + GENERIC if stack else SEMANTIC), _m_two_inputs)
        for mutate in _shuffled(ch, mutations):
            if (name := mutate(ch, m)) is not None:
                mutation = name
                break
    m.data = draft.to_data()
    if not plain and ch.chance(20):
        m.data = _shuffle_keys(ch, m.data)
    if level == "schema":
        mutation = ch.pick(SCHEMA)(ch, m)
    elif level == "yaml":
        mutation = ch.pick(YAML_LEVEL)(ch, m)
    else:
        if ch.chance(25):
            _refer_to_sizes(ch, m.data)
        if not plain and ch.chance(15):
            _aliases(ch, m.data)
        if level == "text":
            mutation = _t_edit(ch, m)
    text = Emitter(ch, plain).document(m.data)
    if not plain:
        text = _dress(ch, text)
    if m.text_edit is not None:
        text = m.text_edit(text)
    expect = m.expect
    if mutation == "none" and draft.tricky:
        expect = None  # a tricky name may be refused; if accepted, it must work
    file_name = FILE_NAMES[0] if plain else ch.pick(FILE_NAMES)
    # A tricky name may be refused on its own, before the mistake.
    first_line = m.locate(text) if m.locate is not None and not draft.tricky else None
    return Case(text, mutation, expect, draft, m.mistake, file_name, m.location, first_line)


def _shuffled(ch: Chooser, items: Sequence[T]) -> Iterator[T]:
    pool = list(items)
    while pool:
        yield pool.pop(ch.integer(0, len(pool) - 1))


def single_mistake(ch: Chooser, limits: Limits = RUN, package: str | None = None) -> Case:
    """A spec with exactly one divisibility or shape mistake, written plainly (test D)."""
    while True:
        stack = ch.chance(limits.stack_percent)
        draft = (draw_stack if stack else draw_draft)(ch, limits, package=package)
        m = _Mutated(draft)
        mutate = ch.pick(STACK_SINGLE_MISTAKES if stack else SINGLE_MISTAKES)
        name = mutate(ch, m)
        if name is None or m.mistake is None:
            continue
        text = Emitter(ch, plain=True).document(draft.to_data())
        return Case(text, name, m.expect, draft, m.mistake)


@st.composite
def cases(draw: Callable[..., Any], limits: Limits = FUZZ, **options: Any) -> Case:
    return draw_case(DrawChooser(draw), limits, **options)


def sample(seed: int, count: int, limits: Limits = RUN, **options: Any) -> list[Case]:
    """`count` cases from `random.Random(seed)`: the same seed gives the same cases."""
    ch = RandomChooser(random.Random(seed))
    return [draw_case(ch, limits, **options) for _ in range(count)]
