"""embedding: token embedding, vocabulary-parallel (LiBai's VocabParallelEmbedding).

The table's rows are split over tensor ranks; each rank looks up the ids that fall in
its rows and contributes zeros for the others, and the partial sums are all-reduced.
`pad_vocab_to_multiple_of` pads the table so that it divides; the padded rows are
never selected, and a tied head masks their logits.
"""

from __future__ import annotations

import math
from dataclasses import replace
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
    Table,
    Twin,
    axis_sizes,
    init_kwargs,
    split,
)
from specc.kinds.costs import Comm, Cost, numel, rows
from specc.kinds.costs import split as is_split
from specc.plan import Call, LayerStep


class Embedding(LayerModel):
    """Token embedding, vocabulary-parallel: the table's rows are split over tensor ranks.

    It reads the model's first input (token ids, int64 [batch, seq]) and starts the
    hidden stream [batch, seq, hidden].
    """

    kind: Literal["embedding"] = Field(description="The layer kind.", examples=["embedding"])
    vocab_size: Size = Field(description="Number of token ids.", examples=[50257])
    hidden: Size = Field(description="Embedding width.", examples=[768])
    pad_vocab_to_multiple_of: Size | None = Field(
        None,
        description=(
            "Pad the table to the next multiple of this (times nothing else), so it divides "
            "over tensor ranks; padded rows are never selected and their logits are masked."
        ),
        examples=[128],
    )


def lower(ctx: Context, layer: Embedding, x: Running) -> Lowered:
    if x.dtype != "int64" or len(x.shape) != 2:
        ctx.error(
            "E306",
            f"embedding `{ctx.name}` reads token ids, int64 [batch, seq], but its input is "
            f"{x.dtype} {list(x.shape)}",
            help="make it the first layer and declare the first input `dtype: int64`",
        )
    if not ctx.top:
        ctx.error("E313", f"embedding `{ctx.name}` must be at the top level of `layers`")
    vocab = layer.vocab_size
    padded = padded_vocabulary(ctx, vocab, layer.pad_vocab_to_multiple_of)
    if x.dtype == "int64":
        ctx.sample_ids_below(vocab)
    ctx.offer_table(Table(ctx.name, vocab, padded, layer.hidden, ctx.path))
    after = ctx.stream(replace(x, shape=(*x.shape[:2], layer.hidden), dtype="float32"))
    reduction = "all-reduce" if after.tensor_sbp == B else "reduce-scatter over the sequence"
    return Lowered(
        Call("VocabParallelEmbedding", (padded, layer.hidden), init_kwargs(ctx.init_std)),
        x,
        after,
        [ctx.param("weight", (padded, layer.hidden), split(0), valid_rows=vocab)],
        f"ids x table rows split over tensor ranks -> partial sums -> {reduction}",
        attributes={"vocab_size": vocab, "padded_vocab_size": padded},
    )


