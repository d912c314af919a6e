"""repeat: its layers `times` times, each with its own weights, as one class and a loop.

A repeat's body becomes a module class of its own (`<Name>Layer`), built `times`
times in an `nn.ModuleList`, so the generated code does not grow with the layer count;
with a pipeline, each repetition can run on its own stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from specc.kinds.base import (
    Context,
    Drawn,
    Fuzz,
    FuzzStream,
    Kind,
    LayerModel,
    Running,
    Size,
    StageIndex,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    Layer = LayerModel  # the union of every kind's model, bound by specc.spec.models


class Repeat(LayerModel):
    """The listed layers `times` times, each repetition with its own weights."""

    kind: Literal["repeat"] = Field(description="The layer kind.", examples=["repeat"])
    times: Size = Field(description="Number of repetitions.", examples=[12])
    layers: list[Layer] = Field(min_length=1, description="One repetition's layers, in order.")
    stages: list[StageIndex] | None = Field(
        None,
        description="Pipeline stage of each repetition, so a stack can be cut between stages.",
        examples=[[0, 0, 1, 1]],
    )

    opens_scope: ClassVar[bool] = True

    def sublayers(self) -> Sequence[LayerModel]:
        return self.layers

    def listed_stages(self) -> Sequence[int] | None:
        return self.stages


def lower(ctx: Context, layer: Repeat, x: Running) -> Running:
    if not ctx.top:
        ctx.error(
            "E313",
            f"repeat `{ctx.name}` is inside another repeat; nesting is not supported",
            help="flatten the inner repeat into its layers",
        )
        return x
    x = ctx.whole(x, "a repeat")
    return ctx.repeat(layer.layers, layer.times, x)


def draw(stream: FuzzStream) -> Drawn:
    return Drawn({"times": stream.times()}, stream.shape, body=True)


KIND = Kind(
    Repeat,
    lower,
    order=810,
    fuzz=Fuzz(draw, roles=frozenset({"top"}), weight=2),
    synonyms=("stack", "sequential"),
)
