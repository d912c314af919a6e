"""dropout: zeroes elements at random while training, in whatever layout it meets."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from specc.kinds.base import (
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
from specc.plan import Call, sbp_text


class Dropout(LayerModel):
    """Zeroes elements with probability p during training; keeps the layout of its input."""

    kind: Literal["dropout"] = Field(description="The layer kind.", examples=["dropout"])
    p: float = Field(
        ge=0.0, lt=1.0, description="Probability of zeroing an element.", examples=[0.1]
    )


def lower(ctx: Context, layer: Dropout, x: Running) -> Lowered:
    ctx.expect_features(x, f"dropout `{ctx.name}`")
    comment = f"{sbp_text(ctx.layout(x).sbp)}, element-wise"
    module = Call("nn.Dropout", kwargs=(("p", layer.p),))
    return Lowered(module, x, x, (), comment, attributes={"p": layer.p})


def reference(t: Twin) -> Any:
    return t.x  # the parity tests compare models in eval mode


def draw(stream: FuzzStream) -> Drawn:
    return Drawn({"p": stream.pick((0.0, 0.1, 0.5, 0.25, 0.999, 1e-7))}, stream.shape)


KIND = Kind(
    Dropout,
    lower,
    order=300,
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"sequence", "features"})),
)
