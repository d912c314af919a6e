"""Parameter, gradient and optimizer-state bytes per rank, and the data-parallel reduction.

Weights, their gradients and the optimizer's moments are fp32 whatever the precision
(OneFlow's AMP computes in half precision from fp32 weights). AdamW keeps two moments
per parameter, SGD one with momentum and none without. ZeRO shards over data ranks the
optimizer's state (stage 1), the gradients too (2) and the weights too (3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from specc.plan import Parameter, Plan

FP32 = 4


def optimizer_states(plan: Plan) -> int:
    """fp32 values the optimizer keeps per parameter."""
    recipe = plan.recipe
    if recipe.optimizer == "adamw":
        return 2
    return 1 if recipe.momentum else 0


def _shard(size: int, parts: int) -> int:
    """One rank's part of `size` bytes split `parts` ways (the largest, as OneFlow splits)."""
    return -(-size // parts)


def stage_state(plan: Plan, stage: int) -> tuple[int, int, int]:
    """(parameters, gradients, optimizer) bytes one rank of `stage` holds."""
    data, zero = plan.mesh.data, plan.recipe.zero
    held = [p for p in plan.parameters if p.stage == stage]
    weights = sum(_local_bytes(p) for p in held)
    states = optimizer_states(plan) * weights
    return (
        _shard(weights, data) if zero >= 3 else weights,
        _shard(weights, data) if zero >= 2 else weights,
        _shard(states, data) if zero >= 1 else states,
    )


def _local_bytes(parameter: Parameter) -> int:
    return FP32 * math.prod(parameter.layout.local_shape)


def gradient_reduction(plan: Plan, stage: int) -> list[tuple[str, str, int]]:
    """The data-parallel reduction of a stage's gradients, once a step:
    (kind, parameter, bytes per rank) each; ZeRO reduce-scatters the gradients and
    all-gathers the updated weights instead of all-reducing."""
    if plan.mesh.data == 1:
        return []
    held: Sequence[Parameter] = [p for p in plan.parameters if p.stage == stage]
    if plan.recipe.zero == 0:
        return [("all-reduce", p.name, _local_bytes(p)) for p in held]
    return [("reduce-scatter", p.name, _local_bytes(p)) for p in held] + [
        ("all-gather", p.name, _shard(_local_bytes(p), plan.mesh.data)) for p in held
    ]
