"""position_embedding: adds learned embeddings of positions 0..seq-1, a replicated table."""

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
    Mistake,
    Running,
    Size,
    Twin,
    init_kwargs,
)
from specc.kinds.costs import Cost, numel
from specc.plan import Call, LayerStep


class PositionEmbedding(LayerModel):
    """Adds a learned position embedding, replicated, for positions 0..seq-1."""

    kind: Literal["position_embedding"] = Field(
        description="The layer kind.", examples=["position_embedding"]
    )
    max_positions: Size = Field(description="Rows of the position table.", examples=[1024])


def lower(ctx: Context, layer: PositionEmbedding, x: Running) -> Lowered | None:
    if not ctx.expect_sequence(x, f"position_embedding `{ctx.name}`"):
        return None
    seq, hidden = x.shape[1], x.shape[2]
    if seq > layer.max_positions:
        ctx.error(
            "E310",
            f"the sequence has {seq} positions but position_embedding `{ctx.name}` has "
            f"max_positions {layer.max_positions}",
            "max_positions",
            help=Help.of(
                Clause("set max_positions to at least {}", Values("max_positions", (seq,))),
                "shorten the sequence",
            ),
        )
    x = ctx.whole(x, "position_embedding")
    return Lowered(
        Call("PositionEmbedding", (layer.max_positions, hidden), init_kwargs(ctx.init_std)),
        x,
        x,
        [ctx.param("weight", (layer.max_positions, hidden), B)],
        "adds its positions' rows (the sequence is split)"
        if x.tensor_sbp != B
        else "adds replicated rows 0..seq-1",
    )


def reference(t: Twin) -> Any:
    return t.x + t.params["weight"][: t.x.shape[1]]


def draw(stream: FuzzStream) -> Drawn:
    return Drawn(
        {"max_positions": stream.shape[1] + stream.integer(0, 4)}, stream.shape, parameters=True
    )


def too_few_positions(stream: FuzzStream, fields: dict[str, Any]) -> Mistake | None:
    seq = stream.shape[1]
    if seq < 2:
        return None
    fields["max_positions"] = stream.integer(1, seq - 1)
    return Mistake("positions_too_few", frozenset({"E310"}))


POSITION_EMBEDDING = ClassTemplate(
    "PositionEmbedding",
    '''\
class PositionEmbedding(nn.Module):
    """Adds learned embeddings of positions 0..seq-1 (a replicated table)."""

    def __init__(
        self,
        positions: int,
        hidden: int,
        *,
        init_std: float = 0.02,
        placement: flow.placement,
    ) -> None:
        super().__init__()
        table = flow.empty(positions, hidden, placement=placement, sbp=REPLICATED)
        self.weight = nn.Parameter(table)
        nn.init.normal_(self.weight, std=init_std)

    def forward(self, hidden: flow.Tensor) -> flow.Tensor:
{% if plan.recipe.sequence_parallel %}
        # The hidden stream is split over the sequence: each rank adds its positions.
        rows = self.weight[: hidden.shape[1]].to_global(sbp=POSITIONS)
        return hidden + rows
{% else %}
        return hidden + self.weight[: hidden.shape[1]]
{% endif %}
''',
    constants=("REPLICATED",),
    sequence_constants=("POSITIONS",),
)


def cost(step: LayerStep) -> Cost:
    """Keeps nothing (an addition's gradient needs no input); N flops for the addition."""
    return Cost(flops=numel(step.input))


KIND = Kind(
    PositionEmbedding,
    lower,
    order=510,
    classes=(POSITION_EMBEDDING,),
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"sequence"}), mistakes=(too_few_positions,)),
    synonyms=("positional_embedding",),
    cost=cost,
)
