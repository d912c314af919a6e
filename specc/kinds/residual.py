"""residual: x + f(x), f being its layers, inlined into the module that holds it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from specc.kinds.base import Context, Drawn, Fuzz, FuzzStream, Kind, LayerModel, Running

if TYPE_CHECKING:
    from collections.abc import Sequence

    Layer = LayerModel  # the union of every kind's model, bound by specc.spec.models


class Residual(LayerModel):
    """x + f(x), where f is the listed layers; f must keep the shape."""

    kind: Literal["residual"] = Field(description="The layer kind.", examples=["residual"])
    layers: list[Layer] = Field(min_length=1, description="The layers of f, in order.")

    def sublayers(self) -> Sequence[LayerModel]:
        return self.layers


def lower(ctx: Context, layer: Residual, x: Running) -> Running:
    x = ctx.whole(x, "a residual")
    variable, result = ctx.residual(layer.layers, x)
    if result.shape != x.shape or result.dtype != x.dtype:
        ctx.error(
            "E307",
            f"residual `{ctx.name}` adds its input {list(x.shape)} to its layers' output "
            f"{list(result.shape)}; they must have the same shape",
            help="make the last layer of the residual return the input's size",
        )
        return result
    result = ctx.whole(result, "the residual addition")
    ctx.add_residual(variable, result)
    return result


def draw(stream: FuzzStream) -> Drawn:
    return Drawn({}, stream.shape, body=True)


KIND = Kind(
    Residual,
    lower,
    order=800,
    fuzz=Fuzz(draw, roles=frozenset({"sequence"}), weight=2),
    synonyms=("skip", "add"),
)
