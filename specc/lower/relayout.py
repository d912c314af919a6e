"""Relayouts: where an activation's SBP must change between layers, made explicit.

A feature-split activation (a `col` linear's output) that meets a layer needing whole
features is all-gathered; a whole one entering a `row` linear is sliced locally. Both
are steps of the plan, and both state their gradient's SBP, as Megatron's f and g
operators do: OneFlow 0.9's default for a gather aborts CPU graph training when a
split bias precedes it (register.cpp:75).
"""

from __future__ import annotations

from dataclasses import replace

from specc.kinds.base import B, Running, split
from specc.lower.reporter import Reporter
from specc.lower.sbp import Constants, Grid
from specc.plan import Relayout
from specc.source import YamlPath


def gather(
    x: Running,
    *,
    consumer: str,
    what: str,
    reads: str,
    writes: str,
    path: YamlPath,
    grid: Grid,
    constants: Constants,
    report: Reporter,
) -> tuple[Running, Relayout | None]:
    """`x` with whole features, and the all-gather that makes it so (None if it is)."""
    if x.tensor_sbp == B or x.dtype != "float32":
        return x, None
    whole = replace(x, tensor_sbp=B)
    split_constant = constants.feature_split(x)
    step = Relayout(
        kind="gather",
        before=grid.of(x),
        after=grid.of(whole),
        reason=f"{what} `{consumer}` needs whole features",
        reads=reads,
        writes=writes,
        sbp_constant=constants.activation(),
        # The gradient of an all-gather is the local slice of a whole gradient.
        grad_sbp_constant=split_constant,
    )
    report.warning(
        "W500",
        f"an all-gather of {list(x.shape)} over tensor ranks is inserted before "
        f"{what} `{consumer}`, whose input is split on its last dimension",
        path,
        help="a `row` linear before it keeps activations whole without the gather",
    )
    return whole, step


def slice_features(
    x: Running, *, reads: str, writes: str, grid: Grid, constants: Constants
) -> tuple[Running, Relayout | None]:
    """`x` split on its last dimension over tensor ranks: a local slice, no communication."""
    target = split(len(x.shape) - 1)
    if x.tensor_sbp == target:
        return x, None
    result = replace(x, tensor_sbp=target)
    constant = constants.feature_split(result)
    step = Relayout(
        kind="split",
        before=grid.of(x),
        after=grid.of(result),
        reason="a `row` linear takes features split over tensor ranks (local slice)",
        reads=reads,
        writes=writes,
        sbp_constant=constant,
        # Its gradient is the all-gather of the split gradient.
        grad_sbp_constant=constants.activation(),
    )
    return result, step
