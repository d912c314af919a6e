"""select_token: keeps one position of [batch, seq, hidden] (a class token, BERT's pooler input)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import Field

from specc.kinds.base import (
    MAX_SIZE,
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
    Twin,
)
from specc.plan import Call


class SelectToken(LayerModel):
    """Keeps one position of [batch, seq, hidden], giving [batch, hidden] (class token, pooler)."""

    kind: Literal["select_token"] = Field(description="The layer kind.", examples=["select_token"])
    index: Annotated[int, Field(ge=0, le=MAX_SIZE)] = Field(
        0, description="Position to keep.", examples=[0]
    )


def lower(ctx: Context, layer: SelectToken, x: Running) -> Lowered | None:
    if not ctx.expect_sequence(x, f"select_token `{ctx.name}`"):
        return None
    if layer.index >= x.shape[1]:
        ctx.error(
            "E310",
            f"select_token `{ctx.name}` keeps position {layer.index}, but the sequence has "
            f"{x.shape[1]} positions",
            "index",
            help=f"use an index below {x.shape[1]}",
        )
    x = ctx.whole_sequence(ctx.whole(x, "select_token"))
    after = replace(x, shape=(x.shape[0], x.shape[2]))
    return Lowered(
        Call("SelectToken", (layer.index,)),
        x,
        after,
        (),
        "keeps one position",
        attributes={"index": layer.index},
    )


def reference(t: Twin) -> Any:
    return t.x[:, t.attributes["index"]]


def draw(stream: FuzzStream) -> Drawn | None:
    if len(stream.shape) != 3:
        return None
    index = stream.integer(0, stream.shape[1] - 1)
    fields = {"index": index} if index or stream.chance(50) else {}
    return Drawn(fields, (stream.shape[0], stream.shape[2]))


def past_the_end(stream: FuzzStream, fields: dict[str, Any]) -> Mistake:
    fields["index"] = stream.shape[1] + stream.pick((0, 1, 7))
    return Mistake("select_past_the_end", frozenset({"E310"}))


SELECT_TOKEN = ClassTemplate(
    "SelectToken",
    '''\
class SelectToken(nn.Module):
    """Keeps one position of [batch, seq, hidden]: a class token, a pooler's input."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, hidden: flow.Tensor) -> flow.Tensor:
        return hidden[:, self.index]
''',
    placement=False,
)

KIND = Kind(
    SelectToken,
    lower,
    order=700,
    classes=(SELECT_TOKEN,),
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"end"}), mistakes=(past_the_end,)),
)
