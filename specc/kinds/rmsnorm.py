"""rmsnorm: root-mean-square normalisation of the last dimension with a learned scale."""

from __future__ import annotations

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
    Running,
    Twin,
)
from specc.kinds.costs import Cost, numel, rows
from specc.plan import Call, LayerStep, sbp_text


class RMSNorm(LayerModel):
    """Root-mean-square normalisation of the last dimension with a learned scale."""

    kind: Literal["rmsnorm"] = Field(description="The layer kind.", examples=["rmsnorm"])
    eps: float = Field(1e-6, gt=0.0, description="Added to the mean square.", examples=[1e-6])


def lower(ctx: Context, layer: RMSNorm, x: Running) -> Lowered:
    ctx.expect_features(x, f"rmsnorm `{ctx.name}`")
    x = ctx.whole(x, "rmsnorm")
    last = x.shape[-1]
    return Lowered(
        Call("RMSNorm", (last,), (("eps", layer.eps),)),
        x,
        x,
        [ctx.param("weight", (last,), B, decay=False)],
        f"{sbp_text(ctx.layout(x).sbp)}, needs whole features",
        attributes={"eps": layer.eps},
    )


def reference(t: Twin) -> Any:
    x, eps = t.x, t.attributes["eps"]
    return x * t.flow.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * t.params["weight"]


def draw(stream: FuzzStream) -> Drawn:
    fields = {"eps": stream.pick((1e-6, 1e-3))} if stream.chance(30) else {}
    return Drawn(fields, stream.shape, parameters=True)


RMS_NORM = ClassTemplate(
    "RMSNorm",
    '''\
class RMSNorm(nn.Module):
    """Root-mean-square normalisation of the last dimension, with a replicated scale."""

    def __init__(
        self, features: int, *, eps: float = 1e-6, placement: flow.placement
    ) -> None:
        super().__init__()
        self.eps = eps
        ones = flow.ones(features, placement=placement, sbp=REPLICATED)
        self.weight = nn.Parameter(ones)

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        scale = flow.rsqrt((x * x).mean(dim=-1, keepdim=True) + self.eps)
        return x * scale * self.weight
''',
    constants=("REPLICATED",),
)


def cost(step: LayerStep) -> Cost:
    """Keeps its input (N local elements) and each row's inverse RMS in fp32 (4 bytes a
    row); about 4 N flops."""
    return Cost(saved=numel(step.input), fixed=4 * rows(step.input), flops=4 * numel(step.input))


KIND = Kind(
    RMSNorm,
    lower,
    order=410,
    classes=(RMS_NORM,),
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"sequence", "features"})),
    synonyms=("rms_norm",),
    cost=cost,
)
