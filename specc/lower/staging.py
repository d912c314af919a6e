"""Which pipeline stage each top-level layer (and each repetition of a repeat) runs on.

Stages come from what the walk recorded about each top-level unit: its weight, the
layer it must share a stage with (a tied head runs where its table is: OneFlow 0.9
cannot send a variable to another stage inside a CPU graph, and a copy sent instead
gets wrong gradients, so the activations travel back instead), and the model inputs
it reads (inputs arrive on stage 0; a repeat carries them along to its repetitions).
Explicit `stage`/`stages` are checked; without them the units are balanced by their
estimated time and memory (each kind's `cost`, each parameter counted once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from specc.diagnostics import Clause, Help, Values
from specc.kinds.costs import in_flight
from specc.lower.reporter import Reporter
from specc.lower.walk import Unit
from specc.spec import LayerRef, Spec

Stages = list[tuple[int, ...]]  # per top-level layer, the stage of each of its units


def assign_stages(
    spec: Spec, units: Sequence[Unit], layers: Sequence[LayerRef], report: Reporter
) -> Stages:
    """The pipeline stage of every top-level layer (one per repetition for a repeat).

    Never drops or repeats a layer: every unit gets exactly one stage.
    """
    pipeline = spec.parallel.pipeline
    counts = [unit.repetitions or 1 for unit in units]
    for ref in layers:
        if len(ref.path) > 2 and ref.layer.stage is not None:  # inside a residual or repeat
            report.error(
                "E313",
                f"layer `{ref.name}` sets `stage` inside a residual or repeat body",
                (*ref.path, "stage"),
                help="set `stage` on the top-level layer, or `stages` on the repeat",
            )
    index_of = {unit.name: unit.index for unit in units}
    heads = {
        unit.index: index_of[unit.tied_to]
        for unit in units
        if unit.tied_to is not None and unit.tied_to in index_of
    }
    pinned = max((unit.index for unit in units if unit.input_reads), default=-1)
    # A tied head runs on its table's stage, and the top-level layers up to the last
    # one reading a model input run on stage 0 (inputs arrive there): neither can fill
    # a stage of its own.
    free = sum(count for index, count in enumerate(counts) if index not in heads and index > pinned)
    available = free + (pinned >= 0)
    if available < pipeline:
        reasons = []
        if heads:
            reasons.append("a tied lm_head shares its table's stage")
        if pinned >= 0:
            reasons.append(
                f"the layers up to `{units[pinned].name}`, which reads an input, share stage 0"
            )
        why = f" ({'; '.join(reasons)})" if reasons else ""
        report.error(
            "E315",
            f"pipeline {pipeline} needs at least {pipeline} layers or repetitions, the model "
            f"has {available}{why}",
            ("parallel", "pipeline"),
            help=Help.of(
                Clause("use pipeline {} or less", Values(("parallel", "pipeline"), (available,))),
                "more layers",
            ),
        )
        return [(0,) * c for c in counts]
    explicit = any(
        layer.stage is not None or layer.listed_stages() is not None
        for index, layer in enumerate(spec.layers)
        if index not in heads
    )
    if explicit:
        result = _explicit_stages(spec, report, counts, heads)
    elif pipeline == 1:
        result = [(0,) * c for c in counts]
    else:
        result = _balanced_stages(spec, units, counts, heads, pinned, pipeline)
    for head, table in heads.items():
        layer = spec.layers[head]
        if layer.stage is not None and layer.stage != result[table][0]:
            report.error(
                "E314",
                f"lm_head `{units[head].name}` is tied to a table on stage {result[table][0]}, "
                f"and runs there, not on stage {layer.stage}",
                ("layers", head, "stage"),
                help="remove its `stage`: a tied head always runs on its table's stage",
            )
        result[head] = result[table]
    for unit, stages in zip(units, result, strict=True):
        if stages[0] > 0:
            for read in unit.input_reads:
                report.error(
                    "E313",
                    f"{read.what} reads input `{read.input}` on pipeline stage {stages[0]}; "
                    "inputs arrive on stage 0",
                    read.path,
                    help="move the layer to stage 0, or into a repeat (which carries inputs along)",
                )
    # Every unit exactly once: a repeat with fewer stages would build fewer repetitions.
    assert [len(stages) for stages in result] == counts, (result, counts)
    return result


def _balanced_stages(
    spec: Spec,
    units: Sequence[Unit],
    counts: list[int],
    heads: dict[int, int],
    pinned: int,
    pipeline: int,
) -> Stages:
    state = 4 * (2 + _optimizer_states(spec))  # fp32 weight, gradient and moments
    micro_batches = spec.training.accumulation if spec.training else 1
    # The walk's layouts hold a step's batch: a micro-batch keeps its share of it.
    weights = [
        [Weight(unit.flops, unit.weight * state, unit.activations // micro_batches)]
        * (unit.repetitions or 1)
        for unit in units
    ]
    # A tied head joins its table's unit: it computes where the table lives, and the
    # table is counted once, with the embedding.
    for head, table in heads.items():
        weights[table][0] = weights[table][0] + weights[head][0]
    kept = [i for i in range(len(counts)) if i not in heads and i > pinned]
    first = sum((w for i in range(pinned + 1) if i not in heads for w in weights[i]), Weight())
    flat = balance_weights(
        [first] * (pinned >= 0) + [w for i in kept for w in weights[i]], pipeline, micro_batches
    )
    flat = flat[1:] if pinned >= 0 else flat
    result, start = [(0,) * count for count in counts], 0
    for index in kept:
        result[index] = tuple(flat[start : start + counts[index]])
        start += counts[index]
    return result


def _optimizer_states(spec: Spec) -> int:
    """fp32 moments per parameter: AdamW 2, SGD 1 with momentum."""
    optimizer = spec.training.optimizer if spec.training else None
    if optimizer is None or optimizer.kind == "adamw":
        return 2
    return 1 if optimizer.momentum else 0


def _explicit_stages(
    spec: Spec, report: Reporter, counts: list[int], heads: dict[int, int]
) -> Stages:
    pipeline = spec.parallel.pipeline
    result: Stages = []
    current = 0
    for index, (layer, count) in enumerate(zip(spec.layers, counts, strict=True)):
        path = ("layers", index)
        if index in heads:
            result.append((0,))  # set to its table's stage by the caller
            continue
        where: tuple[str | int, ...] = path
        written = layer.listed_stages()
        if written is not None:
            where = (*path, "stages")
            given = list(written)
            if len(given) != count:
                report.error(
                    "E314",
                    f"`stages` lists {len(given)} stages for {count} repetitions",
                    where,
                    help=f"give one stage per repetition ({count})",
                )
                given = (given + [given[-1]] * count)[:count]
        elif layer.stage is not None:
            where = (*path, "stage")
            given = [layer.stage] * count
        else:
            given = [current] * count
        for stage in given:
            if stage >= pipeline:
                report.error(
                    "E314",
                    f"stage {stage} is out of range for pipeline {pipeline}",
                    where,
                    help="a stage must be below `pipeline` (stages count from zero)",
                )
            elif stage < current:
                report.error(
                    "E314",
                    f"stage {stage} comes after stage {current}; stages must not go backwards",
                    where,
                    help=Help.of(
                        Clause("use stage {} or later here", Values(where, (current,)))
                        if where[-1] == "stage"
                        else f"use stage {current} or later here",
                        "move the layer",
                    ),
                )
            current = max(current, min(stage, pipeline - 1))
        result.append(tuple(max(0, min(s, pipeline - 1)) for s in given))
    used = {s for unit in result for s in unit}
    for stage in range(pipeline):
        if stage not in used:
            report.error(
                "E315",
                f"pipeline stage {stage} has no layer",
                ("parallel", "pipeline"),
                help="give it layers with `stage`, or use fewer stages",
            )
    return result


@dataclass(frozen=True)
class Weight:
    """What a unit weighs when stages are balanced: forward flops on one rank, bytes of
    weights, gradients and optimizer state, and bytes kept for backward (a micro-batch)."""

    flops: int = 0
    state: int = 0
    activations: int = 0

    def __add__(self, other: Weight) -> Weight:
        return Weight(
            self.flops + other.flops,
            self.state + other.state,
            self.activations + other.activations,
        )


def balance_weights(weights: Sequence[Weight], stages: int, micro_batches: int = 1) -> list[int]:
    """The stage of each unit: contiguous, non-empty stages, the heaviest as light as can be.

    A stage weighs the larger of its share of the time (its flops over all flops) and
    its share of the memory (its state, and its activations times the micro-batches
    1F1B keeps in flight on it, over the state of all units and their activations
    times the micro-batches the first stage keeps). Time decides where stages hold
    about as much; memory where one would hold far more (a large table, the first
    stage's extra micro-batches): the heaviest stage is the slowest or the fullest.

    >>> balance_weights([Weight(1, 10), Weight(1, 1), Weight(1, 1), Weight(1, 10)], 2)
    [0, 0, 1, 1]
    """
    flops = _prefix([w.flops for w in weights])
    state = _prefix([w.state for w in weights])
    kept = _prefix([w.activations for w in weights])
    pipeline = stages
    time_total = flops[-1] or 1
    # All the memory, as the first stage would hold it (the most micro-batches in flight).
    memory_total = state[-1] + kept[-1] * in_flight(0, pipeline, micro_batches) or 1

    def cost(stage: int, start: int, end: int) -> float:
        time = (flops[end] - flops[start]) / time_total
        memory = state[end] - state[start]
        memory += (kept[end] - kept[start]) * in_flight(stage, pipeline, micro_batches)
        return round(max(time, memory / memory_total), 12)

    if flops[-1] == 0 and state[-1] + kept[-1] == 0:
        return balance([1] * len(weights), stages)
    return _cut(len(weights), stages, cost)


def balance(weights: Sequence[int], stages: int) -> list[int]:
    """The stage of each unit of the given weights (one number each), as `balance_weights`.

    Among the cuts whose heaviest stage is lightest, the one with the smallest sum of
    squared stage weights wins, so the other stages are balanced too (a heavy first
    stage, say an embedding, does not leave the rest lopsided). Remaining ties give
    the later stages the extra units, as LiBai does. Needs len(weights) >= stages.

    >>> balance([10, 1, 1, 1, 1, 10], 2)
    [0, 0, 0, 1, 1, 1]
    >>> balance([40, 1, 7, 7, 7, 7, 7, 7], 3)
    [0, 1, 1, 1, 1, 2, 2, 2]
    """
    prefix = _prefix(list(weights))
    return _cut(len(weights), stages, lambda _, start, end: prefix[end] - prefix[start])


def _prefix(values: Sequence[int]) -> list[int]:
    prefix = [0]
    for value in values:
        prefix.append(prefix[-1] + value)
    return prefix


def _cut(count: int, stages: int, cost: Callable[[int, int, int], float]) -> list[int]:
    """The cut whose heaviest stage (`cost(stage, start, end)`) is lightest, then the one
    with the smallest sum of squared stage costs."""
    if stages < 1 or count < stages:
        raise ValueError(f"cannot cut {count} units into {stages} non-empty stages")
    heaviest = _partition(count, stages, cost, max)[0]
    _, assignment = _partition(
        count, stages, cost, lambda previous, part: previous + part * part, limit=heaviest
    )
    return assignment


def _partition(
    count: int,
    stages: int,
    cost: Callable[[int, int, int], float],
    combine: Callable[[float, float], float],
    limit: float | None = None,
) -> tuple[float, list[int]]:
    """Dynamic programme over cut points: best cost of units[:i] in k stages."""
    infinity = float("inf")
    best = [[infinity] * (count + 1) for _ in range(stages + 1)]
    cut = [[0] * (count + 1) for _ in range(stages + 1)]
    best[0][0] = 0
    for k in range(1, stages + 1):
        for i in range(k, count - (stages - k) + 1):
            for j in range(k - 1, i):
                part = cost(k - 1, j, i)
                if best[k - 1][j] == infinity or (limit is not None and part > limit):
                    continue
                total = combine(best[k - 1][j], part)
                if total < best[k][i] or (total == best[k][i] and j < cut[k][i]):
                    best[k][i], cut[k][i] = total, j
    assignment = [0] * count
    end = count
    for k in range(stages, 0, -1):
        start = cut[k][end]
        assignment[start:end] = [k - 1] * (end - start)
        end = start
    return best[stages][count], assignment
