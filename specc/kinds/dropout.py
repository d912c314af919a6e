"""dropout: zeroes elements at random while training, each shard of a split tensor its own.

OneFlow's nn.Dropout draws one mask and applies it on every rank: right for a
replicated tensor, but every shard of a split one would repeat the same pattern. The
generated `Dropout` draws its mask as a global random tensor laid out like its input.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from specc.kinds.base import (
    ClassTemplate,
    Context,
    Drawn,
    Fuzz,
    FuzzStream,
    Kind,
    LayerModel,
    Lowered,
    Running,
    Twin,
)
from specc.kinds.costs import Cost, numel
from specc.plan import Call, LayerStep, sbp_text


class Dropout(LayerModel):
    """Zeroes elements with probability p during training; keeps the layout of its input."""

    kind: Literal["dropout"] = Field(description="The layer kind.", examples=["dropout"])
    p: float = Field(
        ge=0.0, lt=1.0, description="Probability of zeroing an element.", examples=[0.1]
    )


def lower(ctx: Context, layer: Dropout, x: Running) -> Lowered:
    ctx.expect_features(x, f"dropout `{ctx.name}`")
    comment = f"{sbp_text(ctx.layout(x).sbp)}, element-wise"
    return Lowered(Call("Dropout", (layer.p,)), x, x, (), comment, attributes={"p": layer.p})


def reference(t: Twin) -> Any:
    return t.x  # the parity tests compare models in eval mode


def draw(stream: FuzzStream) -> Drawn:
    return Drawn({"p": stream.pick((0.0, 0.1, 0.5, 0.25, 0.999, 1e-7))}, stream.shape)


DROPOUT = ClassTemplate(
    "Dropout",
    '''\
class Dropout(nn.Module):
    """Zeroes elements with probability p in training; scales the rest by 1/(1 - p).

    The mask is a global random tensor with the input's placement and SBP, so every
    shard of a split input draws its own, and replicas draw the same.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = flow.rand(*x.shape, placement=x.placement, sbp=x.sbp) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
''',
    placement=False,
)


def cost(step: LayerStep) -> Cost:
    """Keeps its mask in the activation's precision (Dropout multiplies by it): N, the
    input's local elements; nothing when p is 0."""
    kept = numel(step.input) if step.attributes["p"] else 0
    return Cost(saved=kept, flops=2 * kept)


KIND = Kind(
    Dropout,
    lower,
    order=300,
    classes=(DROPOUT,),
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"sequence", "features"})),
    cost=cost,
)
