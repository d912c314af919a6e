"""attention: self-attention, multi-head or grouped-query, whole KV groups on each tensor rank.

One column-parallel projection computes queries, keys and values. Its rows are grouped
by KV head: for each of the `kv_heads` groups, the rows of its `heads // kv_heads`
query heads, then those of its key head and of its value head. This is LiBai's
`query_key_value` (where every group is one query head), generalised to grouped-query
attention, so splitting the rows over tensor ranks hands each rank whole groups and
backward all-reduces the input's gradient once per layer. The output projection
`dense` is row-parallel and all-reduces its partial sums (Megatron's and LiBai's
layout). Masked scores get the dtype's minimum, as the reference implementations do,
from one mask that combines causality and padding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from specc.diagnostics import Clause, Help
from specc.kinds.base import (
    REFERENCE_SCHEMA,
    B,
    ClassTemplate,
    Context,
    Drawn,
    Fuzz,
    FuzzStream,
    Kind,
    LayerModel,
    Lowered,
    Mistake,
    Name,
    Running,
    Size,
    StrictModel,
    Twin,
    axis_sizes,
    divisors,
    init_kwargs,
    nearest,
    offer,
    split,
)
from specc.kinds.costs import Comm, Cost, input_gradient, numel, partial_sums, rows
from specc.kinds.costs import split as is_split
from specc.plan import Call, Expr, LayerStep, Ref, Scalar


class RopeScaling(StrictModel):
    """How rotary frequencies are stretched for contexts longer than training's."""

    kind: Literal["linear", "llama3"] = Field(
        description=(
            "`linear` divides every position by `factor`; `llama3` is Llama 3.1's: low "
            "frequencies divided by `factor`, high ones kept, a smooth blend between."
        ),
        examples=["llama3"],
    )
    factor: float = Field(gt=0.0, description="How much longer the context is.", examples=[8.0])
    low_freq_factor: float = Field(1.0, gt=0.0, description="`llama3` only.", examples=[1.0])
    high_freq_factor: float = Field(4.0, gt=0.0, description="`llama3` only.", examples=[4.0])
    original_max_positions: Size = Field(
        8192, description="`llama3` only: the context length trained on.", examples=[8192]
    )


class Rotary(StrictModel):
    """Rotary position embeddings on queries and keys (RoPE), in the rotate-half form."""

    theta: Annotated[
        float,
        WithJsonSchema({"anyOf": [{"type": "number", "exclusiveMinimum": 0}, REFERENCE_SCHEMA]}),
    ] = Field(
        10000.0, gt=0.0, description="The base of the rotation frequencies.", examples=[500000.0]
    )
    scaling: RopeScaling | None = Field(
        None, description="Frequency scaling for long contexts, as the reference configs state."
    )


class Attention(LayerModel):
    """Self-attention: q, k, v in one column-parallel projection (whole KV groups per rank),
    dense row-parallel."""

    kind: Literal["attention"] = Field(description="The layer kind.", examples=["attention"])
    heads: Size = Field(description="Number of query heads.", examples=[12])
    kv_heads: Size | None = Field(
        None,
        description=(
            "Number of key/value heads (grouped-query attention; 1 is multi-query); "
            "defaults to `heads`. Tensor ranks hold whole groups, so tensor must divide it."
        ),
        examples=[8],
    )
    causal: bool = Field(False, description="Mask future positions (GPT).", examples=[True])
    mask: Name | None = Field(
        None,
        description="Name of an int64 [batch, seq] input; 0 marks padding keys (BERT).",
        examples=["attention_mask"],
    )
    qkv_bias: bool = Field(
        True, description="Biases on the q, k and v projections.", examples=[True]
    )
    output_bias: bool = Field(True, description="A bias on the output projection.", examples=[True])
    rotary: Rotary | None = Field(None, description="Rotary position embeddings (Llama).")
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout on the attention probabilities, while training.",
        examples=[0.1],
    )

    def sees_later_positions(self) -> bool:
        return not self.causal


