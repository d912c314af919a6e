"""The estimate's output: frozen data, dumped to JSON (docs/plan-report.md) and to text.

Every figure is per rank unless its name says otherwise; bytes are integers. A
`RankMemory` stands for every rank that holds the same (the ranks of a stage do,
their tensor shards being equal), listed in `ranks`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class StageEstimate:
    """One pipeline stage: its layers, and what one of its ranks computes and keeps."""

    index: int
    ranks: tuple[int, ...]
    layers: tuple[str, ...]  # "wte", "h.0-5"
    parameters: int  # elements of the whole stage (all tensor shards)
    flops: int  # forward, one micro-batch, one rank
    activations: int  # bytes kept for backward, one micro-batch, one rank
    in_flight: int  # micro-batches whose activations are kept at once (1F1B)


@dataclass(frozen=True, slots=True)
class RankMemory:
    """What each of `ranks` holds at the peak of a training step, in bytes."""

    ranks: tuple[int, ...]
    stage: int
    parameters: int
    gradients: int
    optimizer: int
    activations: int  # one micro-batch's x in flight

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.activations


@dataclass(frozen=True, slots=True)
class Collective:
    """Collectives of one kind, phase and purpose, on one stage (repetitions grouped).

    `count` collectives each time the phase runs (`per_step` times a step: the
    micro-batches for forward and backward, once for the optimizer's); `bytes` is
    what each rank holds before them, summed over the count; `traffic` what each rank
    sends for them (a ring: all-reduce 2(n-1)/n, all-gather (n-1), reduce-scatter and
    all-to-all (n-1)/n of its bytes, a send all of them).
    """

    kind: Literal["all-reduce", "all-gather", "reduce-scatter", "all-to-all", "send"]
    phase: Literal["forward", "backward", "step"]
    group: str  # the mesh axes, e.g. "tensor", "data", "data x tensor", "stage 1 -> 0"
    group_size: int
    stage: int
    what: str  # "h.0-11.attn: dense partial sums"
    names: tuple[str, ...]  # the layers (or parameters) it is for, one per collective
    count: int
    bytes: int
    traffic: int
    per_step: int


@dataclass(frozen=True, slots=True)
class Report:
    """Memory and communication of one training step of a plan, per rank."""

    package: str
    data: int
    tensor: int
    pipeline: int
    precision: str
    optimizer: str
    optimizer_states: int  # fp32 values per parameter: AdamW 2, SGD with momentum 1
    zero: int
    recompute: bool
    sequence_parallel: bool
    micro_batches: int  # per step (gradient accumulation)
    activation_bytes: int  # of one activation element: 4 in fp32, 2 in fp16 or bf16
    stages: tuple[StageEstimate, ...]
    memory: tuple[RankMemory, ...]
    collectives: tuple[Collective, ...]
    device_memory: int | None

    @property
    def peak(self) -> RankMemory:
        """The rank that holds the most."""
        return max(self.memory, key=lambda m: (m.total, -m.stage))

    @property
    def fits(self) -> bool | None:
        if self.device_memory is None:
            return None
        return self.peak.total <= self.device_memory

    def traffic(self, stage: int, group: str | None = None) -> int:
        """Bytes one rank of `stage` sends per step (in `group`'s collectives only)."""
        return sum(
            c.traffic * c.per_step
            for c in self.collectives
            if c.stage == stage and (group is None or _family(c.group) == group)
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["format"] = FORMAT_VERSION
        for entry, memory in zip(data["memory"], self.memory, strict=True):
            entry["total"] = memory.total
            if self.device_memory is not None:
                entry["headroom"] = self.device_memory - memory.total
        data["totals"] = {
            "peak_rank_bytes": self.peak.total,
            "fits": self.fits,
            "traffic_per_step": {
                str(stage.index): {family: self.traffic(stage.index, family) for family in FAMILIES}
                | {"all": self.traffic(stage.index)}
                for stage in self.stages
            },
        }
        return data


FAMILIES = ("tensor", "data", "pipeline")


def _family(group: str) -> str:
    """Which parallelism a collective's group belongs to, for the totals."""
    if group.startswith("stage"):
        return "pipeline"
    return "tensor" if "tensor" in group else "data"
