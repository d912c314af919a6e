"""The planner: every way to lay a spec out on N devices, checked, estimated and ranked.

`specc plan SPEC --world N` tries every (data, tensor, pipeline) whose product is N,
and every split of the global batch into micro-batches and accumulation steps, by
writing the sizes into the spec's text (`fixes.value_edits`, the way a suggestion is
written) and checking the result as `specc validate` would: the spec's own rules say
which are possible, and a rejected option says why (its first error). Tensor groups
must stay inside a node. Each possible option is estimated (`specc.estimate`) and
ranked: those that fit the device memory first, then by their estimated step time,
then by the pipeline's bubble.

The step time is a first-order model from nominal figures per device (`INTRA_NODE`,
`INTER_NODE` bandwidths, `DEVICE_FLOPS`): the slowest stage's compute for one
micro-batch (forward and backward, three times the forward's flops) paced over the
m + p - 1 slots of a 1F1B schedule, plus the communication the busiest stage exposes.
That is the tensor-parallel collectives (inside a node) and the pipeline's sends,
which compute waits for, and of the data-parallel reduction of the gradients what
outlasts the backward pass it overlaps with (twice the forward's flops). Options
whose step times differ by less than 0.1 ms are ranked by the bubble. The model knows
nothing of kernel efficiency (a micro-batch of 1 computes as fast per sample as one of
64 here), so it ranks layouts; it does not predict a cluster's throughput.

`--apply` writes the first option's sizes into the spec; only the values that change
are replaced, so comments, order and quoting stay as they were.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from specc import api, fixes
from specc.diagnostics import Edit, Severity, YamlPath
from specc.estimate import Report, estimate
from specc.estimate.units import size_text
from specc.source import Document

INTRA_NODE = 150e9  # bytes/s a device sends inside a node (NVLink-class)
INTER_NODE = 25e9  # bytes/s a device sends to another node (200 Gb/s InfiniBand)
DEVICE_FLOPS = 100e12  # floating-point operations a device sustains per second
PATHS: dict[str, YamlPath] = {
    "data": ("parallel", "data"),
    "tensor": ("parallel", "tensor"),
    "pipeline": ("parallel", "pipeline"),
    "micro_batch": ("training", "micro_batch"),
    "accumulation": ("training", "accumulation"),
}


class PlannerError(Exception):
    """The planner cannot start (the spec does not read, or gives no global batch)."""


@dataclass(frozen=True)
class Option:
    """One layout of the world: its sizes, and its estimate or why it is impossible."""

    data: int
    tensor: int
    pipeline: int
    micro_batch: int
    accumulation: int
    report: Report | None = None
    reason: str | None = None  # why it is rejected
    exposed: float = 0.0  # seconds of communication a step exposes
    step: float = 0.0  # seconds a step takes, exposed communication included
    edits: tuple[Edit, ...] = ()

    @property
    def bubble(self) -> float:
        """The share of a 1F1B step stages wait: (p - 1) / (m + p - 1)."""
        return (self.pipeline - 1) / (self.accumulation + self.pipeline - 1)

    @property
    def fits(self) -> bool:
        assert self.report is not None
        return self.report.fits is not False

    @property
    def sizes(self) -> str:
        return (
            f"data {self.data} x tensor {self.tensor} x pipeline {self.pipeline}, "
            f"micro-batch {self.micro_batch} x {self.accumulation}"
        )


@dataclass(frozen=True)
class Planned:
    """The planner's answer: possible options ranked, and the rejected ones."""

    world: int
    gpus_per_node: int
    device_memory: int | None
    global_batch: int
    ranked: tuple[Option, ...]
    rejected: tuple[Option, ...]

    @property
    def best_per_mesh(self) -> tuple[Option, ...]:
        """The first-ranked option of each (data, tensor, pipeline), in rank order."""
        seen: set[tuple[int, int, int]] = set()
        found = []
        for option in self.ranked:
            mesh = (option.data, option.tensor, option.pipeline)
            if mesh not in seen:
                seen.add(mesh)
                found.append(option)
        return tuple(found)

    def to_dict(self) -> dict[str, object]:
        """The ranking as JSON: every option, in rank order, and the rejected ones."""

        def entry(option: Option) -> dict[str, object]:
            found: dict[str, object] = {
                "data": option.data,
                "tensor": option.tensor,
                "pipeline": option.pipeline,
            }
            if option.report is None:
                return found | {"reason": option.reason}
            return found | {
                "micro_batch": option.micro_batch,
                "accumulation": option.accumulation,
                "peak_rank_bytes": option.report.peak.total,
                "fits": option.fits,
                "exposed_seconds": option.exposed,
                "step_seconds": option.step,
                "bubble": option.bubble,
            }

        return {
            "world": self.world,
            "gpus_per_node": self.gpus_per_node,
            "device_memory": self.device_memory,
            "global_batch": self.global_batch,
            "ranked": [entry(o) for o in self.ranked],
            "rejected": [entry(o) for o in self.rejected],
        }


