"""Random transformer stacks, valid by construction, and the mistakes that break them.

A stack starts from token ids (an `embedding`, maybe followed by position and
token-type embeddings), from images (a `patch_embedding`) or from a float
[batch, seq, hidden] input, then draws blocks that fit the running shape: attention
whose heads are a multiple of tensor and divide hidden, mlp with ffn a multiple of
tensor, norms, activations, dropout, linears (which may change hidden), residuals and
repeats whose bodies keep the shape, and at the end maybe select_token (down to
[batch, hidden]), a tied lm_head and a loss. Layers that read a second input (token
types, an attention mask) get one declared with the stream's [batch, seq].

The mutations at the end each break one rule of these kinds and name the code specc
must report; strategies.py mixes them with its own.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from specc import kinds
from specc.lower.inputs import SCORE_KINDS
from tests.fuzz.choices import (
    MAX_SIZE,
    Chooser,
    Limits,
    MeshSizes,
    draw_batch,
    draw_name,
    draw_package,
    draw_parallel,
    feature_size,
    non_multiple,
)

# Kinds the registry knows, and how the generator may draw them (kinds.base.Fuzz).
_FUZZED = tuple(kind for kind in kinds.KINDS if kind.fuzz is not None)
_ALL_KINDS = frozenset(kinds.NAMES)


@dataclass
class Node:
    """One layer of a stack; `shape` is the stream entering it (what mutations break)."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    stage: int | None = None
    stages: list[int] | None = None  # repeat
    body: list[Node] = field(default_factory=list)  # residual, repeat
    shape: tuple[int, ...] = ()
    read: str | None = None  # the key naming a model input it reads besides the stream
    table: bool = False  # offers an embedding table a head ties to (keeps its default name)
    tied: bool = False  # a head tied to that table: it runs on the table's pipeline stage
    parameters: bool = False  # holds parameters

    @property
    def units(self) -> int:
        return self.fields["times"] if self.kind == "repeat" else 1

    def walk(self) -> Iterator[Node]:
        yield self
        for node in self.body:
            yield from node.walk()

    def has_parameters(self) -> bool:
        return self.parameters or any(n.has_parameters() for n in self.body)

    def reads_input(self) -> bool:
        """Reads a model input besides the stream (so it stays on stage 0 at top level)."""
        if self.read is not None:
            return True
        return self.kind == "residual" and any(n.reads_input() for n in self.body)

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"kind": self.kind}
        if self.name is not None:
            entry["name"] = self.name
        if self.stage is not None:
            entry["stage"] = self.stage
        entry.update(copy.deepcopy(self.fields))
        if self.stages is not None:
            entry["stages"] = list(self.stages)
        if self.kind in ("residual", "repeat"):
            entry["layers"] = [node.entry() for node in self.body]
        return entry


@dataclass
class StackDraft(MeshSizes):
    package: str
    device: str | None
    parallel: dict[str, int]
    inputs: list[dict[str, Any]]  # the stream's first, then those layers read
    input_split: str | None
    layers: list[Node]
    loss: bool = False
    training: dict[str, int] | None = None
    extra_inputs: list[dict[str, Any]] = field(default_factory=list)  # unused ones
    tricky: bool = False

    @property
    def shape(self) -> list[int]:
        return self.inputs[0]["shape"]

    @property
    def input_name(self) -> str:
        return self.inputs[0]["name"]

    def names(self) -> list[str]:
        """Input name, then every top-level layer's given or default name."""
        return [self.input_name] + [
            node.name or f"{node.kind}_{index}" for index, node in enumerate(self.layers)
        ]

    def taken_names(self) -> set[str]:
        """Every name of an input or a layer, and the top level's default names."""
        given = {node.name for node in self.nodes() if node.name is not None}
        declared = {item["name"] for item in [*self.inputs, *self.extra_inputs]}
        return set(self.names()) | given | declared

    def nodes(self) -> Iterator[Node]:
        for node in self.layers:
            yield from node.walk()

    def kinds(self) -> set[str]:
        return {node.kind for node in self.nodes()}

    def units(self) -> int:
        return sum(node.units for node in self.layers)

    def heads(self) -> set[int]:
        """Top-level tied lm_heads: they run on their table's stage, whatever is written."""
        return {i for i, node in enumerate(self.layers) if node.tied}

    def stageable(self) -> list[int]:
        return [i for i in range(len(self.layers)) if i not in self.heads()]

    def has_parameters(self) -> bool:
        return any(node.has_parameters() for node in self.layers)

    def has_explicit_stages(self) -> bool:
        return any(node.stage is not None or node.stages is not None for node in self.layers)

    def clear_stages(self) -> None:
        for node in self.layers:
            node.stage = node.stages = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"specc": 1, "name": self.package}
        if self.device is not None:
            data["device"] = self.device
        if self.parallel:
            data["parallel"] = dict(self.parallel)
        if self.training is not None:
            data["training"] = dict(self.training)
        inputs = []
        for declared in [*self.inputs, *self.extra_inputs]:
            item = copy.deepcopy(declared)
            if self.input_split is not None:
                item["split"] = self.input_split
            inputs.append(item)
        data["inputs"] = inputs
        data["layers"] = [node.entry() for node in self.layers]
        if self.loss:
            data["loss"] = {"kind": "cross_entropy"}
        return data


