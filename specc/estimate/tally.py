"""One pass over a plan's steps: what each stage computes and keeps, and what moves.

Each layer's figures are its kind's formula (`Kind.cost`, in `specc/kinds/<kind>.py`);
this module adds them up on the stage that runs the layer, with the relayouts between
layers (an all-gather in forward, or in backward for a local slice), the activations
crossing stages (a send per micro-batch, and its gradient back), the loss
(`kinds.cross_entropy.loss_cost`), and recomputation (a recomputed repetition keeps
only its input, plus one repetition's activations while it runs backward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from specc import kinds
from specc.kinds.costs import Comm, Cost, Phase, layer_cost, on_slices
from specc.kinds.cross_entropy import loss_cost
from specc.plan import LayerStep, Layout, ModuleClass, Plan, Relayout, RepeatStep, StageMove

FP32, INT64 = 4, 8


@dataclass(frozen=True)
class Event:
    """One collective of one micro-batch (or of the step, for the optimizer's)."""

    stage: int
    kind: str
    phase: str
    axes: tuple[str, ...]  # mesh axes of its group, or ("stage a", "stage b") for a send
    name: str  # the layer (or parameter) it is for, e.g. "h.3.attn"
    what: str
    bytes: int


@dataclass
class Tally:
    """Per-stage sums of one micro-batch on one rank, and every collective."""

    plan: Plan
    flops: list[int] = field(default_factory=list)
    saved: list[int] = field(default_factory=list)  # bytes kept for backward
    events: list[Event] = field(default_factory=list)
    needs_grad: bool = False  # a layer before the current one has parameters

    def __post_init__(self) -> None:
        stages = self.plan.mesh.pipeline
        self.flops, self.saved = [0] * stages, [0] * stages
        self.bodies = {c.name: c for c in self.plan.classes if not c.is_model}
        self.act = FP32 if self.plan.recipe.precision == "fp32" else 2
        # The plan's layouts hold a whole step's batch; a micro-batch is this share of it.
        self.share = self.plan.accumulation
        self.moved: set[tuple[str, int]] = set()  # inputs already sent to a stage

    def run(self) -> Tally:
        current = 0
        for step in self.plan.model.steps:
            if isinstance(step, LayerStep):
                assert step.stage is not None
                current = step.stage
                self.saved[current] += self.layer(step, current, step.name)
            elif isinstance(step, Relayout):
                self.relayout(step, current, "")
            elif isinstance(step, StageMove):
                self.send(current, step.stage, step.output, "activation", grad=True)
                current = step.stage
            elif isinstance(step, RepeatStep):
                current = self.repeat(step, current)
        self.loss()
        return self

    # -- layers -------------------------------------------------------------------------

    def layer(self, step: LayerStep, stage: int, name: str) -> int:
        """Add a layer's flops and collectives; return the bytes it keeps."""
        rule = kinds.BY_NAME[step.kind].cost
        mesh = self.plan.mesh
        cost = Cost() if rule is None else layer_cost(rule, step, mesh.axes, mesh.tensor)
        self.flops[stage] += cost.flops // self.share
        for comm in cost.comms:
            streamed = step.output if comm.phase == "forward" else step.input
            if (
                comm.kind == "all-reduce"
                and comm.axes == ("tensor",)
                and on_slices(streamed, mesh.axes)
            ):
                self.sequence_parallel(stage, comm, name)
            elif not comm.grad or self.needs_grad:
                self.collective(stage, comm, name)
        if on_slices(step.input, mesh.axes):
            self.slice_gradients(step, stage, name)
        self.needs_grad = self.needs_grad or bool(step.params)
        return (cost.saved * self.act + cost.fixed) // self.share

    def slice_gradients(self, step: LayerStep, stage: int, name: str) -> None:
        """A weight whole on every tensor rank, used on a slice of the sequence, has a
        partial gradient on each: all-reduced over the tensor group (Megatron's norms);
        a position table's rows are each rank's own, all-gathered."""
        axes, tensor = self.plan.mesh.axes, self.plan.mesh.tensor
        for param in step.params:
            if param.layout.sbp[axes.index("tensor")] != "B":
                continue
            size = math.prod(param.layout.local_shape) * FP32
            kind, what = "all-reduce", f"{param.name} gradient, from sequence slices"
            if step.kind == "position_embedding":
                kind, what, size = "all-gather", f"{param.name} gradient rows", size // tensor
            self.events.append(Event(stage, kind, "backward", ("tensor",), name, what, size))

    def relayout(self, step: Relayout, stage: int, prefix: str) -> None:
        """A gather all-gathers in forward; a local slice all-gathers its gradient."""
        moved = step.before if step.kind == "gather" else step.after
        elements = math.prod(moved.local_shape) // self.share
        phase: Phase = "forward" if step.kind == "gather" else "backward"
        if phase == "forward" or self.needs_grad:
            comm = Comm("all-gather", phase, elements, step.reason)
            self.collective(stage, comm, prefix + "relayout")

    def repeat(self, step: RepeatStep, current: int) -> int:
        body = self.bodies[step.module]
        inputs = {i.name: i for i in self.plan.inputs}
        kept: dict[int, int] = {}  # per stage, the most one repetition keeps
        for index, stage in enumerate(step.stages):
            if stage != current:
                self.send(current, stage, step.output, "activation", grad=True)
            for argument in step.call_arguments:
                # Every repetition reads the input from stage 0, where inputs are made;
                # the compiler sends it to each stage once.
                if stage and (argument, stage) not in self.moved:
                    self.moved.add((argument, stage))
                    layout = inputs[argument].layout
                    self.send(0, stage, layout, f"input {argument}", grad=False, dtype=INT64)
            current = stage
            saved = self.body(body, stage, f"{step.name}.{index}.")
            if self.plan.recipe.recompute:
                # Only the repetition's input stays; its activations are made again,
                # one repetition at a time, in backward.
                self.saved[stage] += math.prod(step.output.local_shape) * self.act // self.share
                kept[stage] = max(kept.get(stage, 0), saved)
            else:
                self.saved[stage] += saved
        for stage, most in kept.items():
            self.saved[stage] += most
        return current

    def body(self, body: ModuleClass, stage: int, prefix: str) -> int:
        saved = 0
        for step in body.steps:
            if isinstance(step, LayerStep):
                saved += self.layer(step, stage, prefix + step.name)
            elif isinstance(step, Relayout):
                self.relayout(step, stage, prefix)
        return saved

    def loss(self) -> None:
        plan = self.plan
        if plan.loss is None:
            return
        stage = plan.output_stage
        cost = loss_cost(plan.output, plan.mesh.axes)
        self.flops[stage] += cost.flops // self.share
        self.saved[stage] += cost.fixed // self.share
        for comm in cost.comms:
            self.collective(stage, comm, "loss")
        if stage != 0:  # labels are made on stage 0, with the inputs
            self.send(0, stage, plan.loss.labels.layout, "labels", grad=False, dtype=INT64)

    # -- communication -------------------------------------------------------------------

    def collective(self, stage: int, comm: Comm, name: str) -> None:
        if math.prod(getattr(self.plan.mesh, axis) for axis in comm.axes) == 1:
            return
        size = self._bytes(comm)
        self.events.append(Event(stage, comm.kind, comm.phase, comm.axes, name, comm.what, size))

    def sequence_parallel(self, stage: int, comm: Comm, name: str) -> None:
        """Megatron's sequence parallelism, for an all-reduce of the split stream: partial
        sums the layer would all-reduce in forward are reduce-scattered over the
        sequence, and their gradient all-gathered in backward; an input gradient it
        would all-reduce in backward is reduce-scattered, the input having been
        all-gathered in forward. The same traffic as the all-reduce."""
        size = self._bytes(comm)
        shard = size // self.plan.mesh.tensor
        what = comm.what
        if comm.phase == "forward":
            steps = [
                ("reduce-scatter", "forward", size, what),
                ("all-gather", "backward", shard, f"{what}: gradient"),
            ]
        else:
            steps = [("all-gather", "forward", shard, "input, gathered over the sequence")]
            steps += [("reduce-scatter", "backward", size, what)] if self.needs_grad else []
        for kind, phase, moved, said in steps:
            self.events.append(Event(stage, kind, phase, comm.axes, name, said, moved))

    def _bytes(self, comm: Comm) -> int:
        elements = comm.elements // self.share if comm.per_sample else comm.elements
        return elements * (FP32 if comm.fp32 else self.act)

    def send(
        self,
        source: int,
        target: int,
        layout: Layout,
        what: str,
        *,
        grad: bool,
        dtype: int | None = None,
    ) -> None:
        """A tensor crossing stages each micro-batch; an activation's gradient goes back."""
        size = math.prod(layout.local_shape) // self.share * (dtype or self.act)
        axes = (f"stage {source}", f"stage {target}")
        self.events.append(Event(source, "send", "forward", axes, what, what, size))
        if grad and self.needs_grad:
            back = (f"stage {target}", f"stage {source}")
            self.events.append(Event(target, "send", "backward", back, what, what, size))
