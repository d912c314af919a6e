"""Relayouts: where an activation's SBP must change between layers, made explicit.

A feature-split activation (a `col` linear's output) that meets a layer needing whole
features is all-gathered; a whole one entering a `row` linear is sliced locally. Under
sequence parallelism a whole [batch, seq, hidden] activation is sliced over the
sequence, and one a layer needs whole (select_token) is all-gathered. All are steps
of the plan, and both state their gradient's SBP, as Megatron's f and g
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
    """`x` with whole features, and the all-gather that makes it so (None if it is).

    A sequence split is left as it is: the layers that need whole features work on any
    slice of the sequence."""
    if x.tensor_sbp != split(len(x.shape) - 1) or x.dtype != "float32":
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


def gather_sequence(
    x: Running, *, consumer: str, reads: str, writes: str, grid: Grid, constants: Constants
) -> tuple[Running, Relayout | None]:
    """`x` with the whole sequence on every tensor rank, where it was split over it."""
    if x.tensor_sbp != split(1) or not grid.streams(x):
        return x, None
    whole = replace(x, tensor_sbp=B)
    step = Relayout(
        kind="gather",
        before=grid.of(x),
        after=grid.of(whole),
        reason=f"`{consumer}` needs the whole sequence",
        reads=reads,
        writes=writes,
        sbp_constant=constants.activation(),
        grad_sbp_constant=constants.stream(),
    )
    return whole, step


def split_sequence(
    x: Running, *, reads: str, writes: str, grid: Grid, constants: Constants
) -> tuple[Running, Relayout | None]:
    """`x` split over the sequence, where sequence parallelism wants it and it is whole:
    a local slice, whose gradient is all-gathered."""
    if x.tensor_sbp != B or not grid.streams(x):
        return x, None
    result = replace(x, tensor_sbp=split(1))
    step = Relayout(
        kind="split",
        before=grid.of(x),
        after=grid.of(result),
        reason="sequence parallelism keeps [batch, seq, hidden] split over the sequence",
        reads=reads,
        writes=writes,
        sbp_constant=constants.stream(),
        grad_sbp_constant=constants.activation(),
    )
    return result, step
