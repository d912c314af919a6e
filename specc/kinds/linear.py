"""linear: y = x W^T + b, split by columns or rows over tensor ranks, or replicated.

LiBai's ColumnParallelLinear and RowParallelLinear: `col` splits W's rows (the output
features), so its output stays split; `row` splits W's columns (the input features),
each rank computes a partial sum, and converting it to the activation's SBP
all-reduces it. `data` and `none` keep W whole on every rank.
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
    Running,
    Size,
    Twin,
    init_kwargs,
    split,
)
from specc.kinds.costs import Comm, Cost, input_gradient, matmul_flops, numel, partial_sums
from specc.kinds.costs import split as is_split
from specc.plan import Call, LayerStep, sbp_text


class Linear(LayerModel):
    """y = x W^T + b, with W of shape [out_features, in_features]."""

    kind: Literal["linear"] = Field(description="The layer kind.", examples=["linear"])
    in_features: Size = Field(description="Size of the input's last dimension.", examples=[1024])
    out_features: Size = Field(description="Size of the output's last dimension.", examples=[4096])
    bias: bool = Field(True, description="Whether the layer adds a learned bias.", examples=[True])
    split: Literal["col", "row", "data", "none"] = Field(
        "data",
        description=(
            "How the weight is split over tensor-parallel ranks (LiBai's words): "
            "`col` splits out_features (output stays split), `row` splits in_features "
            "(output is all-reduced), `data`/`none` replicate it."
        ),
        examples=["col"],
    )


def lower(ctx: Context, layer: Linear, x: Running) -> Lowered:
    ctx.expect_features(x, f"linear `{ctx.name}`")
    last = x.shape[-1]
    if layer.in_features != last:
        ctx.error(
            "E303",
            f"in_features {layer.in_features} of linear `{ctx.name}` does not match its input, "
            f"whose last dimension is {last}",
            "in_features",
            help=Help.of(
                Clause("set in_features: {}", Values("in_features", (last,))),
                "change the layer before it",
            ),
        )
    mode = layer.split if ctx.tensor > 1 else "data"
    mode = "data" if mode == "none" else mode
    feature_axis = len(x.shape) - 1
    if mode == "col":
        ctx.check_divisible(layer.out_features, "out_features", what="`col` linear")
        x = ctx.whole(x, "a `col` linear")
        module, weight, bias, out_sbp = (
            "ColumnParallelLinear",
            split(0),
            split(0),
            split(feature_axis),
        )
        algebra = "x whole, weight rows split -> output features split"
    elif mode == "row":
        ctx.check_divisible(layer.in_features, "in_features", what="`row` linear")
        x = ctx.split_features(x)
        out_sbp = ctx.stream(replace(x, tensor_sbp=B)).tensor_sbp
        module, weight, bias = "RowParallelLinear", split(1), B
        reduction = "all-reduce" if out_sbp == B else "reduce-scatter over the sequence"
        algebra = f"x features split, weight columns split -> partial sums -> {reduction}"
    else:
        x = ctx.whole(x, "a replicated linear")
        # Whole features: on a sequence split too, which it keeps.
        module, weight, bias, out_sbp = "ReplicatedLinear", B, B, x.tensor_sbp
        algebra = "weight replicated"
    params = [ctx.param("weight", (layer.out_features, layer.in_features), weight)]
    if layer.bias:
        params.append(ctx.param("bias", (layer.out_features,), bias))
    kwargs = (() if layer.bias else (("bias", False),)) + init_kwargs(ctx.init_std)
    after = replace(x, shape=(*x.shape[:-1], layer.out_features), tensor_sbp=out_sbp)
    comment = f"{sbp_text(ctx.layout(x).sbp)} -> {sbp_text(ctx.layout(after).sbp)}: {algebra}"
    return Lowered(
        Call(module, (layer.in_features, layer.out_features), kwargs),
        x,
        after,
        params,
        comment,
        attributes={"split": mode, "bias": layer.bias},
    )


def reference(t: Twin) -> Any:
    return t.flow.nn.functional.linear(t.x, t.params["weight"], t.params.get("bias"))


def draw(stream: FuzzStream) -> Drawn:
    """A linear from the stream's size to a new one (or back to `keep`), split as sizes allow."""
    tensor, size = stream.tensor, stream.shape[-1]
    out_features = stream.keep if stream.keep is not None else stream.hidden()
    splits: list[str | None] = [None, "data", "none"]
    splits += ["col"] if out_features % tensor == 0 else []
    splits += ["row"] if size % tensor == 0 else []
    fields: dict[str, Any] = {"in_features": size, "out_features": out_features}
    chosen = stream.pick(splits)
    if chosen is not None:
        fields["split"] = chosen
    if stream.chance(20):
        fields["bias"] = stream.pick((True, False))
    return Drawn(fields, (*stream.shape[:-1], out_features), parameters=True)