# -- drawing -----------------------------------------------------------------------------


class _Stream:
    """What one kind's fuzz strategy sees (kinds.base.FuzzStream): the builder's choices,
    the stream entering the layer, and the mesh."""

    def __init__(self, builder: _Builder, shape: tuple[int, ...], keep: int | None = None):
        self.builder, self.shape, self.keep = builder, shape, keep
        self.tensor = builder.tensor
        self.ch = builder.ch

    def integer(self, low: int, high: int) -> int:
        return self.ch.integer(low, high)

    def pick(self, options: Any) -> Any:
        return self.ch.pick(options)

    def chance(self, percent: int) -> bool:
        return self.ch.chance(percent)

    def feature_size(self, multiple: int = 1) -> int:
        return feature_size(self.ch, self.builder.limits, multiple)

    def hidden(self) -> int:
        return self.builder.hidden()

    def read_input(self) -> str:
        return self.builder.read_input(self.shape)

    def table(self) -> tuple[str, int] | None:
        return self.builder.embedding

    def vocab(self) -> int:
        limits = self.builder.limits
        if limits.large_sizes and self.ch.chance(3):
            return self.ch.pick((2**31 + 1, MAX_SIZE // 2))
        return self.ch.integer(2, limits.max_vocab)

    def non_multiple(self) -> int:
        return non_multiple(self.ch, self.tensor)

    def times(self) -> int:
        return self.ch.integer(1, self.builder.limits.max_times)


def _weighted(options: list[kinds.Kind]) -> list[kinds.Kind]:
    """Each kind as often as its fuzz weight says; the activations together count as one."""
    pool: list[kinds.Kind] = []
    for kind in options:
        assert kind.fuzz is not None
        weight = kind.fuzz.weight if kind.activation is None else 0
        pool += [kind] * weight
    activations = [k for k in options if k.activation is not None]
    pool += activations if len(activations) == 1 else []
    return pool


class _Builder:
    """Draws layers that fit the running stream, and the inputs they read.

    What to draw comes from the layer kinds' registry: every kind with a fuzz strategy
    is drawn where its roles say, and fits itself to the stream (kinds.base.Fuzz).
    """

    def __init__(self, ch: Chooser, limits: Limits, tensor: int, batch: int) -> None:
        self.ch, self.limits, self.tensor, self.batch = ch, limits, tensor, batch
        self.flags = {"tricky": False}
        self.inputs: list[dict[str, Any]] = []
        self.taken: set[str] = set()
        self.shape: tuple[int, ...] = ()
        self.embedding: tuple[str, int] | None = None  # (name, hidden) of a tied table

    def fresh(self) -> str:
        """A name no default `<kind>_<index>` and no other name can equal."""
        while True:
            name = draw_name(self.ch, self.limits, self.taken, self.flags)
            word, _, digits = name.rpartition("_")
            if not (digits.isdigit() and word.rpartition("_")[2] in _ALL_KINDS):
                self.taken.add(name)
                return name

    def read_input(self, shape: tuple[int, ...]) -> str:
        """Declare an int64 [batch, seq] input for a layer to read; its name."""
        name = self.fresh()
        self.inputs.append({"name": name, "shape": list(shape[:2]), "dtype": "int64"})
        return name

    def hidden(self) -> int:
        return feature_size(self.ch, self.limits, self.tensor if self.ch.chance(80) else 1)

    def of_role(self, role: str) -> list[kinds.Kind]:
        return [kind for kind in _FUZZED if kind.fuzz is not None and role in kind.fuzz.roles]

    def pick_kind(self, options: list[kinds.Kind]) -> kinds.Kind:
        kind = self.ch.pick(_weighted(options) or options)
        if kind.activation is not None:
            return self.ch.pick([k for k in options if k.activation is not None])
        return kind

    def draw(self, kind: kinds.Kind, keep: int | None = None) -> tuple[Node, kinds.Drawn] | None:
        """`kind` fitted to the stream, or None where it cannot follow it."""
        assert kind.fuzz is not None
        before = len(self.inputs)
        drawn = kind.fuzz.draw(_Stream(self, self.shape, keep))
        if drawn is None:
            return None
        node = Node(kind.name, dict(drawn.fields), shape=self.shape)
        node.tied, node.parameters = drawn.tied, drawn.parameters
        if len(self.inputs) > before:  # it declared an input to read
            read = self.inputs[-1]["name"]
            node.read = next(key for key, value in drawn.fields.items() if value == read)
        return node, drawn

    # The stream's start.

    def front(self) -> list[Node]:
        ch, limits = self.ch, self.limits
        seq = ch.integer(1, limits.max_seq)
        starts = self.of_role("start")
        first = self.fresh() if ch.chance(60) else ch.pick(("x", "input_ids", "images"))
        self.taken.add(first)
        kind = ch.pick([*_weighted(starts), None])
        if kind is None:  # a float [batch, seq, hidden] input
            self.shape = (self.batch, seq, self.hidden())
            self.inputs.append({"name": first, "shape": list(self.shape)})
            return []
        self.shape = (self.batch, seq)
        node, drawn = self.draw(kind) or (None, None)
        assert node is not None and drawn is not None and drawn.takes is not None
        takes, dtype = drawn.takes
        item: dict[str, Any] = {"name": first, "shape": list(takes)}
        if dtype != "float32" or ch.chance(20):
            item["dtype"] = dtype
        self.inputs.append(item)
        node.shape = tuple(takes)
        if drawn.table is not None:
            node.name = self.fresh() if ch.chance(70) else None
            node.table = True
            self.embedding = (node.name or f"{kind.name}_0", drawn.table)
        self.shape = drawn.shape
        return [node]

    # Blocks over [batch, seq, hidden].

    def blocks(self, count: int, *, top: bool, depth: int = 0) -> list[Node]:
        """`count` blocks; unless `top`, together they keep the stream's shape."""
        layers: list[Node] = []
        for _ in range(count):
            layers += self.block(top=top, depth=depth)
        return layers

    def block(self, *, top: bool, depth: int) -> list[Node]:
        options = self.of_role("sequence") + (self.of_role("top") if top else [])
        if depth >= 2:
            options = [k for k in options if "layers" not in k.model.model_fields]
        while True:
            kind = self.pick_kind(options)
            entering = self.shape
            found = self.draw(kind)
            if found is None:
                continue
            node, drawn = found
            if drawn.body:
                node.body = self.blocks(self.ch.integer(1, 3), top=False, depth=depth + 1)
                return [node]
            if drawn.shape == entering:
                return [node]
            if drawn.shape[:-1] != entering[:-1]:
                continue  # only the features may change inside a stack
            self.shape = drawn.shape
            if top and self.ch.chance(50):
                return [node]
            # A pair that comes back to the size it started from.
            back = self.draw(kinds.BY_NAME["linear"], keep=entering[-1])
            assert back is not None
            self.shape = entering
            return [node, back[0]]

    # The end.

    def tail(self) -> list[Node]:
        ch = self.ch
        if not ch.chance(70):
            return []
        ends = list(self.of_role("end"))
        while ends:
            kind = ch.pick(_weighted(ends))
            ends.remove(kind)
            found = self.draw(kind)
            if found is None:
                continue
            node, drawn = found
            self.shape = drawn.shape
            layers = [node]
            if len(self.shape) == 2:
                for _ in range(ch.integer(0, 2)):
                    layers += self.features_block()
            return layers
        return []

    def features_block(self) -> list[Node]:
        """A layer over [batch, hidden] (after select_token)."""
        options = self.of_role("features")
        while True:
            found = self.draw(self.pick_kind(options))
            if found is not None:
                node, drawn = found
                self.shape = drawn.shape
                return [node]


def draw_stack(ch: Chooser, limits: Limits, *, package: str | None = None) -> StackDraft:
    """A valid transformer-style spec."""
    parallel, (data, tensor, pipeline) = draw_parallel(ch, limits)
    flags = {"tricky": False}
    package = draw_package(ch, limits, flags) if package is None else package
    input_split = ch.pick((None, "data", "none"))
    batch, training = draw_batch(ch, limits, data, input_split)
    builder = _Builder(ch, limits, tensor, batch)
    layers = builder.front()
    layers += builder.blocks(ch.integer(0, limits.max_layers // 2), top=True)
    middle = builder.shape
    tail = builder.tail()
    # A loss takes class scores: a model that ends in a linear or an lm_head.
    scores = bool(layers + tail) and (layers + tail)[-1].kind in SCORE_KINDS
    draft = StackDraft(
        package, ch.pick(limits.devices), parallel, builder.inputs, input_split, layers + tail,
        loss=ch.chance(40) and scores, training=training,
    )  # fmt: skip
    _fill_stages(ch, draft, pipeline, len(layers), middle)
    for node in draft.nodes():
        if node.name is None and not node.table and ch.chance(35):
            node.name = builder.fresh()
    draft.tricky = flags["tricky"] or builder.flags["tricky"]
    if pipeline > 1 and ch.chance(30):
        _explicit_stages(ch, draft, pipeline)
    return draft


def _stage_units(draft: StackDraft) -> tuple[list[tuple[int, int]], int]:
    """Units as specc counts them for stages, and how many are pinned to stage 0.

    A tied head joins its table's unit; the top-level layers up to the last one that
    reads an input stay on stage 0.
    """
    heads = draft.heads()
    pinned = max((i for i, n in enumerate(draft.layers) if n.reads_input()), default=-1)
    slots = [
        (index, repetition)
        for index, node in enumerate(draft.layers)
        if index not in heads
        for repetition in range(node.units)
    ]
    return slots, sum(1 for index, _ in slots if index <= pinned)


def _fill_stages(
    ch: Chooser, draft: StackDraft, pipeline: int, at: int, shape: tuple[int, ...]
) -> None:
    """Insert layers that keep the shape before the tail until every stage can have one."""
    while True:
        slots, pinned = _stage_units(draft)
        if len(slots) - max(pinned - 1, 0) >= pipeline:
            return
        node = Node(ch.pick(("relu", "dropout", "layernorm")), shape=shape)
        node.parameters = node.kind == "layernorm"
        if node.kind == "dropout":
            node.fields["p"] = 0.0
        draft.layers.insert(at, node)
        at += 1


def _explicit_stages(ch: Chooser, draft: StackDraft, pipeline: int) -> None:
    """Write `stage` and `stages` by hand: contiguous, never back, every stage used."""
    slots, pinned = _stage_units(draft)
    candidates = list(range(max(1, pinned), len(slots)))
    if len(candidates) < pipeline - 1:
        return
    cuts: set[int] = set()
    while len(cuts) < pipeline - 1:
        cuts.add(ch.pick(candidates))
    stage_of: dict[int, list[int]] = {}
    stage = 0
    for position, (index, _) in enumerate(slots):
        stage += position in cuts
        stage_of.setdefault(index, []).append(stage)
    running = 0
    for index, stages in stage_of.items():
        node = draft.layers[index]
        if len(set(stages)) > 1 or (node.kind == "repeat" and ch.chance(40)):
            node.stages = stages
        elif stages[0] != running or ch.chance(40):
            node.stage = stages[0]
        running = stages[-1]


# -- mistakes ----------------------------------------------------------------------------
# Each takes a strategies._Mutated whose draft is a StackDraft, breaks one rule, sets the
# codes specc must report, and returns its name; or None when the draft has no place
# for it.


def _of_kind(draft: StackDraft, *kinds: str) -> list[Node]:
    return [node for node in draft.nodes() if node.kind in kinds]


def _facts(draft: StackDraft, kind: str, node: Node, **numbers: int) -> dict[str, Any]:
    """What tests/launch/soundness.py needs to force a mistake into plain OneFlow."""
    return {
        "kind": kind,
        "data": draft.data,
        "tensor": draft.tensor,
        "batch": node.shape[0],
        "seq": node.shape[1] if len(node.shape) > 2 else 1,
        "hidden": node.shape[-1],
        "input_split": draft.input_split or "data",
        **numbers,
    }


def _kind_mistake(kind: kinds.Kind, mistake: Any) -> Any:
    """One of a kind's own mistakes (kinds.base.Fuzz.mistakes), made in a drawn layer."""

    def mutate(ch: Chooser, m: Any) -> str | None:
        nodes = [node for node in m.draft.nodes() if node.kind == kind.name]
        if not nodes:
            return None
        node = ch.pick(nodes)
        stream = _MistakeStream(ch, node.shape, m.draft.tensor)
        made = mistake(stream, node.fields)
        if made is None:
            return None
        m.expect = made.codes
        if made.forced is not None:
            m.mistake = _facts(m.draft, made.forced, node, **made.facts)
        if made.input_shape is not None:
            m.draft.inputs[0]["shape"] = list(made.input_shape)
        return str(made.name)

    mutate.__name__ = f"_k_{kind.name}_{mistake.__name__}"
    return mutate


class _MistakeStream:
    """The FuzzStream a mistake sees: the layer's stream and the mesh."""

    def __init__(self, ch: Chooser, shape: tuple[int, ...], tensor: int) -> None:
        self.ch, self.shape, self.tensor, self.keep = ch, shape, tensor, None

    def integer(self, low: int, high: int) -> int:
        return self.ch.integer(low, high)

    def pick(self, options: Any) -> Any:
        return self.ch.pick(options)

    def chance(self, percent: int) -> bool:
        return self.ch.chance(percent)

    def non_multiple(self) -> int:
        return non_multiple(self.ch, self.tensor)

    def vocab(self) -> int:
        """A vocabulary size (lm_head's `tied_and_untied` gives a tied head one)."""
        return self.ch.integer(2, 64)


_KIND_MISTAKES = tuple(
    _kind_mistake(kind, mistake)
    for kind in _FUZZED
    if kind.fuzz is not None
    for mistake in kind.fuzz.mistakes
)


def _k_tied(ch: Chooser, m: Any) -> str | None:
    layers = m.draft.layers
    heads = sorted(m.draft.heads())
    if not heads:
        return None
    index = heads[0]
    head = layers[index]
    if ch.chance(50):
        others = [n.name for n in layers[:index] if n.name and not n.table]
        head.fields["tied_to"] = ch.pick([*others, "wte_missing", "embeddings"])
        m.expect = frozenset({"E308"})
        return "tied_to_unknown"
    hidden = head.shape[-1]
    node = Node("linear", {"in_features": hidden, "out_features": hidden + ch.integer(1, 3)})
    layers.insert(index, node)
    m.expect = frozenset({"E309"})
    return "tied_width"


def _k_read_input(ch: Chooser, m: Any) -> str | None:
    readers = [n for n in m.draft.nodes() if n.read is not None]
    if not readers:
        return None
    node = ch.pick(readers)
    key = node.read
    wanted = node.fields[key]
    item = next(i for i in m.draft.inputs if i["name"] == wanted)
    choice = ch.pick(("unknown", "dtype", "shape"))
    if choice == "unknown":
        node.fields[key] = wanted + "_missing"
        m.expect = frozenset({"E308"})
    elif choice == "dtype":
        del item["dtype"]
        m.expect = frozenset({"E306"})
    else:
        item["shape"] = [*item["shape"], 2] if ch.chance(50) else [item["shape"][0] + 1, 3]
        m.expect = frozenset({"E306"})
    return "second_input_" + choice


def _k_residual_shape(ch: Chooser, m: Any) -> str | None:
    nodes = _of_kind(m.draft, "residual", "repeat")
    if not nodes:
        return None
    node = ch.pick(nodes)
    hidden = node.shape[-1]
    node.body.append(
        Node("linear", {"in_features": hidden, "out_features": hidden + ch.integer(1, 5)})
    )
    m.expect = frozenset({"E307"})
    return node.kind + "_changes_shape"


def _k_misplaced(ch: Chooser, m: Any) -> str | None:
    """A repeat inside a repeat, an embedding inside a body, or `stage` inside a body."""
    bodies = _of_kind(m.draft, "residual", "repeat")
    if not bodies:
        return None
    node = ch.pick(bodies)
    choice = ch.pick(("repeat", "embedding", "stage"))
    if choice == "repeat" and node.kind == "repeat":
        node.body.insert(0, Node("repeat", {"times": 2}, body=[Node("relu")]))
    elif choice == "embedding":
        # Inside any body it reads the float stream, not token ids (E306); a repeat
        # body is no place for it either (E313).
        node.body.insert(0, Node("embedding", {"vocab_size": 8, "hidden": node.shape[-1]}))
        m.expect = frozenset({"E306", "E313"})
        return "embedding_inside_a_body"
    else:
        ch.pick(node.body).stage = 0
        choice = "stage"
    m.expect = frozenset({"E313"})
    return choice + "_inside_a_body"


def _k_repeat_stages(ch: Chooser, m: Any) -> str | None:
    pipeline = m.draft.pipeline
    repeats = [n for n in m.draft.layers if n.kind == "repeat"]
    if pipeline == 1 or not repeats:
        return None
    node = ch.pick(repeats)
    count = node.units + ch.pick((1, -1, 2))
    node.stage, node.stages = None, [0] * count if count > 0 else [0] * (node.units + 1)
    m.expect = frozenset({"E314"})
    return "repeat_stages_length"


def _k_repeat_twins(ch: Chooser, m: Any) -> str | None:
    """A second repeat named like the first but for an underscore: one generated class."""
    layers = m.draft.layers
    repeats = [
        i
        for i, n in enumerate(layers)
        if n.kind == "repeat" and n.name and "_" in n.name and len(n.name) < 32
    ]
    if not repeats:
        return None
    index = ch.pick(repeats)
    twin = copy.deepcopy(layers[index])
    twin.name = twin.name.replace("_", "__", 1)
    twin.stage = twin.stages = None
    layers.insert(index + 1, twin)
    m.expect = frozenset({"E208"})
    return "repeat_twins"


def _k_loss_without_scores(ch: Chooser, m: Any) -> str | None:
    """A loss on a model whose last layer gives no class scores (a norm, an activation)."""
    if m.draft.loss or not m.draft.layers or m.draft.layers[-1].kind in SCORE_KINDS:
        return None
    m.draft.loss = True
    m.expect = frozenset({"E306"})
    return "loss_without_scores"


STACK_SEMANTIC = (
    *_KIND_MISTAKES, _k_tied, _k_read_input, _k_residual_shape, _k_misplaced,
    _k_repeat_stages, _k_repeat_twins, _k_loss_without_scores,
)  # fmt: skip
# Single divisibility mistakes that tests/launch/soundness.py forces into OneFlow: those
# of the kinds' mistakes that say how (kinds.base.Mistake.forced).
STACK_SINGLE_MISTAKES = _KIND_MISTAKES