def lower(ctx: Context, layer: Attention, x: Running) -> Lowered | None:
    what = f"attention `{ctx.name}`"
    if not ctx.expect_sequence(x, what):
        return None
    seq, hidden, heads = x.shape[1], x.shape[2], layer.heads
    kv_heads = layer.kv_heads or heads
    if hidden % heads:
        ctx.error(
            "E312",
            f"hidden size {hidden} is not divisible by heads {heads} in {what}",
            "heads",
            help=offer(
                f"head counts that divide {hidden}: {{}}", "heads", nearest(divisors(hidden), heads)
            ),
        )
    if heads % kv_heads:
        ctx.error(
            "E312",
            f"heads {heads} is not divisible by kv_heads {kv_heads} in {what}: each key/value "
            f"head serves the same number of query heads",
            "kv_heads",
            help=offer(
                f"kv_heads that divide {heads}: {{}}",
                "kv_heads",
                nearest(divisors(heads), kv_heads),
            ),
        )
    if layer.kv_heads is None:
        ctx.check_divisible(
            heads,
            "heads",
            help=Help.of(
                Clause(
                    "each tensor rank must hold whole heads: tensor sizes that divide "
                    f"{heads}: {{}}",
                    axis_sizes(heads, ctx.tensor),
                )
            ),
        )
    else:
        ctx.check_divisible(
            kv_heads,
            "kv_heads",
            help=Help.of(
                Clause(
                    "each tensor rank must hold whole key/value heads (specc does not replicate "
                    f"them): tensor sizes that divide {kv_heads}: {{}}",
                    axis_sizes(kv_heads, ctx.tensor),
                )
            ),
        )
    head_size = hidden // heads
    if layer.rotary is not None and head_size % 2:
        ctx.error(
            "E312",
            f"rotary embeddings rotate pairs of features, but the heads of {what} have "
            f"{head_size} (hidden {hidden} / heads {heads})",
            "rotary",
            help="use a head count that leaves an even head size",
        )
    call: tuple[Expr, ...] = ()
    if layer.mask is not None:
        ctx.read_input(layer.mask, "mask", x, 2, what)
        call = (Ref(layer.mask),)
    x = ctx.whole(x, "attention")
    width = (heads + 2 * kv_heads) * head_size
    params = [ctx.param("query_key_value.weight", (width, hidden), split(0))]
    if layer.qkv_bias:
        params.append(ctx.param("query_key_value.bias", (width,), split(0)))
    params.append(ctx.param("dense.weight", (hidden, heads * head_size), split(1)))
    if layer.output_bias:
        params.append(ctx.param("dense.bias", (hidden,), B))
    kwargs: list[tuple[str, Expr]] = []
    if layer.kv_heads is not None:
        kwargs.append(("kv_heads", kv_heads))
    if layer.causal:
        kwargs += [("causal", True), ("seq", seq)]
    if not layer.qkv_bias:
        kwargs.append(("qkv_bias", False))
    if not layer.output_bias:
        kwargs.append(("output_bias", False))
    if layer.dropout:
        kwargs.append(("dropout", Call("Dropout", (layer.dropout,))))
    if layer.rotary is not None:
        kwargs.append(("rotary", _rotary(layer.rotary, head_size, seq)))
    kwargs += init_kwargs(ctx.init_std)
    if ctx.output_std != ctx.init_std:
        kwargs += init_kwargs(ctx.output_std, "output_std")
    attributes: dict[str, Scalar] = {
        "heads": heads,
        "kv_heads": kv_heads,
        "causal": layer.causal,
        "mask": layer.mask,
        "qkv_bias": layer.qkv_bias,
        "output_bias": layer.output_bias,
        "dropout": layer.dropout,
        "rotary_theta": None if layer.rotary is None else layer.rotary.theta,
    }
    if layer.rotary is not None and layer.rotary.scaling is not None:
        scaling = layer.rotary.scaling
        attributes |= {
            "rope_scaling": scaling.kind,
            "rope_factor": scaling.factor,
            "rope_low_freq_factor": scaling.low_freq_factor,
            "rope_high_freq_factor": scaling.high_freq_factor,
            "rope_original_max_positions": scaling.original_max_positions,
        }
    after = ctx.stream(x)
    reduction = "all-reduced" if after.tensor_sbp == B else "reduce-scattered over the sequence"
    return Lowered(
        Call("SelfAttention", (hidden, heads), tuple(kwargs)),
        x,
        after,
        params,
        f"q, k, v split by KV groups over tensor ranks; output {reduction}",
        attributes=attributes,
        call_arguments=call,
    )


