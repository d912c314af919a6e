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

from tests.fuzz.choices import (
    ACTIVATIONS,
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

WITH_PARAMETERS = frozenset(
    {
        "linear", "layernorm", "rmsnorm", "embedding", "position_embedding",
        "token_type_embedding", "patch_embedding", "attention", "mlp",
    }
)  # fmt: skip
STACK_KINDS = (
    "embedding", "position_embedding", "token_type_embedding", "patch_embedding",
    "attention", "mlp", "rmsnorm", "select_token", "lm_head", "residual", "repeat",
)  # fmt: skip
_ALL_KINDS = frozenset((*STACK_KINDS, "linear", "layernorm", "dropout", *ACTIVATIONS))


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

    @property
    def units(self) -> int:
        return self.fields["times"] if self.kind == "repeat" else 1

    def walk(self) -> Iterator[Node]:
        yield self
        for node in self.body:
            yield from node.walk()

    def has_parameters(self) -> bool:
        if self.kind == "layernorm":
            return self.fields.get("affine") is not False
        return self.kind in WITH_PARAMETERS or any(n.has_parameters() for n in self.body)

    def reads_input(self) -> bool:
        """Reads a model input besides the stream (so it stays on stage 0 at top level)."""
        if self.kind == "token_type_embedding" or (
            self.kind == "attention" and "mask" in self.fields
        ):
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
        return {i for i, node in enumerate(self.layers) if node.kind == "lm_head"}

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


class _Builder:
    """Draws layers that fit the running stream, and the inputs they read."""

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

    def node(self, kind: str, **fields: Any) -> Node:
        return Node(kind, fields, shape=self.shape)

    def read_input(self) -> str:
        """Declare an int64 [batch, seq] input for a layer to read; its name."""
        name = self.fresh()
        self.inputs.append({"name": name, "shape": list(self.shape[:2]), "dtype": "int64"})
        return name

    # The stream's start.

    def front(self) -> list[Node]:
        ch, limits = self.ch, self.limits
        seq = ch.integer(1, limits.max_seq)
        start = ch.pick(("tokens", "tokens", "images", "sequence"))
        first = self.fresh() if ch.chance(60) else ch.pick(("x", "input_ids", "images"))
        self.taken.add(first)
        if start == "images":
            patch, side = ch.integer(1, 3), ch.integer(1, 3)
            channels = ch.integer(1, 3)
            self.shape = (self.batch, channels, patch * side, patch * side)
            item: dict[str, Any] = {"name": first, "shape": list(self.shape)}
            if ch.chance(20):
                item["dtype"] = "float32"
            self.inputs.append(item)
            hidden = self.hidden()
            node = self.node("patch_embedding", image_size=patch * side, patch_size=patch)
            if channels != 3 or ch.chance(30):
                node.fields["channels"] = channels
            node.fields["hidden"] = hidden
            class_token = ch.pick((None, True, False))
            if class_token is not None:
                node.fields["class_token"] = class_token
            tokens = side * side + (class_token is not False)
            self.shape = (self.batch, tokens, hidden)
            layers = [node]
        elif start == "tokens":
            self.shape = (self.batch, seq)
            self.inputs.append({"name": first, "shape": [self.batch, seq], "dtype": "int64"})
            layers = [self.embedding_node()]
        else:
            self.shape = (self.batch, seq, self.hidden())
            self.inputs.append({"name": first, "shape": list(self.shape)})
            layers = []
        if ch.chance(50):
            layers.append(self.position_embedding())
        if start == "tokens" and ch.chance(30):
            layers.append(self.token_type_embedding())
        return layers

    def hidden(self) -> int:
        return feature_size(self.ch, self.limits, self.tensor if self.ch.chance(80) else 1)

    def embedding_node(self) -> Node:
        ch, tensor = self.ch, self.tensor
        hidden = self.hidden()
        vocab = ch.integer(2, self.limits.max_vocab)
        if self.limits.large_sizes and ch.chance(3):
            vocab = ch.pick((2**31 + 1, MAX_SIZE // 2))
        node = self.node("embedding", vocab_size=vocab, hidden=hidden)
        if ch.chance(40):  # the padded table divides over tensor ranks
            node.fields["pad_vocab_to_multiple_of"] = tensor * ch.pick((1, 2, 3, 8, 128))
        elif vocab % tensor:
            node.fields["vocab_size"] = tensor * ch.integer(1, -(-vocab // tensor))
        node.name = self.fresh() if ch.chance(70) else None
        self.embedding = (node.name or "embedding_0", hidden)
        self.shape = (*self.shape, hidden)
        return node

    def position_embedding(self) -> Node:
        return self.node("position_embedding", max_positions=self.shape[1] + self.ch.integer(0, 4))

    def token_type_embedding(self) -> Node:
        types = self.ch.integer(1, 3)
        return self.node("token_type_embedding", types=types, input=self.read_input())

    # Blocks over [batch, seq, hidden].

    def blocks(self, count: int, *, top: bool, depth: int = 0) -> list[Node]:
        """`count` blocks; unless `top`, together they keep the stream's shape."""
        layers: list[Node] = []
        for _ in range(count):
            layers += self.block(top=top, depth=depth)
        return layers

    def block(self, *, top: bool, depth: int) -> list[Node]:
        ch = self.ch
        hidden = self.shape[-1]
        options = ["mlp", "layernorm", "rmsnorm", "activation", "dropout", "linear", "position"]
        options += ["token_type"]
        if hidden % self.tensor == 0:
            options += ["attention", "attention"]
        if depth < 2:
            options += ["residual", "residual"]
        if top:
            options += ["repeat", "repeat"]
        choice = ch.pick(options)
        if choice == "attention":
            return [self.attention()]
        if choice == "mlp":
            node = self.node("mlp", ffn=feature_size(ch, self.limits, self.tensor))
            if ch.chance(50):
                node.fields["activation"] = ch.pick(("gelu", "relu", "silu", "tanh"))
            return [node]
        if choice == "layernorm":
            node = self.node("layernorm")
            if ch.chance(40):
                node.fields["features"] = hidden
            if ch.chance(30):
                node.fields["eps"] = ch.pick((1e-5, 1e-12, 0.5))
            if ch.chance(20):
                node.fields["affine"] = ch.pick((True, False))
            return [node]
        if choice == "rmsnorm":
            node = self.node("rmsnorm")
            if ch.chance(30):
                node.fields["eps"] = ch.pick((1e-6, 1e-3))
            return [node]
        if choice == "activation":
            return [self.node(ch.pick(ACTIVATIONS))]
        if choice == "dropout":
            return [self.node("dropout", p=ch.pick((0.0, 0.1, 0.5)))]
        if choice == "position":
            return [self.position_embedding()]
        if choice == "token_type":
            return [self.token_type_embedding()]
        if choice == "residual":
            residual = self.node("residual")
            residual.body = self.blocks(ch.integer(1, 3), top=False, depth=depth + 1)
            return [residual]
        if choice == "repeat":
            repeat = self.node("repeat", times=ch.integer(1, self.limits.max_times))
            repeat.body = self.blocks(ch.integer(1, 3), top=False, depth=depth + 1)
            return [repeat]
        if top and ch.chance(50):
            return [self.linear(self.hidden())]
        inner = self.linear(self.hidden())  # a pair that comes back to the same size
        return [inner, self.linear(hidden)]

    def attention(self) -> Node:
        ch, hidden = self.ch, self.shape[-1]
        per_rank = hidden // self.tensor
        heads = self.tensor * ch.pick([e for e in (1, 2, 3, 4, 6, 8) if per_rank % e == 0])
        node = self.node("attention", heads=heads)
        if ch.chance(40):
            node.fields["causal"] = ch.pick((True, False))
        if ch.chance(20):
            node.fields["mask"] = self.read_input()
        return node

    def linear(self, out_features: int) -> Node:
        """A linear from the stream's size to `out_features`, split as the sizes allow."""
        ch, tensor, size = self.ch, self.tensor, self.shape[-1]
        splits: list[str | None] = [None, "data", "none"]
        splits += ["col"] if out_features % tensor == 0 else []
        splits += ["row"] if size % tensor == 0 else []
        node = self.node("linear", in_features=size, out_features=out_features)
        split = ch.pick(splits)
        if split is not None:
            node.fields["split"] = split
        if ch.chance(20):
            node.fields["bias"] = ch.pick((True, False))
        self.shape = (*self.shape[:-1], out_features)
        return node

    # The end.

    def tail(self) -> list[Node]:
        ch = self.ch
        layers: list[Node] = []
        if self.embedding and self.shape[-1] == self.embedding[1] and ch.chance(60):
            return [self.node("lm_head", tied_to=self.embedding[0])]
        if ch.chance(40):
            index = ch.integer(0, self.shape[1] - 1)
            node = self.node("select_token")
            if index or ch.chance(50):
                node.fields["index"] = index
            layers.append(node)
            self.shape = (self.shape[0], self.shape[2])
            for _ in range(ch.integer(0, 2)):
                layers += self.features_block()
        return layers

    def features_block(self) -> list[Node]:
        """A layer over [batch, hidden] (after select_token)."""
        kind = self.ch.pick(("linear", "linear", "layernorm", "activation", "mlp", "rmsnorm"))
        if kind == "linear":
            return [self.linear(self.hidden())]
        if kind == "activation":
            return [self.node(self.ch.pick(ACTIVATIONS))]
        if kind == "mlp":
            return [self.node("mlp", ffn=feature_size(self.ch, self.limits, self.tensor))]
        return [self.node(kind)]


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
    draft = StackDraft(
        package, ch.pick(limits.devices), parallel, builder.inputs, input_split, layers + tail,
        loss=ch.chance(40), training=training,
    )  # fmt: skip
    _fill_stages(ch, draft, pipeline, len(layers), middle)
    for node in draft.nodes():
        if node.name is None and node.kind != "embedding" and ch.chance(35):
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


def _k_heads_hidden(ch: Chooser, m: Any) -> str | None:
    nodes = _of_kind(m.draft, "attention")
    if not nodes:
        return None
    node = ch.pick(nodes)
    hidden = node.shape[-1]
    node.fields["heads"] = ch.pick([h for h in range(2, 50) if hidden % h] or [hidden + 1])
    m.expect = frozenset({"E312"})
    m.mistake = _facts(m.draft, "heads", node, heads=node.fields["heads"])
    return "heads_not_dividing_hidden"


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


def _k_heads_tensor(ch: Chooser, m: Any) -> str | None:
    tensor, nodes = m.draft.tensor, _of_kind(m.draft, "attention")
    if tensor == 1 or not nodes:
        return None
    node = ch.pick(nodes)
    hidden = node.shape[-1]
    node.fields["heads"] = ch.pick([h for h in range(1, 50) if hidden % h == 0 and h % tensor])
    m.expect = frozenset({"E301"})
    m.mistake = _facts(m.draft, "heads_split", node, heads=node.fields["heads"])
    return "heads_not_divisible"


def _k_ffn(ch: Chooser, m: Any) -> str | None:
    tensor, nodes = m.draft.tensor, _of_kind(m.draft, "mlp")
    if tensor == 1 or not nodes:
        return None
    node = ch.pick(nodes)
    node.fields["ffn"] = non_multiple(ch, tensor)
    m.expect = frozenset({"E301"})
    m.mistake = _facts(m.draft, "ffn", node, ffn=node.fields["ffn"])
    return "ffn_not_divisible"


def _k_vocab(ch: Chooser, m: Any) -> str | None:
    tensor, nodes = m.draft.tensor, _of_kind(m.draft, "embedding")
    if tensor == 1 or not nodes:
        return None
    fields = nodes[0].fields
    if "pad_vocab_to_multiple_of" in fields and ch.chance(50):
        vocab = fields["vocab_size"]
        multiples = [k for k in range(2, 64) if (-(-vocab // k) * k) % tensor]
        if not multiples:
            return None
        fields["pad_vocab_to_multiple_of"] = ch.pick(multiples)
        m.expect = frozenset({"E301"})
        return "padded_vocab_not_divisible"
    fields.pop("pad_vocab_to_multiple_of", None)
    fields["vocab_size"] = non_multiple(ch, tensor)
    m.expect = frozenset({"E301"})
    m.mistake = _facts(m.draft, "vocab", nodes[0], vocab=fields["vocab_size"])
    m.mistake["hidden"] = fields["hidden"]
    return "vocab_not_divisible"


def _k_positions(ch: Chooser, m: Any) -> str | None:
    nodes = [n for n in _of_kind(m.draft, "position_embedding") if n.shape[1] > 1]
    if not nodes:
        return None
    node = ch.pick(nodes)
    node.fields["max_positions"] = ch.integer(1, node.shape[1] - 1)
    m.expect = frozenset({"E310"})
    return "positions_too_few"


def _k_select(ch: Chooser, m: Any) -> str | None:
    nodes = _of_kind(m.draft, "select_token")
    if not nodes:
        return None
    node = nodes[0]
    node.fields["index"] = node.shape[1] + ch.pick((0, 1, 7))
    m.expect = frozenset({"E310"})
    return "select_past_the_end"


def _k_patch(ch: Chooser, m: Any) -> str | None:
    nodes = _of_kind(m.draft, "patch_embedding")
    if not nodes:
        return None
    fields = nodes[0].fields
    size = fields["image_size"]
    if ch.chance(50):
        fields["patch_size"] = ch.pick([p for p in range(2, size + 3) if size % p])
    else:  # the images are not what the layer takes
        shape = m.draft.shape
        index = ch.pick((1, 2, 3))
        shape[index] += ch.pick((1, 2))
    m.expect = frozenset({"E311"})
    return "patches_do_not_fit"


def _k_tied(ch: Chooser, m: Any) -> str | None:
    layers = m.draft.layers
    heads = sorted(m.draft.heads())
    if not heads:
        return None
    index = heads[0]
    head = layers[index]
    if ch.chance(50):
        others = [n.name for n in layers[:index] if n.name and n.kind != "embedding"]
        head.fields["tied_to"] = ch.pick([*others, "wte_missing", "embeddings"])
        m.expect = frozenset({"E308"})
        return "tied_to_unknown"
    hidden = head.shape[-1]
    node = Node("linear", {"in_features": hidden, "out_features": hidden + ch.integer(1, 3)})
    layers.insert(index, node)
    m.expect = frozenset({"E309"})
    return "tied_width"


def _k_read_input(ch: Chooser, m: Any) -> str | None:
    readers = [n for n in m.draft.nodes() if n.kind == "token_type_embedding" or "mask" in n.fields]
    if not readers:
        return None
    node = ch.pick(readers)
    key = "input" if node.kind == "token_type_embedding" else "mask"
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


STACK_SEMANTIC = (
    _k_heads_hidden, _k_heads_tensor, _k_ffn, _k_vocab, _k_positions, _k_select, _k_patch,
    _k_tied, _k_read_input, _k_residual_shape, _k_misplaced, _k_repeat_stages,
)  # fmt: skip
# Single divisibility mistakes that tests/launch/soundness.py forces into OneFlow.
STACK_SINGLE_MISTAKES = (_k_heads_hidden, _k_heads_tensor, _k_ffn, _k_vocab)
