"""token_type_embedding: adds learned embeddings of the token types another input holds."""

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
    Name,
    Running,
    Size,
    Twin,
    init_kwargs,
)
from specc.kinds.costs import Cost, numel, rows
from specc.plan import Call, LayerStep, Ref


class TokenTypeEmbedding(LayerModel):
    """Adds a learned embedding of the token types given by another int64 input."""

    kind: Literal["token_type_embedding"] = Field(
        description="The layer kind.", examples=["token_type_embedding"]
    )
    types: Size = Field(description="Number of token types.", examples=[2])
    input: Name = Field(description="Name of the int64 [batch, seq] input.", examples=["types"])


def lower(ctx: Context, layer: TokenTypeEmbedding, x: Running) -> Lowered | None:
    what = f"token_type_embedding `{ctx.name}`"
    if not ctx.expect_sequence(x, what):
        return None
    ctx.read_input(layer.input, "input", x, layer.types, what)
    x = ctx.whole(x, "token_type_embedding")
    hidden = x.shape[2]
    return Lowered(
        Call("TokenTypeEmbedding", (layer.types, hidden), init_kwargs(ctx.init_std)),
        x,
        x,
        [ctx.param("weight", (layer.types, hidden), B)],
        "adds replicated rows chosen by the token types",
        attributes={"input": layer.input},
        call_arguments=(Ref(layer.input),),
    )


def reference(t: Twin) -> Any:
    return t.x + t.params["weight"][t.inputs[t.attributes["input"]]]


def draw(stream: FuzzStream) -> Drawn:
    return Drawn(
        {"types": stream.integer(1, 3), "input": stream.read_input()}, stream.shape, parameters=True
    )


TOKEN_TYPE_EMBEDDING = ClassTemplate(
    "TokenTypeEmbedding",
    '''\
class TokenTypeEmbedding(nn.Module):
    """Adds a replicated table's embeddings of token types (BERT's segments A and B)."""

    def __init__(
        self,
        types: int,
        hidden: int,
        *,
        init_std: float = 0.02,
        placement: flow.placement,
    ) -> None:
        super().__init__()
        table = flow.empty(types, hidden, placement=placement, sbp=REPLICATED)
        self.weight = nn.Parameter(table)
        nn.init.normal_(self.weight, std=init_std)

    def forward(
        self, hidden: flow.Tensor, types: flow.Tensor | None = None
    ) -> flow.Tensor:
        if types is None:  # every token of type 0
            return hidden + self.weight[0]
{% if plan.recipe.sequence_parallel %}
        # The hidden stream is split over the sequence: each rank looks up its types.
        types = types.to_global(sbp=STREAM)
{% endif %}
        return hidden + flow._C.gather(self.weight, types, axis=0)
''',
    constants=("REPLICATED",),
    sequence_constants=("STREAM",),
)


def cost(step: LayerStep) -> Cost:
    """Keeps the type ids (int64, 8 bytes a token) for the table's gradient; N flops
    for the addition."""
    return Cost(fixed=8 * rows(step.input), flops=numel(step.input))


KIND = Kind(
    TokenTypeEmbedding,
    lower,
    order=520,
    classes=(TOKEN_TYPE_EMBEDDING,),
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"sequence"})),
    synonyms=("segment_embedding",),
    cost=cost,
)
