"""attention: multi-head self-attention with whole heads on each tensor-parallel rank.

query, key and value are column-parallel projections whose rows are grouped by head,
so splitting them over tensor ranks hands each rank whole heads; the output projection
is row-parallel and all-reduces (LiBai's and Megatron's layout).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from specc.kinds.base import (
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
    Twin,
    divisors,
    listed,
    split,
)
from specc.plan import Call, Expr, Ref


class Attention(LayerModel):
    """Multi-head self-attention: q, k, v column-parallel (whole heads per rank), dense row."""

    kind: Literal["attention"] = Field(description="The layer kind.", examples=["attention"])
    heads: Size = Field(description="Number of attention heads.", examples=[12])
    causal: bool = Field(False, description="Mask future positions (GPT).", examples=[True])
    mask: Name | None = Field(
        None,
        description="Name of an int64 [batch, seq] input; 0 marks padding keys (BERT).",
        examples=["attention_mask"],
    )


def lower(ctx: Context, layer: Attention, x: Running) -> Lowered | None:
    what = f"attention `{ctx.name}`"
    if not ctx.expect_sequence(x, what):
        return None
    hidden, heads = x.shape[2], layer.heads
    if hidden % heads:
        ctx.error(
            "E312",
            f"hidden size {hidden} is not divisible by heads {heads} in {what}",
            "heads",
            help=f"head counts that divide {hidden}: {listed(divisors(hidden))}",
        )
    ctx.check_divisible(
        heads,
        "heads",
        help=f"each tensor rank must hold whole heads: tensor sizes that divide {heads}: "
        f"{listed(divisors(heads))}",
    )
    call: tuple[Expr, ...] = ()
    if layer.mask is not None:
        ctx.read_input(layer.mask, "mask", x, 2, what)
        call = (Ref(layer.mask),)
    x = ctx.whole(x, "attention")
    params = []
    for projection in ("query", "key", "value"):
        params += [
            ctx.param(f"{projection}.weight", (hidden, hidden), split(0)),
            ctx.param(f"{projection}.bias", (hidden,), split(0)),
        ]
    params += [
        ctx.param("dense.weight", (hidden, hidden), split(1)),
        ctx.param("dense.bias", (hidden,), B),
    ]
    kwargs = (("causal", True),) if layer.causal else ()
    return Lowered(
        Call("SelfAttention", (hidden, heads), kwargs),
        x,
        x,
        params,
        "q, k, v split by heads over tensor ranks; output all-reduced",
        attributes={"heads": heads, "causal": layer.causal, "mask": layer.mask},
        call_arguments=call,
    )


def reference(t: Twin) -> Any:
    flow, x, p, attributes = t.flow, t.x, t.params, t.attributes
    linear = flow.nn.functional.linear
    batch, seq, hidden = x.shape
    heads = attributes["heads"]
    size = hidden // heads

    def project(name: str) -> Any:
        y = linear(x, p[f"{name}.weight"], p[f"{name}.bias"])
        return y.reshape(batch, seq, heads, size).permute(0, 2, 1, 3)

    scores = flow.matmul(project("query"), project("key").transpose(2, 3)) / math.sqrt(size)
    if attributes["causal"]:
        future = flow.triu(flow.ones(seq, seq), 1)
        scores = scores - 10000.0 * future
    if attributes["mask"] is not None:
        padding = 1.0 - t.inputs[attributes["mask"]].to(flow.float32).reshape(batch, 1, 1, seq)
        scores = scores - 10000.0 * padding
    context = flow.matmul(flow.softmax(scores, dim=-1), project("value"))
    context = context.permute(0, 2, 1, 3).reshape(batch, seq, hidden)
    return linear(context, p["dense.weight"], p["dense.bias"])


def draw(stream: FuzzStream) -> Drawn | None:
    hidden, tensor = stream.shape[-1], stream.tensor
    if len(stream.shape) != 3 or hidden % tensor:
        return None
    per_rank = hidden // tensor
    heads = tensor * stream.pick([e for e in (1, 2, 3, 4, 6, 8) if per_rank % e == 0])
    fields: dict[str, Any] = {"heads": heads}
    if stream.chance(40):
        fields["causal"] = stream.pick((True, False))
    if stream.chance(20):
        fields["mask"] = stream.read_input()
    return Drawn(fields, stream.shape, parameters=True)


def heads_not_dividing_hidden(stream: FuzzStream, fields: dict[str, Any]) -> Mistake:
    hidden = stream.shape[-1]
    fields["heads"] = stream.pick([h for h in range(2, 50) if hidden % h] or [hidden + 1])
    return Mistake(
        "heads_not_dividing_hidden", frozenset({"E312"}), "heads", {"heads": fields["heads"]}
    )


def heads_not_divisible(stream: FuzzStream, fields: dict[str, Any]) -> Mistake | None:
    tensor, hidden = stream.tensor, stream.shape[-1]
    if tensor == 1:
        return None
    fields["heads"] = stream.pick([h for h in range(1, 50) if hidden % h == 0 and h % tensor])
    return Mistake(
        "heads_not_divisible", frozenset({"E301"}), "heads_split", {"heads": fields["heads"]}
    )


SELF_ATTENTION = ClassTemplate(
    "SelfAttention",
    '''\
class SelfAttention(nn.Module):
    """Multi-head self-attention with whole heads on each tensor-parallel rank.

    query, key and value are column-parallel [hidden, hidden] projections whose rows
    are grouped by head (rows h*d..(h+1)*d belong to head h), so splitting them over
    tensor ranks hands each rank whole heads; the output projection `dense` is
    row-parallel and all-reduces. Shapes come from the input, never a fixed batch.
    """

    def __init__(
        self,
        hidden: int,
        heads: int,
        *,
        causal: bool = False,
        placement: flow.placement,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.head_size = hidden // heads
        self.causal = causal
        self.query = ColumnParallelLinear(hidden, hidden, placement=placement)
        self.key = ColumnParallelLinear(hidden, hidden, placement=placement)
        self.value = ColumnParallelLinear(hidden, hidden, placement=placement)
        self.dense = RowParallelLinear(hidden, hidden, placement=placement)

    def split_heads(self, x: flow.Tensor) -> flow.Tensor:
        batch, seq = x.shape[0], x.shape[1]
        return x.view(batch, seq, self.heads, self.head_size).permute(0, 2, 1, 3)

    def forward(self, x: flow.Tensor, mask: flow.Tensor | None = None) -> flow.Tensor:
        query = self.split_heads(self.query(x))
        key = self.split_heads(self.key(x))
        value = self.split_heads(self.value(x))
        scores = flow.matmul(query, key, transpose_b=True) / math.sqrt(self.head_size)
        seq = x.shape[1]
        if self.causal:
            ones = flow.ones(seq, seq, placement=x.placement, sbp=REPLICATED)
            keep = flow.tril(ones).view(1, 1, seq, seq)
            scores = scores - 10000.0 * (1.0 - keep)
        if mask is not None:
            keep = mask.view(mask.shape[0], 1, 1, seq).to(flow.float32)
            scores = scores - 10000.0 * (1.0 - keep)
        context = flow.matmul(flow.softmax(scores, dim=-1), value)
        return self.dense(context.permute(0, 2, 1, 3).flatten(2))
''',
    constants=("REPLICATED",),
    needs=("ColumnParallelLinear", "RowParallelLinear"),
    uses_math=True,
)

KIND = Kind(
    Attention,
    lower,
    order=600,
    classes=(SELF_ATTENTION,),
    reference=reference,
    fuzz=Fuzz(
        draw,
        roles=frozenset({"sequence"}),
        weight=2,
        mistakes=(heads_not_dividing_hidden, heads_not_divisible),
    ),
    synonyms=("self_attention", "multihead_attention", "multi_head_attention", "mha"),
)