LINEAR_BASE = ClassTemplate(
    "LinearBase",
    '''\
class LinearBase(nn.Module):
    """y = x W^T + b with W of shape [out_features, in_features], as in nn.Linear.

    Subclasses choose how W and b are laid out over the mesh (their SBP) and what
    forward does about it; the parameters are created global with that layout.
    """

    weight_sbp: tuple[flow.sbp.sbp, ...]
    bias_sbp: tuple[flow.sbp.sbp, ...]

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        init_std: float | None = None,
        placement: flow.placement,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.init_std = init_std
        shape = (out_features, in_features)
        self.weight = nn.Parameter(
            flow.empty(shape, placement=placement, sbp=self.weight_sbp)
        )
        if bias:
            self.bias = nn.Parameter(
                flow.empty(out_features, placement=placement, sbp=self.bias_sbp)
            )
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """normal(0, init_std) and zero biases; else nn.Linear's uniform init."""
        if self.init_std is not None:
            nn.init.normal_(self.weight, std=self.init_std)
            if self.bias is not None:
                nn.init.zeros_(self.bias)
            return
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={bias}"
        )
''',
    uses_math=True,
)

COLUMN_PARALLEL_LINEAR = ClassTemplate(
    "ColumnParallelLinear",
    '''\
class ColumnParallelLinear(LinearBase):
    """W and b split by output features over the tensor-parallel ranks.

    The output stays split on its last dimension, so an element-wise op or a
    row-parallel layer after it needs no communication. In backward, the gradient of
    x is a partial sum over tensor ranks; `grad_sbp` all-reduces it (Megatron's "f").
{% if plan.recipe.sequence_parallel %}
    Under sequence parallelism x comes split over the sequence: it is all-gathered
    first, and the gradient's partial sums are reduce-scattered back over it.
{% endif %}
    """

    weight_sbp = COLUMN_SPLIT
    bias_sbp = COLUMN_SPLIT

    def forward(self, x: flow.Tensor) -> flow.Tensor:
{% if plan.recipe.sequence_parallel %}
        x = x.to_global(sbp=ACTIVATION, grad_sbp=x.sbp)
{% else %}
        x = x.to_global(grad_sbp=x.sbp)
{% endif %}
        y = flow.matmul(x, self.weight, transpose_b=True)
        return y if self.bias is None else y + self.bias
''',
    constants=("COLUMN_SPLIT",),
    sequence_constants=("ACTIVATION",),
    needs=("LinearBase",),
)

ROW_PARALLEL_LINEAR = ClassTemplate(
    "RowParallelLinear",
    '''\
class RowParallelLinear(LinearBase):
    """W split by input features over the tensor-parallel ranks; b replicated.

    Takes x split on its last dimension (as a column-parallel layer leaves it); each
    rank multiplies its slice into a partial sum, and converting the partial sum to
    ACTIVATION all-reduces it, so the output is whole on every tensor rank.
{% if plan.recipe.sequence_parallel %}
    Under sequence parallelism a [batch, seq, hidden] output is reduce-scattered over
    the sequence instead (STREAM): each rank keeps the positions it will normalise;
    its gradient is all-gathered back (`grad_sbp`), as Megatron does, so that the
    weight's gradient needs no communication.
{% endif %}
    """

    weight_sbp = ROW_SPLIT
    bias_sbp = REPLICATED

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        y = flow.matmul(x, self.weight, transpose_b=True)
{% if plan.recipe.sequence_parallel %}
        sbp = STREAM if y.dim() == 3 else ACTIVATION
        y = y.to_global(sbp=sbp, grad_sbp=ACTIVATION)
{% else %}
        y = y.to_global(sbp=ACTIVATION)
{% endif %}
        return y if self.bias is None else y + self.bias
''',
    constants=("ACTIVATION", "REPLICATED", "ROW_SPLIT"),
    sequence_constants=("STREAM",),
    needs=("LinearBase",),
)

REPLICATED_LINEAR = ClassTemplate(
    "ReplicatedLinear",
    '''\
class ReplicatedLinear(LinearBase):
    """W and b whole on every rank of the stage (data parallel only).

    The weight's gradient, a partial sum over data-parallel ranks, is all-reduced by
    OneFlow when it is turned back into the weight's broadcast SBP.
    """

    weight_sbp = REPLICATED
    bias_sbp = REPLICATED

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        x = x.to_global(grad_sbp=x.sbp)
        y = flow.matmul(x, self.weight, transpose_b=True)
        return y if self.bias is None else y + self.bias
''',
    constants=("REPLICATED",),
    needs=("LinearBase",),
)


def cost(step: LayerStep) -> Cost:
    """Keeps its input for the weight's gradient: N, the input's local elements.

    Computes 2 x rows x the local weight's elements. On tensor > 1, `col` all-reduces
    its input's gradient in backward (a partial sum over tensor ranks, N elements) and
    `row` all-reduces its output's partial sums in forward (the output's local elements).
    """
    weight = step.params[0]
    comms: tuple[Comm, ...] = ()
    if is_split(weight) and step.attributes["split"] == "col":
        comms = (input_gradient(step),)
    elif is_split(weight):
        comms = (partial_sums(step),)
    return Cost(saved=numel(step.input), flops=matmul_flops(step.input, weight), comms=comms)


KIND = Kind(
    Linear,
    lower,
    order=100,
    classes=(LINEAR_BASE, COLUMN_PARALLEL_LINEAR, ROW_PARALLEL_LINEAR, REPLICATED_LINEAR),
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"sequence", "features"}), weight=2),
    synonyms=("dense", "fc", "fully_connected", "column_parallel_linear", "row_parallel_linear"),
    cost=cost,
)