def _rotary(rotary: Rotary, head_size: int, seq: int) -> Call:
    kwargs: list[tuple[str, Expr]] = [("theta", rotary.theta)]
    scaling = rotary.scaling
    if scaling is not None:
        kwargs += [("scaling", scaling.kind), ("factor", scaling.factor)]
        if scaling.kind == "llama3":
            kwargs += [
                ("low_freq_factor", scaling.low_freq_factor),
                ("high_freq_factor", scaling.high_freq_factor),
                ("original_max_positions", scaling.original_max_positions),
            ]
    return Call("RotaryEmbedding", (head_size, seq), tuple(kwargs))


def reference(t: Twin) -> Any:
    """Attention as the reference implementations compute it, from the fused weights."""
    flow, x, p, attributes = t.flow, t.x, t.params, t.attributes
    linear = flow.nn.functional.linear
    batch, seq, hidden = x.shape
    heads, kv_heads = attributes["heads"], attributes["kv_heads"]
    size, group = hidden // heads, heads // kv_heads
    qkv = linear(x, p["query_key_value.weight"], p.get("query_key_value.bias"))
    qkv = qkv.reshape(batch, seq, kv_heads, group + 2, size)
    query = qkv[:, :, :, :group].reshape(batch, seq, heads, size).permute(0, 2, 1, 3)
    key = qkv[:, :, :, group].permute(0, 2, 1, 3)
    value = qkv[:, :, :, group + 1].permute(0, 2, 1, 3)
    if attributes["rotary_theta"] is not None:
        cos, sin = rotary_tables(flow, size, seq, attributes)
        query, key = rotate(flow, query, cos, sin), rotate(flow, key, cos, sin)
    # Each key/value head serves `group` consecutive query heads.
    key = key.repeat_interleave(group, dim=1)
    value = value.repeat_interleave(group, dim=1)
    scores = flow.matmul(query, key.transpose(2, 3)) / math.sqrt(size)
    allowed = flow.ones(batch, 1, seq, seq)
    if attributes["causal"]:
        allowed = allowed * flow.tril(flow.ones(seq, seq))
    if attributes["mask"] is not None:
        allowed = allowed * t.inputs[attributes["mask"]].to(flow.float32).reshape(batch, 1, 1, seq)
    # Added, as transformers adds its mask: a row with every key masked is uniform, and
    # its gradient reaches the scores.
    scores = scores + (1.0 - allowed) * float(flow.finfo(flow.float32).min)
    context = flow.matmul(flow.softmax(scores, dim=-1), value)
    context = context.permute(0, 2, 1, 3).reshape(batch, seq, heads * size)
    return linear(context, p["dense.weight"], p.get("dense.bias"))