def plan_world(
    path: str,
    text: str,
    overrides: Sequence[str],
    *,
    world: int,
    gpus_per_node: int,
    device_memory: int | None,
    global_batch: int | None,
) -> Planned:
    """Every option for `world` devices, ranked (see the module's docstring).

    Raises:
        PlannerError: the spec cannot be read, or its global batch is unknown.
    """
    base, applied = api.check_text(path, text, overrides)
    document = base.document
    if document is None or base.unchecked is not None:
        raise PlannerError(f"{path} has errors that stop the planner: fix them first")
    batch = global_batch or _global_batch(base)
    current = _current(base)
    options: list[Option] = []
    rejected: list[Option] = []
    for data, tensor, pipeline in _meshes(world):
        first = Option(data, tensor, pipeline, 0, 0)
        if tensor > gpus_per_node or gpus_per_node % tensor:
            reason = f"a tensor group of {tensor} does not fit in a node of {gpus_per_node}"
            rejected.append(_with(first, reason=reason))
            continue
        if batch % data:
            reason = f"data {data} does not divide the global batch of {batch}"
            rejected.append(_with(first, reason=reason))
            continue
        found: list[Option] = []
        reasons: list[str] = []
        for accumulation in _divisors(batch // data):
            option = Option(data, tensor, pipeline, batch // data // accumulation, accumulation)
            checked = _check(
                option, path, text, document, applied, overrides, device_memory, current
            )
            if checked.report is None:
                reasons.append(checked.reason or "")
            else:
                found.append(_timed(checked, gpus_per_node))
        if found:
            options += found
        else:
            rejected.append(_with(first, reason=reasons[0] if reasons else "no batch split"))
    options.sort(key=_rank)
    return Planned(world, gpus_per_node, device_memory, batch, tuple(options), tuple(rejected))


def _rank(option: Option) -> tuple[bool, int, float, int]:
    return (not option.fits, round(option.step * 1e4), option.bubble, -option.micro_batch)


def _meshes(world: int) -> list[tuple[int, int, int]]:
    return [
        (data, tensor, world // (data * tensor))
        for data, tensor in itertools.product(_divisors(world), repeat=2)
        if world % (data * tensor) == 0
    ]


def _divisors(number: int) -> list[int]:
    return [d for d in range(1, number + 1) if number % d == 0]


def _with(option: Option, **changes: object) -> Option:
    return replace(option, **changes)  # type: ignore[arg-type]


def _current(base: api.Result) -> dict[str, int]:
    """The sizes the spec has now (none known when it does not lower)."""
    if base.plan is None:
        return {}
    mesh = base.plan.mesh
    found = {"data": mesh.data, "tensor": mesh.tensor, "pipeline": mesh.pipeline}
    found["accumulation"] = base.plan.accumulation
    found["micro_batch"] = base.plan.inputs[0].layout.shape[0] // (
        mesh.data * base.plan.accumulation
    )
    return found


def _global_batch(base: api.Result) -> int:
    if base.plan is None:
        raise PlannerError(
            "the spec as written has errors, so its global batch is unknown: "
            "give it with --global-batch"
        )
    return base.plan.inputs[0].layout.shape[0]


def _check(
    option: Option,
    path: str,
    text: str,
    document: Document,
    applied: dict[str, int],
    overrides: Sequence[str],
    device_memory: int | None,
    current: dict[str, int],
) -> Option:
    """The option written into the spec and checked; its estimate, or why it fails.

    Only the sizes that change are written (a missing `pipeline: 1` stays missing).
    """
    wanted = {
        "data": option.data,
        "tensor": option.tensor,
        "pipeline": option.pipeline,
        "micro_batch": option.micro_batch,
        "accumulation": option.accumulation,
    }
    if not (isinstance(document.data, dict) and isinstance(document.data.get("training"), dict)):
        del wanted["micro_batch"], wanted["accumulation"]
    values: dict[YamlPath, object] = {
        PATHS[name]: value for name, value in wanted.items() if current.get(name) != value
    }
    edits = fixes.value_edits(text, document, applied, values)
    if edits is None:
        return _with(option, reason="the sizes cannot be written into the spec")
    changed, trial_overrides = _applied(text, edits, overrides)
    result, _ = api.check_text(path, changed, trial_overrides)
    if result.plan is None:
        errors = [d for d in result.diagnostics.sorted() if d.severity is Severity.ERROR]
        reason = f"{errors[0].code} {errors[0].message}" if errors else "it does not lower"
        if len(errors) > 1:
            reason += f" (and {len(errors) - 1} more)"
        return _with(option, reason=reason)
    return _with(option, report=estimate(result.plan, device_memory), edits=edits)


def _applied(text: str, edits: Sequence[Edit], overrides: Sequence[str]) -> tuple[str, list[str]]:
    """The text with the file edits, and the overrides with the --set edits."""
    changed = fixes.apply_edits(text, edits)
    result = list(overrides)
    for edit in edits:
        if edit.override is not None:
            result = [o for o in result if o.partition("=")[0].strip() != edit.override]
            result.append(edit.text)
    return changed, result


def _timed(option: Option, gpus_per_node: int) -> Option:
    """The seconds of communication the busiest stage exposes per step, and the step."""
    report = option.report
    assert report is not None
    block = option.data * option.tensor  # the ranks of one stage, consecutive
    data_link = INTRA_NODE if block <= gpus_per_node else INTER_NODE
    pipe_link = INTRA_NODE if block * option.pipeline <= gpus_per_node else INTER_NODE
    exposed = slowest = 0.0
    for stage in report.stages:
        slowest = max(slowest, 3 * stage.flops / DEVICE_FLOPS)
        backward = 2 * stage.flops * report.micro_batches / DEVICE_FLOPS
        reduction = report.traffic(stage.index, "data") / data_link
        exposed = max(
            exposed,
            report.traffic(stage.index, "tensor") / INTRA_NODE
            + report.traffic(stage.index, "pipeline") / pipe_link
            + max(0.0, reduction - backward),
        )
    slots = report.micro_batches + option.pipeline - 1  # of a 1F1B schedule
    return _with(option, exposed=exposed, step=slowest * slots + exposed)


def apply(path: str, text: str, option: Option) -> str:
    """The spec's text with `option`'s sizes written in; nothing else changes.

    Raises:
        PlannerError: a size comes from a --set, which a file cannot hold.
    """
    from_set = [e.override for e in option.edits if e.override is not None]
    if from_set:
        raise PlannerError(
            f"{', '.join(sorted(set(from_set)))} come from --set; run without it to --apply"
        )
    return fixes.apply_edits(text, option.edits)


def planned_text(planned: Planned, top: int = 10) -> str:
    """The ranking for people."""
    memory = size_text(planned.device_memory) if planned.device_memory else "unlimited"
    best = planned.best_per_mesh
    lines = [
        f"planner: {planned.world} devices, {planned.gpus_per_node} per node, {memory} "
        f"each; global batch {planned.global_batch}",
        f"{len(planned.ranked)} options of {len(best)} meshes ranked (fits first, then "
        "estimated step time, then pipeline bubble); each mesh's best split, the first "
        f"{min(top, len(best))}:",
        "     data tensor pipeline  micro-batch x steps   peak memory  fits       step"
        "  exposed comm  bubble",
    ]
    for number, option in enumerate(best[:top], 1):
        report = option.report
        assert report is not None
        peak = size_text(report.peak.total)
        fits = "yes" if option.fits else "no"
        lines.append(
            f"  {number:>2} {option.data:>5} {option.tensor:>6} {option.pipeline:>8}  "
            f"{option.micro_batch:>11} x {option.accumulation:<5}  {peak:>11}  {fits:<4}  "
            f"{option.step * 1e3:>6.1f} ms  {option.exposed * 1e3:>9.1f} ms  {option.bubble:>6.1%}"
        )
    if planned.rejected:
        lines.append(f"{len(planned.rejected)} rejected:")
        for option in planned.rejected:
            lines.append(
                f"  data {option.data} x tensor {option.tensor} x pipeline {option.pipeline}: "
                f"{option.reason}"
            )
    return "\n".join(lines) + "\n"
