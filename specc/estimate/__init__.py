"""Stage 3b, estimate: what a plan costs each rank in memory and communication.

`estimate(plan)` reads a finished plan (never the spec) and the kinds' formulas
(`Kind.cost`) and returns a `Report`: per rank, the bytes of weights, gradients,
optimizer state and activations at the peak of a training step, and every collective
a step runs. It imports only `plan` and `kinds`; `specc plan` prints the report
(`text.py`), `specc plan --svg` draws it (`picture.py`), the planner ranks plans by it.

The pipeline schedule is 1F1B, as OneFlow's graph runs it: stage s of p keeps the
activations of min(micro-batches, p - s) micro-batches at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from specc.estimate.report import Collective, RankMemory, Report, StageEstimate
from specc.estimate.state import gradient_reduction, optimizer_states, stage_state
from specc.estimate.tally import Event, Tally
from specc.kinds.costs import in_flight
from specc.plan import Plan, RankGrid

__all__ = ["Report", "estimate", "in_flight"]


def estimate(plan: Plan, device_memory: int | None = None) -> Report:
    """The memory and communication of one training step of `plan`, per rank."""
    tally = Tally(plan).run()
    mesh, micro_batches = plan.mesh, plan.accumulation
    events = list(tally.events)
    for stage in range(mesh.pipeline):
        for kind, name, size in gradient_reduction(plan, stage):
            events.append(Event(stage, kind, "step", ("data",), name, "gradients", size))
    stages, memory = [], []
    for index in range(mesh.pipeline):
        ranks = _flat(mesh.stages[index].ranks) if mesh.stages else ()
        flight = in_flight(index, mesh.pipeline, micro_batches)
        stages.append(
            StageEstimate(
                index=index,
                ranks=ranks,
                layers=plan.stage_units[index],
                parameters=plan.stage_parameters[index],
                flops=tally.flops[index],
                activations=tally.saved[index],
                in_flight=flight,
            )
        )
        weights, gradients, optimizer = stage_state(plan, index)
        activations = tally.saved[index] * flight
        memory.append(RankMemory(ranks, index, weights, gradients, optimizer, activations))
    return Report(
        package=plan.package,
        data=mesh.data,
        tensor=mesh.tensor,
        pipeline=mesh.pipeline,
        precision=plan.recipe.precision,
        optimizer=plan.recipe.optimizer,
        optimizer_states=optimizer_states(plan),
        zero=plan.recipe.zero,
        recompute=plan.recipe.recompute,
        sequence_parallel=plan.recipe.sequence_parallel,
        micro_batches=micro_batches,
        activation_bytes=tally.act,
        stages=tuple(stages),
        memory=_grouped(memory),
        collectives=tuple(_collectives(plan, events)),
        device_memory=device_memory,
    )


def _flat(ranks: RankGrid) -> tuple[int, ...]:
    found: list[int] = []
    for item in ranks:
        found.extend(item if isinstance(item, tuple) else (item,))
    return tuple(found)


def _grouped(memory: list[RankMemory]) -> tuple[RankMemory, ...]:
    """Stages whose ranks hold the same figures are one entry (their ranks together)."""
    groups: dict[tuple[int, int, int, int], RankMemory] = {}
    for item in memory:
        key = (item.parameters, item.gradients, item.optimizer, item.activations)
        if key in groups:
            first = groups[key]
            groups[key] = RankMemory(
                first.ranks + item.ranks, first.stage, *key
            )  # the first stage names the group
        else:
            groups[key] = item
    return tuple(groups.values())


_INDEX = re.compile(r"\.(\d+)\.")


def _collectives(plan: Plan, events: Iterable[Event]) -> list[Collective]:
    """Events grouped by stage, kind, phase, group and purpose, repetitions together."""
    mesh = plan.mesh
    grouped: dict[tuple[int, str, str, tuple[str, ...], str, str], list[Event]] = {}
    for event in events:
        pattern = _INDEX.sub(".*.", event.name, count=1)
        if event.phase == "step":
            pattern = ""  # a stage's gradients are one line
        key = (event.stage, event.kind, event.phase, event.axes, event.what, pattern)
        grouped.setdefault(key, []).append(event)
    found = []
    for (stage, kind, phase, axes, what, pattern), items in grouped.items():
        if kind == "send":
            group, size = f"{axes[0]} -> {axes[1].removeprefix('stage ')}", 2
        else:
            group = " x ".join(axes)
            size = 1
            for axis in axes:
                size *= getattr(mesh, axis)
        total = sum(e.bytes for e in items)
        names = tuple(e.name for e in items)
        label = f"{_ranges(pattern, names)}: {what}" if pattern else f"{len(items)} {what}"
        if kind == "send":
            label = what
        found.append(
            Collective(
                kind=kind,  # type: ignore[arg-type]
                phase=phase,  # type: ignore[arg-type]
                group=group,
                group_size=size,
                stage=stage,
                what=label,
                names=names,
                count=len(items),
                bytes=total,
                traffic=_traffic(kind, size, total),
                per_step=1 if phase == "step" else plan.accumulation,
            )
        )
    return found


def _ranges(pattern: str, names: tuple[str, ...]) -> str:
    """`h.*.attn` over h.0..h.11 -> `h.0-11.attn`; a name without repetitions as it is."""
    if "*" not in pattern:
        return pattern
    indices = sorted({int(m.group(1)) for n in names if (m := _INDEX.search(n))})
    if len(indices) == 1:
        shown = str(indices[0])
    elif indices == list(range(indices[0], indices[-1] + 1)):
        shown = f"{indices[0]}-{indices[-1]}"
    else:
        shown = ",".join(map(str, indices))
    return pattern.replace("*", shown, 1)


def _traffic(kind: str, size: int, total: int) -> int:
    """Bytes each rank sends for collectives over `size` ranks holding `total` bytes (ring)."""
    if kind == "send":
        return total
    if kind == "all-reduce":
        return 2 * (size - 1) * total // size
    if kind == "all-gather":
        return (size - 1) * total
    return (size - 1) * total // size
