"""mlp: column-parallel expansion, an activation on the split features, row-parallel projection.

The activation is any element-wise activation kind, computed on each rank's slice of
the features, so the block communicates once forward (the row projection's
all-reduce), as Megatron's and LiBai's MLPs do.
"""

from __future__ import annotations

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
    split,
)
from specc.plan import Call

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


def lower(ctx: Context, layer: MLP, x: Running) -> Lowered:
    ctx.expect_features(x, f"mlp `{ctx.name}`")
    ctx.check_divisible(layer.ffn, "ffn")
    x = ctx.whole(x, "mlp")
    hidden = x.shape[-1]
    params = [
        ctx.param("dense_h_to_4h.weight", (layer.ffn, hidden), split(0)),
        ctx.param("dense_h_to_4h.bias", (layer.ffn,), split(0)),
        ctx.param("dense_4h_to_h.weight", (hidden, layer.ffn), split(1)),
        ctx.param("dense_4h_to_h.bias", (hidden,), B),
    ]
    activation = ctx.activation(layer.activation)
    return Lowered(
        Call("MLP", (hidden, layer.ffn), (("activation", activation),)),
        x,
        x,
        params,
        "col linear, activation on split features, row linear (all-reduce)",
        attributes={"activation": layer.activation},
    )


def reference(t: Twin) -> Any:
    from specc.kinds import activation_reference

    linear, p = t.flow.nn.functional.linear, t.params
    hidden = linear(t.x, p["dense_h_to_4h.weight"], p["dense_h_to_4h.bias"])
    hidden = activation_reference(t.attributes["activation"])(t.flow, hidden)
    return linear(hidden, p["dense_4h_to_h.weight"], p["dense_4h_to_h.bias"])


def draw(stream: FuzzStream) -> Drawn:
    from specc.kinds import ACTIVATIONS

    fields: dict[str, Any] = {"ffn": stream.feature_size(stream.tensor)}
    if stream.chance(50):
        fields["activation"] = stream.pick(tuple(ACTIVATIONS))
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
    """Column-parallel up, activation on the split features, row-parallel down."""

    def __init__(
        self, hidden: int, ffn: int, *, activation: nn.Module, placement: flow.placement
    ) -> None:
        super().__init__()
        self.dense_h_to_4h = ColumnParallelLinear(hidden, ffn, placement=placement)
        self.activation = activation
        self.dense_4h_to_h = RowParallelLinear(ffn, hidden, placement=placement)

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        return self.dense_4h_to_h(self.activation(self.dense_h_to_4h(x)))
''',
    needs=("ColumnParallelLinear", "RowParallelLinear"),
)

KIND = Kind(
    MLP,
    lower,
    order=610,
    classes=(MLP_CLASS,),
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"sequence", "features"}), mistakes=(ffn_not_divisible,)),
    synonyms=("feed_forward", "feedforward", "ffn"),
)
