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
    Name,
    Running,
    Size,
    Twin,
    init_kwargs,
    split,
)
from specc.kinds.costs import Comm, Cost, input_gradient, numel, rows
from specc.kinds.embedding import padded_vocabulary
from specc.plan import Call, Expr, LayerStep, Param, Ref


class LMHead(LayerModel):
    """Logits over the vocabulary, left split over it: from a tied embedding's table, or from
    a table of the head's own."""

    kind: Literal["lm_head"] = Field(description="The layer kind.", examples=["lm_head"])
    tied_to: Name | None = Field(
        None,
        description="Name of the `embedding` layer whose table is reused (GPT-2, BERT).",
        examples=["wte"],
    )
    vocab_size: Size | None = Field(
        None,
        description="An untied head's vocabulary: a table of its own, split by rows (Llama).",
        examples=[128256],
    )
    pad_vocab_to_multiple_of: Size | None = Field(
        None,
        description="An untied head's table padded as an embedding's is; the padding is masked.",
        examples=[128],
    )
    bias: bool = Field(
        False,
        description="A bias per vocabulary entry (BERT's masked-LM decoder).",
        examples=[True],
    )


def lower(ctx: Context, layer: LMHead, x: Running) -> Lowered | None:
    if not ctx.expect_sequence(x, f"lm_head `{ctx.name}`"):
        return None
    if (layer.tied_to is None) == (layer.vocab_size is None):
        both = "both" if layer.tied_to is not None else "neither"
        ctx.error(
            "E201",
            f"lm_head `{ctx.name}` has {both} `tied_to` and `vocab_size`",
            help="give `tied_to: <embedding>` to reuse its table, or `vocab_size` for a head "
            "with a table of its own",
        )
        return None
    if layer.tied_to is not None:
        return _tied(ctx, layer, layer.tied_to, x)
    assert layer.vocab_size is not None
    vocab, hidden = layer.vocab_size, x.shape[2]
    padded = padded_vocabulary(ctx, vocab, layer.pad_vocab_to_multiple_of)
    x = ctx.whole(x, "lm_head")
    params = [ctx.param("weight", (padded, hidden), split(0), valid_rows=vocab)]
    if layer.bias:
        params.append(ctx.param("bias", (padded,), split(0), valid_rows=vocab))
    return _head(ctx, layer, x, vocab, padded, params, hidden=hidden)


def _tied(ctx: Context, layer: LMHead, tied_to: str, x: Running) -> Lowered | None:
    table = ctx.table(tied_to)
    if table is None or not ctx.top:
        ctx.error(
            "E308",
            f"lm_head `{ctx.name}` is tied to `{tied_to}`, which is not an `embedding` "
            f"layer before it at the top level",
            "tied_to",
            help=f"embeddings before it: {', '.join(ctx.table_names()) or 'none'}",
        )
        return None
    if layer.pad_vocab_to_multiple_of is not None:
        ctx.error(
            "E313",
            f"lm_head `{ctx.name}` is tied to `{tied_to}` and has its table's rows",
            "pad_vocab_to_multiple_of",
            help=f"pad the vocabulary on `{tied_to}` instead",
        )
    if table.hidden != x.shape[2]:
        ctx.error(
            "E309",
            f"lm_head `{ctx.name}` is tied to `{tied_to}`, whose table is "
            f"[{table.vocab}, {table.hidden}], but its input has hidden size {x.shape[2]}",
            help=Help.of(
                Clause(
                    f"give `{tied_to}` hidden {{}}",
                    Values((*table.path, "hidden"), (x.shape[2],)) if table.path else None,
                ),
                f"project to {table.hidden} first",
                lead="tied weights need equal shapes: ",
            ),
        )
    x = ctx.whole(x, "lm_head")
    # The head runs where its table is; the table is weighed once, with the embedding.
    ctx.share_stage_with(tied_to)
    bias = ctx.param("bias", (table.padded,), split(0), valid_rows=table.vocab)
    params = [bias] if layer.bias else []
    lowered = _head(ctx, layer, x, table.vocab, table.padded, params)
    return replace(lowered, call_arguments=(Ref(f"self.{tied_to}.weight"),))


def _head(
    ctx: Context,
    layer: LMHead,
    x: Running,
    vocab: int,
    padded: int,
    params: list[Param],
    hidden: int | None = None,
) -> Lowered:
    after = replace(x, shape=(*x.shape[:2], padded), tensor_sbp=split(2), vocab=vocab)
    kwargs: list[tuple[str, Expr]] = []
    if hidden is not None:
        kwargs.append(("hidden", hidden))
        kwargs += init_kwargs(ctx.init_std)
    if layer.bias:
        kwargs.append(("bias", True))
    source = "tied table" if layer.tied_to else "table"
    whole = "whole" if x.tensor_sbp == B else "gathered over the sequence"
    return Lowered(
        Call("LMHead", (vocab, padded), tuple(kwargs)),
        x,
        after,
        params,
        f"x {whole}, {source} rows split -> logits split over the vocabulary",
        attributes={
            "tied_to": layer.tied_to,
            "vocab_size": vocab,
            "padded_vocab_size": padded,
            "bias": layer.bias,
        },
    )