def rotary_tables(flow: Any, size: int, seq: int, attributes: Mapping[str, Any]) -> tuple[Any, Any]:
    """cos and sin [seq, size] of RoPE, written from its definition (and Llama 3.1's scaling)."""
    inv_freq = [1.0 / attributes["rotary_theta"] ** (2 * i / size) for i in range(size // 2)]
    if attributes.get("rope_scaling") == "linear":
        inv_freq = [f / attributes["rope_factor"] for f in inv_freq]
    elif attributes.get("rope_scaling") == "llama3":
        factor = attributes["rope_factor"]
        low, high = attributes["rope_low_freq_factor"], attributes["rope_high_freq_factor"]
        original = attributes["rope_original_max_positions"]
        scaled = []
        for f in inv_freq:
            wavelength = 2 * math.pi / f
            if wavelength > original / low:
                scaled.append(f / factor)
            elif wavelength < original / high:
                scaled.append(f)
            else:
                smooth = (original / wavelength - low) / (high - low)
                scaled.append((1 - smooth) * f / factor + smooth * f)
        inv_freq = scaled
    angles = flow.tensor([[position * f for f in inv_freq] for position in range(seq)])
    angles = flow.cat([angles, angles], dim=-1)
    return flow.cos(angles), flow.sin(angles)


def rotate(flow: Any, x: Any, cos: Any, sin: Any) -> Any:
    half = x.shape[-1] // 2
    return x * cos + flow.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def draw(stream: FuzzStream) -> Drawn | None:
    hidden, tensor = stream.shape[-1], stream.tensor
    if len(stream.shape) != 3 or hidden % tensor:
        return None
    per_rank = hidden // tensor
    heads = tensor * stream.pick([e for e in (1, 2, 3, 4, 6, 8) if per_rank % e == 0])
    fields: dict[str, Any] = {"heads": heads}
    groups = [g for g in range(tensor, heads + 1, tensor) if heads % g == 0]
    if stream.chance(30):
        fields["kv_heads"] = stream.pick(groups)
    if stream.chance(40):
        fields["causal"] = stream.pick((True, False))
    if stream.chance(20):
        fields["mask"] = stream.read_input()
    for key in ("qkv_bias", "output_bias"):
        if stream.chance(15):
            fields[key] = stream.pick((True, False))
    if (hidden // heads) % 2 == 0 and stream.chance(25):
        fields["rotary"] = {"theta": stream.pick((10000.0, 500000.0))} if stream.chance(50) else {}
    if stream.chance(15):
        fields["dropout"] = stream.pick((0.0, 0.1))
    return Drawn(fields, stream.shape, parameters=True)


def heads_not_dividing_hidden(stream: FuzzStream, fields: dict[str, Any]) -> Mistake:
    hidden = stream.shape[-1]
    fields["heads"] = stream.pick([h for h in range(2, 50) if hidden % h] or [hidden + 1])
    fields.pop("kv_heads", None)
    return Mistake(
        "heads_not_dividing_hidden", frozenset({"E312"}), "heads", {"heads": fields["heads"]}
    )


def heads_not_divisible(stream: FuzzStream, fields: dict[str, Any]) -> Mistake | None:
    tensor, hidden = stream.tensor, stream.shape[-1]
    if tensor == 1:
        return None
    fields["heads"] = stream.pick([h for h in range(1, 50) if hidden % h == 0 and h % tensor])
    fields.pop("kv_heads", None)
    return Mistake(
        "heads_not_divisible", frozenset({"E301"}), "heads_split", {"heads": fields["heads"]}
    )


def kv_heads_not_dividing_heads(stream: FuzzStream, fields: dict[str, Any]) -> Mistake | None:
    heads = fields["heads"]
    choices = [k for k in range(2, heads + 2) if heads % k]
    if not choices:
        return None
    fields["kv_heads"] = stream.pick(choices)
    return Mistake("kv_heads_not_dividing_heads", frozenset({"E312", "E301"}))


def kv_heads_not_divisible(stream: FuzzStream, fields: dict[str, Any]) -> Mistake | None:
    tensor, heads = stream.tensor, fields["heads"]
    choices = [k for k in range(1, heads + 1) if heads % k == 0 and k % tensor]
    if tensor == 1 or not choices:
        return None
    fields["kv_heads"] = stream.pick(choices)
    return Mistake("kv_heads_not_divisible", frozenset({"E301"}))


def rotary_odd_head_size(stream: FuzzStream, fields: dict[str, Any]) -> Mistake | None:
    hidden, tensor = stream.shape[-1], stream.tensor
    # Head counts up to 4096 (hidden may be near 2**40: not every divisor).
    heads = range(tensor, min(hidden, 4096) + 1, tensor)
    odd = [h for h in heads if hidden % h == 0 and (hidden // h) % 2]
    if not odd:
        return None
    fields["heads"] = stream.pick(odd)
    fields.pop("kv_heads", None)
    fields["rotary"] = {}
    return Mistake("rotary_odd_head_size", frozenset({"E312"}))


SELF_ATTENTION = ClassTemplate(
    "SelfAttention",
    '''\
class SelfAttention(nn.Module):
    """Self-attention, grouped-query when kv_heads < heads, whole KV groups per rank.

    One column-parallel projection computes q, k and v; its rows are grouped by KV head
    (each group: its query heads, its key head, its value head), so splitting them over
    tensor ranks hands each rank whole groups, and backward all-reduces the input's
    gradient once. The output projection `dense` is row-parallel and all-reduces.
{% if plan.recipe.sequence_parallel %}
    Under sequence parallelism the input is all-gathered over the sequence by the
    projection, and `dense` reduce-scatters its output back over it.
{% endif %}
    Masked scores get the dtype's minimum. Shapes come from the input, never a fixed
    batch.
    """

    def __init__(
        self,
        hidden: int,
        heads: int,
        *,
        kv_heads: int | None = None,
        causal: bool = False,
        seq: int = 0,
        qkv_bias: bool = True,
        output_bias: bool = True,
        dropout: nn.Module | None = None,
        rotary: nn.Module | None = None,
        init_std: float | None = None,
        output_std: float | None = None,
        placement: flow.placement,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.kv_heads = kv_heads or heads
        self.group = heads // self.kv_heads  # query heads per key/value head
        self.head_size = hidden // heads
        width = (heads + 2 * self.kv_heads) * self.head_size
        self.query_key_value = ColumnParallelLinear(
            hidden, width, bias=qkv_bias, init_std=init_std, placement=placement
        )
        self.dense = RowParallelLinear(
            heads * self.head_size,
            hidden,
            bias=output_bias,
            init_std=init_std if output_std is None else output_std,
            placement=placement,
        )
        self.rotary = rotary
        self.dropout = dropout  # of the attention probabilities
        if causal:
            # 1 where a query may see a key: made once, never in a forward pass.
            rows = flow.arange(seq, placement=placement, sbp=REPLICATED)
            keep = (rows.view(seq, 1) >= rows.view(1, seq)).to(flow.float32)
            self.register_buffer("causal", keep, persistent=False)
        else:
            self.causal = None

    def forward(self, x: flow.Tensor, mask: flow.Tensor | None = None) -> flow.Tensor:
        batch, seq = x.shape[0], x.shape[1]
        groups = self.query_key_value(x)
        groups = groups.view(batch, seq, self.kv_heads, self.group + 2, self.head_size)
        query = groups[:, :, :, : self.group].flatten(2, 3).permute(0, 2, 1, 3)
        key = groups[:, :, :, self.group].permute(0, 2, 1, 3)
        value = groups[:, :, :, self.group + 1].permute(0, 2, 1, 3)
        if self.rotary is not None:
            query, key = self.rotary(query), self.rotary(key)
        if self.group > 1:
            key = self.repeat_groups(key)
            value = self.repeat_groups(value)
        scores = flow.matmul(query, key, transpose_b=True) / math.sqrt(self.head_size)
        keep = None if self.causal is None else self.causal[:seq, :seq]
        if mask is not None:
            padding = mask.view(batch, 1, 1, seq).to(scores.dtype)
            keep = padding if keep is None else keep * padding
        if keep is not None:
            scores = scores + (1.0 - keep) * lowest(scores.dtype)
        probabilities = flow.softmax(scores, dim=-1)
        if self.dropout is not None:
            probabilities = self.dropout(probabilities)
        context = flow.matmul(probabilities, value)
        return self.dense(context.permute(0, 2, 1, 3).flatten(2))

    def repeat_groups(self, x: flow.Tensor) -> flow.Tensor:
        """Each key/value head repeated for the query heads it serves."""
        batch, seq = x.shape[0], x.shape[2]
        x = x.unsqueeze(2).expand(batch, self.kv_heads, self.group, seq, self.head_size)
        return x.flatten(1, 2)
''',
    constants=("REPLICATED",),
    needs=("ColumnParallelLinear", "RowParallelLinear", "lowest"),
    uses_math=True,
)

ROTARY_EMBEDDING = ClassTemplate(
    "RotaryEmbedding",
    '''\
class RotaryEmbedding(nn.Module):
    """Rotary position embeddings (RoPE), the rotate-half form of the reference's Llama.

    The cos and sin tables are buffers on the layer's placement, computed once in
    float32 for `seq` positions, with Llama 3.1's frequency scaling or a linear one.
    """

    def __init__(
        self,
        head_size: int,
        seq: int,
        *,
        theta: float = 10000.0,
        scaling: str | None = None,
        factor: float = 1.0,
        low_freq_factor: float = 1.0,
        high_freq_factor: float = 4.0,
        original_max_positions: int = 8192,
        placement: flow.placement,
    ) -> None:
        super().__init__()
        where = {"placement": placement, "sbp": REPLICATED}
        exponent = flow.arange(0, head_size, 2, dtype=flow.float32, **where) / head_size
        inverse = 1.0 / theta**exponent
        if scaling == "linear":
            inverse = inverse / factor
        elif scaling == "llama3":
            # Long wavelengths slowed by `factor`, short ones kept, a blend between.
            wavelength = 2 * math.pi / inverse
            long = wavelength > original_max_positions / low_freq_factor
            short = wavelength < original_max_positions / high_freq_factor
            smooth = (original_max_positions / wavelength - low_freq_factor) / (
                high_freq_factor - low_freq_factor
            )
            blended = (1 - smooth) * inverse / factor + smooth * inverse
            kept_or_blended = flow.where(short, inverse, blended)
            inverse = flow.where(long, inverse / factor, kept_or_blended)
        positions = flow.arange(seq, dtype=flow.float32, **where)
        angles = positions.view(seq, 1) * inverse.view(1, -1)
        angles = flow.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        seq, half = x.shape[2], x.shape[3] // 2
        rotated = flow.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * self.cos[:seq] + rotated * self.sin[:seq]
''',
    constants=("REPLICATED",),
    uses_math=True,
)

LOWEST = ClassTemplate(
    "lowest",
    '''\
def lowest(dtype: flow.dtype) -> float:
    """The dtype's most negative number: what a masked score gets."""
    if dtype == flow.bfloat16:  # flow.finfo does not know bfloat16
        return -3.3895313892515355e38
    return float(flow.finfo(dtype).min)
''',
    placement=False,
)


def cost(step: LayerStep) -> Cost:
    """What self-attention keeps, per rank (t tensor ranks, T = local batch b x seq s):

    - its input, for the q/k/v weight's gradient: T x hidden;
    - q, k and v: T x (heads + 2 kv_heads) x head_size / t;
    - the softmax's output, b x heads/t x s x s (also what multiplies v);
    - with attention dropout, its mask and the dropped probabilities: 2 more of those;
    - the context, the dense projection's input: T x heads x head_size / t.

    Flops: the two projections (2 T x their local weights) and the two products with
    the scores (2 x 2 b heads/t s s head_size). On tensor > 1 the input's gradient is
    all-reduced in backward and the dense projection's partial sums in forward, T x
    hidden elements each.
    """
    qkv = step.params[0]
    dense = next(p for p in step.params if p.name == "dense.weight")
    batch, seq, hidden = step.input.local_shape
    heads = step.attributes["heads"]
    assert isinstance(heads, int)
    tensor = qkv.layout.shape[0] // max(qkv.layout.local_shape[0], 1)
    head_size = hidden // heads
    local_heads = heads // tensor
    tokens = rows(step.input)
    scores = batch * local_heads * seq * seq
    saved = numel(step.input) + tokens * qkv.layout.local_shape[0]
    saved += scores * (3 if step.attributes["dropout"] else 1)
    saved += tokens * local_heads * head_size
    flops = 2 * tokens * (math.prod(qkv.layout.local_shape) + math.prod(dense.layout.local_shape))
    flops += 2 * 2 * scores * head_size
    comms: tuple[Comm, ...] = ()
    if is_split(qkv):
        comms = (
            partial_sums(step, "dense partial sums"),
            input_gradient(step),
        )
    return Cost(saved=saved, flops=flops, comms=comms)


KIND = Kind(
    Attention,
    lower,
    order=600,
    classes=(LOWEST, ROTARY_EMBEDDING, SELF_ATTENTION),
    reference=reference,
    fuzz=Fuzz(
        draw,
        roles=frozenset({"sequence"}),
        weight=2,
        mistakes=(
            heads_not_dividing_hidden,
            heads_not_divisible,
            kv_heads_not_dividing_heads,
            kv_heads_not_divisible,
            rotary_odd_head_size,
        ),
    ),
    synonyms=("self_attention", "multihead_attention", "multi_head_attention", "mha"),
    cost=cost,
)
