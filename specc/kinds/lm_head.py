"""lm_head: logits from a tied token-embedding table, left split over the vocabulary.

The head multiplies by the table's local rows, so the logits come out split over the
vocabulary `(..., S(2))` and are never gathered: the loss reduces across tensor
ranks. Rows added to pad the vocabulary get a large negative bias. The head runs on
its table's pipeline stage, so the table never travels.
"""

from __future__ import annotations

from dataclasses import replace
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
    Mistake,
    Name,
    Running,
    Twin,
    split,
)
from specc.plan import Call, Ref


class LMHead(LayerModel):
    """Logits over the vocabulary from the tied token embedding; they stay vocab-split."""

    kind: Literal["lm_head"] = Field(description="The layer kind.", examples=["lm_head"])
    tied_to: Name = Field(
        description="Name of the `embedding` layer whose table is reused.", examples=["wte"]
    )


def lower(ctx: Context, layer: LMHead, x: Running) -> Lowered | None:
    if not ctx.expect_sequence(x, f"lm_head `{ctx.name}`"):
        return None
    table = ctx.table(layer.tied_to)
    if table is None or not ctx.top:
        ctx.error(
            "E308",
            f"lm_head `{ctx.name}` is tied to `{layer.tied_to}`, which is not an `embedding` "
            f"layer before it at the top level",
            "tied_to",
            help=f"embeddings before it: {', '.join(ctx.table_names()) or 'none'}",
        )
        return None
    if table.hidden != x.shape[2]:
        ctx.error(
            "E309",
            f"lm_head `{ctx.name}` is tied to `{layer.tied_to}`, whose table is "
            f"[{table.vocab}, {table.hidden}], but its input has hidden size {x.shape[2]}",
            help=f"tied weights need equal shapes: give `{layer.tied_to}` hidden "
            f"{x.shape[2]}, or project to {table.hidden} first",
        )
    x = ctx.whole(x, "lm_head")
    after = replace(x, shape=(*x.shape[:2], table.padded), tensor_sbp=split(2), vocab=table.vocab)
    # The head weighs its table when stages are balanced.
    ctx.share_stage_with(layer.tied_to, table.vocab * table.hidden)
    return Lowered(
        Call("LMHead", (table.vocab, table.padded)),
        x,
        after,
        (),
        "x whole, tied table rows split -> logits split over the vocabulary",
        attributes={
            "tied_to": layer.tied_to,
            "vocab_size": table.vocab,
            "padded_vocab_size": table.padded,
        },
        call_arguments=(Ref(f"self.{layer.tied_to}.weight"),),
    )


def reference(t: Twin) -> Any:
    table = t.model[t.attributes["tied_to"] + ".weight"][: t.attributes["vocab_size"]]
    return t.flow.matmul(t.x, table, transpose_b=True)


def draw(stream: FuzzStream) -> Drawn | None:
    table = stream.table()
    if table is None or len(stream.shape) != 3 or stream.shape[-1] != table[1]:
        return None
    return Drawn({"tied_to": table[0]}, stream.shape, tied=True)


def tied_to_unknown(stream: FuzzStream, fields: dict[str, Any]) -> Mistake:
    fields["tied_to"] = stream.pick(("wte_missing", "embeddings", fields["tied_to"] + "_x"))
    return Mistake("tied_to_unknown", frozenset({"E308"}))


LM_HEAD = ClassTemplate(
    "LMHead",
    '''\
class LMHead(nn.Module):
    """Logits from the tied token-embedding table; they stay split over the vocabulary.

    Rows added to pad the vocabulary to a multiple of the tensor size get a large
    negative bias, so they take no probability and the loss equals the unpadded one.
    """

    def __init__(
        self, vocab_size: int, padded_vocab_size: int, *, placement: flow.placement
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        if padded_vocab_size > vocab_size:
            rows = flow.arange(padded_vocab_size, placement=placement, sbp=COLUMN_SPLIT)
            padding = (rows >= vocab_size).to(flow.float32) * -1e9
            self.register_buffer("padding", padding)
        else:
            self.padding = None

    def forward(self, hidden: flow.Tensor, table: flow.Tensor) -> flow.Tensor:
        hidden = hidden.to_global(grad_sbp=hidden.sbp)
        logits = flow.matmul(hidden, table, transpose_b=True)
        return logits if self.padding is None else logits + self.padding
''',
    constants=("COLUMN_SPLIT",),
)

KIND = Kind(
    LMHead,
    lower,
    order=710,
    classes=(LM_HEAD,),
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"end"}), weight=3, mistakes=(tied_to_unknown,)),
)