def padded_vocabulary(ctx: Context, vocab: int, multiple: int | None) -> int:
    """The rows of a vocabulary-parallel table; reports a vocabulary tensor does not divide."""
    tensor, multiple = ctx.tensor, multiple or 1
    padded = -(-vocab // multiple) * multiple
    # The smallest paddings that divide: a multiple of tensor (of the padding given, too).
    paddings = tuple(dict.fromkeys((tensor, math.lcm(multiple, tensor))))
    rows = tuple(f"{m} ({-(-vocab // m) * m} rows)" for m in paddings)
    if padded % tensor and multiple > 1:
        ctx.check_divisible(
            padded,
            "pad_vocab_to_multiple_of",
            label="padded vocabulary",
            help=Help.of(
                Clause(
                    "pad to a multiple of {}",
                    Values("pad_vocab_to_multiple_of", paddings, separator=" or ", labels=rows),
                ),
                Clause(
                    f"use a tensor size that divides {padded}: {{}}", axis_sizes(padded, tensor)
                ),
            ),
        )
    elif padded % tensor:
        ctx.check_divisible(
            vocab,
            "vocab_size",
            help=Help.of(
                Clause(
                    "set `pad_vocab_to_multiple_of: {}` (the padding is masked)",
                    Values("pad_vocab_to_multiple_of", paddings[:1]),
                ),
                Clause(f"use a tensor size that divides {vocab}: {{}}", axis_sizes(vocab, tensor)),
            ),
        )
    return padded


def reference(t: Twin) -> Any:
    return t.params["weight"][t.x]


def draw(stream: FuzzStream) -> Drawn:
    tensor, hidden, vocab = stream.tensor, stream.hidden(), stream.vocab()
    fields: dict[str, Any] = {"vocab_size": vocab, "hidden": hidden}
    if stream.chance(40):  # the padded table divides over tensor ranks
        fields["pad_vocab_to_multiple_of"] = tensor * stream.pick((1, 2, 3, 8, 128))
    elif vocab % tensor:
        fields["vocab_size"] = tensor * stream.integer(1, -(-vocab // tensor))
    ids = (stream.shape[0], stream.shape[1])
    return Drawn(fields, (*ids, hidden), table=hidden, takes=(ids, "int64"), parameters=True)


def vocabulary_not_divisible(stream: FuzzStream, fields: dict[str, Any]) -> Mistake | None:
    tensor = stream.tensor
    if tensor == 1:
        return None
    if "pad_vocab_to_multiple_of" in fields and stream.chance(50):
        vocab = fields["vocab_size"]
        multiples = [k for k in range(2, 64) if (-(-vocab // k) * k) % tensor]
        if not multiples:
            return None
        fields["pad_vocab_to_multiple_of"] = stream.pick(multiples)
        return Mistake("padded_vocab_not_divisible", frozenset({"E301"}))
    fields.pop("pad_vocab_to_multiple_of", None)
    fields["vocab_size"] = stream.non_multiple()
    facts = {"vocab": fields["vocab_size"], "hidden": fields["hidden"]}
    return Mistake("vocab_not_divisible", frozenset({"E301"}), "vocab", facts)


VOCAB_PARALLEL_EMBEDDING = ClassTemplate(
    "VocabParallelEmbedding",
    '''\
class VocabParallelEmbedding(nn.Module):
    """Token embedding whose table rows (the vocabulary) are split over tensor ranks.

    Each rank looks up the ids that fall in its rows and contributes zeros for the
{% if plan.recipe.sequence_parallel %}
    others; converting the partial sums to STREAM reduce-scatters them over the
    sequence (Megatron's sequence parallelism).
{% else %}
    others; converting the partial sums to ACTIVATION all-reduces them.
{% endif %}
    """

    def __init__(
        self,
        vocab_size: int,
        hidden: int,
        *,
        init_std: float = 0.02,
        placement: flow.placement,
    ) -> None:
        super().__init__()
        table = flow.empty(vocab_size, hidden, placement=placement, sbp=COLUMN_SPLIT)
        self.weight = nn.Parameter(table)
        nn.init.normal_(self.weight, std=init_std)

    def forward(self, ids: flow.Tensor) -> flow.Tensor:
        partial = flow._C.gather(self.weight, ids, axis=0)
{% if plan.recipe.sequence_parallel %}
        return partial.to_global(sbp=STREAM)
{% else %}
        return partial.to_global(sbp=ACTIVATION)
{% endif %}
''',
    constants=("ACTIVATION", "COLUMN_SPLIT"),
    sequence_constants=("STREAM",),
)


def cost(step: LayerStep) -> Cost:
    """Keeps the token ids (int64, 8 bytes each) for the table's gradient. On tensor > 1
    each rank looks up its rows of the table and the partial sums are all-reduced in
    forward: the output's local elements."""
    comms: tuple[Comm, ...] = ()
    if is_split(step.params[0]):
        comms = (Comm("all-reduce", "forward", numel(step.output), "partial lookups"),)
    return Cost(fixed=8 * rows(step.output), comms=comms)


KIND = Kind(
    Embedding,
    lower,
    order=500,
    classes=(VOCAB_PARALLEL_EMBEDDING,),
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"start"}), weight=2, mistakes=(vocabulary_not_divisible,)),
    synonyms=("vocab_parallel_embedding", "word_embedding", "token_embedding"),
    cost=cost,
)
