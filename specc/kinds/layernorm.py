"""layernorm: layer normalisation of the last dimension, which it needs whole."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from specc.diagnostics import Clause, Help, Values
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
    Size,
    Twin,
)
from specc.kinds.costs import Cost, numel, rows
from specc.plan import Call, LayerStep, sbp_text


class LayerNorm(LayerModel):
    """Normalises the last dimension; needs it whole on every rank."""

    kind: Literal["layernorm"] = Field(description="The layer kind.", examples=["layernorm"])
    features: Size | None = Field(
        None,
        description="Size of the normalised (last) dimension; inferred when omitted.",
        examples=[1024],
    )
    eps: float = Field(1e-5, gt=0.0, description="Added to the variance.", examples=[1e-5])
    affine: bool = Field(True, description="Learn a scale and a shift.", examples=[True])


def lower(ctx: Context, layer: LayerNorm, x: Running) -> Lowered:
    ctx.expect_features(x, f"layernorm `{ctx.name}`")
    last = x.shape[-1]
    if layer.features is not None and layer.features != last:
        ctx.error(
            "E304",
            f"features {layer.features} of layernorm `{ctx.name}` does not match its input, "
            f"whose last dimension is {last}",
            "features",
            help=Help.of(
                Clause("set features: {}", Values("features", (last,))),
                "leave it out to infer it",
            ),
        )
    x = ctx.whole(x, "layernorm")
    params = [ctx.param(p, (last,), B, decay=False) for p in ("weight", "bias")]
    params = params if layer.affine else []
    kwargs: tuple[tuple[str, Any], ...] = (("eps", layer.eps),)
    if not layer.affine:
        kwargs += (("affine", False),)
    return Lowered(
        Call("LayerNorm", (last,), kwargs),
        x,
        x,
        params,
        f"{sbp_text(ctx.layout(x).sbp)}, needs whole features",
        attributes={"eps": layer.eps, "affine": layer.affine},
    )


def reference(t: Twin) -> Any:
    p = t.params
    shape = (t.x.shape[-1],)
    return t.flow.nn.functional.layer_norm(
        t.x, shape, p.get("weight"), p.get("bias"), t.attributes["eps"]
    )


def draw(stream: FuzzStream) -> Drawn:
    fields: dict[str, Any] = {}
    if stream.chance(40):
        fields["features"] = stream.shape[-1]
    if stream.chance(30):
        fields["eps"] = stream.pick((1e-5, 1e-6, 1e-12, 0.001, 0.5, 1.0))
    if stream.chance(20):
        fields["affine"] = stream.pick((True, False))
    return Drawn(fields, stream.shape, parameters=fields.get("affine") is not False)


LAYER_NORM = ClassTemplate(
    "LayerNorm",
    '''\
class LayerNorm(nn.Module):
    """Layer normalisation of the last dimension, with a replicated scale and shift.

    It needs the whole last dimension on every rank; the model gathers a split input
    before calling it.
    """

    def __init__(
        self,
        features: int,
        *,
        eps: float = 1e-5,
        affine: bool = True,
        placement: flow.placement,
    ) -> None:
        super().__init__()
        self.features = features
        self.eps = eps
        if affine:
            ones = flow.ones(features, placement=placement, sbp=REPLICATED)
            zeros = flow.zeros(features, placement=placement, sbp=REPLICATED)
            self.weight = nn.Parameter(ones)
            self.bias = nn.Parameter(zeros)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        shape = (self.features,)
        return nn.functional.layer_norm(x, shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.features}, eps={self.eps}"
''',
    constants=("REPLICATED",),
)


def cost(step: LayerStep) -> Cost:
    """Keeps its input (N local elements) and each row's mean and inverse standard
    deviation in fp32 (8 bytes a row); about 5 N flops."""
    return Cost(saved=numel(step.input), fixed=8 * rows(step.input), flops=5 * numel(step.input))


KIND = Kind(
    LayerNorm,
    lower,
    order=400,
    classes=(LAYER_NORM,),
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"sequence", "features"})),
    cost=cost,
)