def reference(t: Twin) -> Any:
    vocab = t.attributes["vocab_size"]
    tied = t.attributes["tied_to"]
    table = t.model[tied + ".weight"] if tied else t.params["weight"]
    logits = t.flow.matmul(t.x, table[:vocab], transpose_b=True)
    return logits + t.params["bias"][:vocab] if t.attributes["bias"] else logits


def draw(stream: FuzzStream) -> Drawn | None:
    """Tied to the stream's embedding where its width fits, else a table of its own."""
    if len(stream.shape) != 3:
        return None
    fields: dict[str, Any] = {}
    if stream.chance(20):
        fields["bias"] = stream.pick((True, False))
    table = stream.table()
    if table is not None and stream.shape[-1] == table[1] and stream.chance(70):
        fields["tied_to"] = table[0]
        return Drawn(fields, stream.shape, tied=True, parameters=bool(fields.get("bias")))
    tensor, vocab = stream.tensor, stream.vocab()
    fields["vocab_size"] = vocab
    if stream.chance(40):
        fields["pad_vocab_to_multiple_of"] = tensor * stream.pick((1, 2, 8))
    elif vocab % tensor:
        fields["vocab_size"] = tensor * stream.integer(1, -(-vocab // tensor))
    return Drawn(fields, stream.shape, parameters=True)


def tied_to_unknown(stream: FuzzStream, fields: dict[str, Any]) -> Mistake | None:
    if "tied_to" not in fields:
        return None
    fields["tied_to"] = stream.pick(("wte_missing", "embeddings", fields["tied_to"] + "_x"))
    return Mistake("tied_to_unknown", frozenset({"E308"}))


def tied_and_untied(stream: FuzzStream, fields: dict[str, Any]) -> Mistake:
    if "tied_to" in fields:
        fields["vocab_size"] = stream.vocab()
    else:
        fields.pop("vocab_size")
        fields.pop("pad_vocab_to_multiple_of", None)
    return Mistake("head_tied_and_untied", frozenset({"E201"}))


LM_HEAD = ClassTemplate(
    "LMHead",
    '''\
class LMHead(nn.Module):
    """Logits over the vocabulary, left split over it, never gathered.

    The table is a tied embedding's (passed to forward) or, given `hidden`, the head's
    own, its rows split over tensor ranks. Rows added to pad the vocabulary to a
    multiple of the tensor size get a large negative bias, so they take no probability
    and the loss equals the unpadded one.
    """

    def __init__(
        self,
        vocab_size: int,
        padded_vocab_size: int,
        *,
        hidden: int | None = None,
        bias: bool = False,
        init_std: float = 0.02,
        placement: flow.placement,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        if hidden is not None:
            shape = (padded_vocab_size, hidden)
            table = flow.empty(shape, placement=placement, sbp=COLUMN_SPLIT)
            self.weight = nn.Parameter(table)
            nn.init.normal_(self.weight, std=init_std)
        else:
            self.register_parameter("weight", None)
        if bias:
            zeros = flow.zeros(padded_vocab_size, placement=placement, sbp=COLUMN_SPLIT)
            self.bias = nn.Parameter(zeros)
        else:
            self.register_parameter("bias", None)
        if padded_vocab_size > vocab_size:
            rows = flow.arange(padded_vocab_size, placement=placement, sbp=COLUMN_SPLIT)
            padding = (rows >= vocab_size).to(flow.float32) * -1e9
            self.register_buffer("padding", padding, persistent=False)
        else:
            self.padding = None

    def forward(
        self, hidden: flow.Tensor, table: flow.Tensor | None = None
    ) -> flow.Tensor:
        table = self.weight if table is None else table
{% if plan.recipe.sequence_parallel %}
        # All-gathered over the sequence; the gradient reduce-scattered back over it.
        hidden = hidden.to_global(sbp=ACTIVATION, grad_sbp=hidden.sbp)
{% else %}
        hidden = hidden.to_global(grad_sbp=hidden.sbp)
{% endif %}
        logits = flow.matmul(hidden, table, transpose_b=True)
        if self.bias is not None:
            logits = logits + self.bias
        return logits if self.padding is None else logits + self.padding
''',
    constants=("COLUMN_SPLIT",),
    sequence_constants=("ACTIVATION",),
)


def cost(step: LayerStep) -> Cost:
    """Keeps its input (T x hidden) for the table's gradient; the logits it makes are
    kept by the loss. Flops: 2 T x hidden x the local vocabulary. On tensor > 1 (the
    logits split over the vocabulary) the input's gradient is all-reduced in backward."""
    hidden, vocab = step.input.local_shape[-1], step.output.local_shape[-1]
    comms: tuple[Comm, ...] = ()
    if step.output.shape[-1] != vocab:
        comms = (input_gradient(step),)
    flops = 2 * rows(step.input) * hidden * vocab
    return Cost(saved=numel(step.input), flops=flops, comms=comms)


KIND = Kind(
    LMHead,
    lower,
    order=710,
    classes=(LM_HEAD,),
    reference=reference,
    fuzz=Fuzz(
        draw, roles=frozenset({"end"}), weight=3, mistakes=(tied_to_unknown, tied_and_untied)
    ),
    cost=cost,
)
