"""mlp: column-parallel expansion, an activation on the split features, row-parallel projection.

The activation is any element-wise activation kind, computed on each rank's slice of
the features, so the block communicates once forward (the row projection's
all-reduce), as Megatron's and LiBai's MLPs do. A gated MLP (SwiGLU with silu, GeGLU
with gelu: activation(gate) * up) keeps gate and up in one column-parallel projection
whose rows alternate between them, so each rank holds both halves of its features
whatever the tensor size, and the input's gradient is all-reduced once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

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
    Running,
    Size,
    Twin,
    init_kwargs,
    split,
)
from specc.kinds.costs import Comm, Cost, input_gradient, numel, partial_sums, rows
from specc.kinds.costs import split as is_split
from specc.plan import Call, Expr, LayerStep

if TYPE_CHECKING:
    # The registered activation kinds, a Literal bound by specc.spec.models once every
    # kind module is loaded.
    ActivationName = str


class MLP(LayerModel):
    """Column-parallel linear, activation, row-parallel linear."""

    kind: Literal["mlp"] = Field(description="The layer kind.", examples=["mlp"])
    ffn: Size = Field(description="Width of the hidden layer.", examples=[3072])
    activation: ActivationName = Field(
        "gelu", description="Activation between the two linears.", examples=["gelu"]
    )
    gated: bool = Field(
        False,
        description="activation(gate) * up, gate and up both [hidden, ffn] (SwiGLU, GeGLU).",
        examples=[True],
    )
    bias: bool = Field(True, description="Biases on both projections.", examples=[True])


def lower(ctx: Context, layer: MLP, x: Running) -> Lowered:
    ctx.expect_features(x, f"mlp `{ctx.name}`")
    ctx.check_divisible(layer.ffn, "ffn")
    x = ctx.whole(x, "mlp")
    hidden, ffn = x.shape[-1], layer.ffn
    width = 2 * ffn if layer.gated else ffn
    params = [ctx.param("dense_h_to_4h.weight", (width, hidden), split(0))]
    if layer.bias:
        params.append(ctx.param("dense_h_to_4h.bias", (width,), split(0)))
    params.append(ctx.param("dense_4h_to_h.weight", (hidden, ffn), split(1)))
    if layer.bias:
        params.append(ctx.param("dense_4h_to_h.bias", (hidden,), B))
    kwargs: list[tuple[str, Expr]] = [("activation", ctx.activation(layer.activation))]
    if layer.gated:
        kwargs.append(("gated", True))
    if not layer.bias:
        kwargs.append(("bias", False))
    kwargs += init_kwargs(ctx.init_std)
    if ctx.output_std != ctx.init_std:
        kwargs += init_kwargs(ctx.output_std, "output_std")
    after = ctx.stream(x)
    reduction = "all-reduce" if after.tensor_sbp == B else "reduce-scatter over the sequence"
    return Lowered(
        Call("MLP", (hidden, ffn), tuple(kwargs)),
        x,
        after,
        params,
        f"col linear, activation on split features, row linear ({reduction})",
        attributes={"activation": layer.activation, "gated": layer.gated, "bias": layer.bias},
    )


def reference(t: Twin) -> Any:
    from specc.kinds import activation_reference

    linear, p = t.flow.nn.functional.linear, t.params
    activation = activation_reference(t.attributes["activation"])
    hidden = linear(t.x, p["dense_h_to_4h.weight"], p.get("dense_h_to_4h.bias"))
    if t.attributes["gated"]:
        gate, up = hidden[..., 0::2], hidden[..., 1::2]  # the rows alternate
        hidden = activation(t.flow, gate) * up
    else:
        hidden = activation(t.flow, hidden)
    return linear(hidden, p["dense_4h_to_h.weight"], p.get("dense_4h_to_h.bias"))


def draw(stream: FuzzStream) -> Drawn:
    from specc.kinds import ACTIVATIONS

    fields: dict[str, Any] = {"ffn": stream.feature_size(stream.tensor)}
    if stream.chance(50):
        fields["activation"] = stream.pick(tuple(ACTIVATIONS))
    if stream.chance(25):
        fields["gated"] = stream.pick((True, False))
    if stream.chance(20):
        fields["bias"] = stream.pick((True, False))
    return Drawn(fields, stream.shape, parameters=True)


def ffn_not_divisible(stream: FuzzStream, fields: dict[str, Any]) -> Mistake | None:
    if stream.tensor == 1:
        return None
    fields["ffn"] = stream.non_multiple()
    return Mistake("ffn_not_divisible", frozenset({"E301"}), "ffn", {"ffn": fields["ffn"]})


MLP_CLASS = ClassTemplate(
    "MLP",
    '''\
class MLP(nn.Module):
    """Column-parallel up, activation on the split features, row-parallel down.

    Gated (SwiGLU, GeGLU): activation(gate) * up, gate and up in one column-parallel
    projection whose rows alternate between them, so every rank holds both halves of
    its features whatever the tensor size.
    """

    def __init__(
        self,
        hidden: int,
        ffn: int,
        *,
        activation: nn.Module,
        gated: bool = False,
        bias: bool = True,
        init_std: float | None = None,
        output_std: float | None = None,
        placement: flow.placement,
    ) -> None:
        super().__init__()
        self.gated = gated
        width = 2 * ffn if gated else ffn
        self.dense_h_to_4h = ColumnParallelLinear(
            hidden, width, bias=bias, init_std=init_std, placement=placement
        )
        self.activation = activation
        self.dense_4h_to_h = RowParallelLinear(
            ffn,
            hidden,
            bias=bias,
            init_std=init_std if output_std is None else output_std,
            placement=placement,
        )

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        y = self.dense_h_to_4h(x)
        if self.gated:
            y = y.view(*y.shape[:-1], -1, 2)
            y = self.activation(y[..., 0]) * y[..., 1]
        else:
            y = self.activation(y)
        return self.dense_4h_to_h(y)
''',
    needs=("ColumnParallelLinear", "RowParallelLinear"),
)


def cost(step: LayerStep) -> Cost:
    """What an MLP keeps, per rank (t tensor ranks, T local tokens): its input (T x
    hidden), the activation's input (T x width / t, width = ffn, or 2 ffn when gated)
    and the second projection's input (T x ffn / t; gated, also the gate's output).

    Flops: 2 T x both local weights, and T x width / t for the activation. On tensor > 1
    the input's gradient is all-reduced in backward and the partial sums in forward,
    T x hidden elements each.
    """
    up = step.params[0]
    down = next(p for p in step.params if p.name == "dense_4h_to_h.weight")
    tokens = rows(step.input)
    width, ffn = up.layout.local_shape[0], down.layout.local_shape[1]
    saved = numel(step.input) + tokens * width + tokens * ffn
    saved += tokens * ffn if step.attributes["gated"] else 0
    flops = 2 * tokens * (math.prod(up.layout.local_shape) + math.prod(down.layout.local_shape))
    flops += tokens * width
    comms: tuple[Comm, ...] = ()
    if is_split(up):
        comms = (
            partial_sums(step),
            input_gradient(step),
        )
    return Cost(saved=saved, flops=flops, comms=comms)


KIND = Kind(
    MLP,
    lower,
    order=610,
    classes=(MLP_CLASS,),
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"sequence", "features"}), mistakes=(ffn_not_divisible,)),
    synonyms=("feed_forward", "feedforward", "ffn"),
    cost=cost,
)
