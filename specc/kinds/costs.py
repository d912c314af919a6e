"""What a layer costs on one rank for one micro-batch: the words of every kind's formula.

A kind's `cost(step)` (`Kind.cost`) reads the lowered layer (`plan.LayerStep`: its
local shapes, parameters and settings) and says what one rank keeps for the backward
pass, how much it computes, and which collectives the layer's own layout implies.
`specc.estimate` adds them up per stage; `lower/staging.py` weighs pipeline stages
with them. Counting in elements keeps the formulas independent of precision: the
estimate multiplies by the bytes of an activation (4 in fp32, 2 under fp16/bf16).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from specc.plan import LayerStep, Layout, Param

Phase = Literal["forward", "backward"]
CollectiveKind = Literal["all-reduce", "all-gather", "reduce-scatter", "all-to-all"]


@dataclass(frozen=True)
class Comm:
    """A collective a layer implies, once per micro-batch, over the tensor-parallel group.

    `elements` are what each rank holds of the tensor before the collective (its
    shard), as OneFlow's boxing sees it; `what` names the tensor for the report.
    `fp32` collectives move 4-byte values whatever the precision (a loss's sums).
    `grad`: it carries the gradient of the layer's input, which is not computed when
    nothing before the layer needs one (its input is a model input). `axes`: the mesh
    axes of its group. `per_sample`: its size grows with the batch (not a loss's mean).
    The plan's layouts hold a whole step's batch; the estimate takes a micro-batch's share.
    """

    kind: CollectiveKind
    phase: Phase
    elements: int
    what: str
    fp32: bool = False
    grad: bool = False
    axes: tuple[str, ...] = ("tensor",)
    per_sample: bool = True


@dataclass(frozen=True)
class Cost:
    """One layer on one rank for one micro-batch.

    saved: activation elements kept for backward (in the activation's precision);
    fixed: bytes kept whatever the precision (int64 ids, fp32 statistics);
    flops: forward floating-point operations (backward is counted as twice these);
    comms: the collectives the layer's layout implies (none on tensor 1).
    """

    saved: int = 0
    fixed: int = 0
    flops: int = 0
    comms: tuple[Comm, ...] = ()


CostRule = Callable[[LayerStep], Cost]

# Kinds whose activations Megatron's sequence parallelism splits over tensor ranks.
SEQUENCE_SPLIT = frozenset({"layernorm", "rmsnorm", "dropout", "position_embedding"})


def on_slices(layout: Layout, axes: tuple[str, ...]) -> bool:
    """Whether an activation is split over the sequence on tensor ranks (only sequence
    parallelism splits a [batch, seq, hidden] activation on its dimension 1)."""
    return (
        len(layout.shape) == 3 and "tensor" in axes and layout.sbp[axes.index("tensor")] == "S(1)"
    )


def layer_cost(rule: CostRule, step: LayerStep, axes: tuple[str, ...], tensor: int) -> Cost:
    """A layer's cost. Under sequence parallelism the formulas see the whole sequence
    (the attention and MLP gather it), and what a norm, a dropout or a position
    embedding keeps is a slice of it."""
    sliced = on_slices(step.input, axes) or on_slices(step.output, axes)
    if not sliced:
        return rule(step)
    whole = replace(step, input=_whole(step.input), output=_whole(step.output))
    cost = rule(whole)
    if step.kind in SEQUENCE_SPLIT:
        cost = replace(cost, saved=-(-cost.saved // tensor), fixed=-(-cost.fixed // tensor))
    return cost


def _whole(layout: Layout) -> Layout:
    if len(layout.shape) != 3:
        return layout
    local = list(layout.local_shape)
    local[1] = layout.shape[1]  # only tensor ranks split the sequence
    return replace(layout, local_shape=tuple(local))


def numel(layout: Layout) -> int:
    """Elements one rank holds."""
    return math.prod(layout.local_shape)


def rows(layout: Layout) -> int:
    """The local rows of an activation: every dimension but the features."""
    return math.prod(layout.local_shape[:-1])


def split(param: Param) -> bool:
    """The parameter is split over tensor ranks (its local shape is smaller)."""
    return param.layout.local_shape != param.layout.shape


def matmul_flops(x: Layout, weight: Param) -> int:
    """2 x rows x the weight's local elements: a linear map of every row of `x`."""
    return 2 * rows(x) * math.prod(weight.layout.local_shape)


def input_gradient(step: LayerStep) -> Comm:
    """Megatron's f in backward: a column-split layer's input gradient is a partial sum
    over tensor ranks, all-reduced (the input's local elements)."""
    return Comm("all-reduce", "backward", numel(step.input), "input gradient", grad=True)


def partial_sums(step: LayerStep, what: str = "partial sums") -> Comm:
    """Megatron's g in forward: a row-split layer's output is all-reduced (the output's
    local elements)."""
    return Comm("all-reduce", "forward", numel(step.output), what)


def elementwise(step: LayerStep) -> Cost:
    """An element-wise activation keeps its input: N = the input's local elements."""
    return Cost(saved=numel(step.input), flops=numel(step.input))


def in_flight(stage: int, pipeline: int, micro_batches: int) -> int:
    """Micro-batches whose activations stage `stage` keeps at once under 1F1B, the
    schedule of OneFlow's pipelined graph (the estimate, and the balancer, use it).

    >>> [in_flight(s, 4, 8) for s in range(4)], in_flight(0, 4, 2)
    ([4, 3, 2, 1], 2)
    """
    return max(1, min(micro_batches, pipeline - stage))
