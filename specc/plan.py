"""Stage 3's output: the plan, a frozen and complete description of the generated model.

The plan is the contract between lowering and rendering. It holds every number and
every string the templates print (identifiers, SBP spellings, constructor and call
arguments), so templates never compute. It imports nothing from `specc.spec` or
jinja2 and can be dumped to JSON (`specc plan --json`) and to text (`specc plan`).

SBP tuples are written per mesh axis, `("S(0)", "B")` on a (data, tensor) mesh, and
already collapsed the way LiBai's `get_nd_sbp` does: an axis of size 1 is dropped, and
a mesh with no axis left is 1D with `("B",)`.

The model is a tree of module classes: `Model` and one class per `repeat` body. Each
holds a flat list of steps; a residual is a pair of steps around its body.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from specc.codeformat import call_lines, import_lines

Sbp = tuple[str, ...]
Shape = tuple[int, ...]
RankGrid = tuple[int, ...] | tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class Stage:
    index: int
    ranks: RankGrid


@dataclass(frozen=True, slots=True)
class Mesh:
    data: int
    tensor: int
    pipeline: int
    device: Literal["auto", "cuda", "cpu"]
    axes: tuple[str, ...]  # mesh axes present in SBP tuples, e.g. ("data", "tensor")
    stages: tuple[Stage, ...]

    @property
    def world_size(self) -> int:
        return self.data * self.tensor * self.pipeline

    @property
    def is_2d(self) -> bool:
        return len(self.axes) == 2

    @property
    def pipelined(self) -> bool:
        return self.pipeline > 1


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a tensor lives: its global shape, SBP, and the shape each rank holds."""

    shape: Shape
    sbp: Sbp
    local_shape: Shape
    stage: int = 0


@dataclass(frozen=True, slots=True)
class SbpConstant:
    """A named SBP signature, declared once in the generated `parallel.py`."""

    name: str
    sbp: Sbp
    python: str  # e.g. "(S(0), B)"
    comment: str


@dataclass(frozen=True, slots=True)
class Param:
    name: str  # dotted path inside its layer, e.g. "query.weight"
    layout: Layout


@dataclass(frozen=True, slots=True)
class InputTensor:
    name: str
    dtype: str
    layout: Layout
    sbp_constant: str
    source: str
    high: int | None  # exclusive upper bound of sampled integers, for int64 inputs
    sample: tuple[str, ...]  # the lines random_inputs() makes it with


@dataclass(frozen=True, slots=True)
class LayerStep:
    """One layer of a forward pass and the module that implements it."""

    step: ClassVar[str] = "layer"
    name: str
    kind: str
    module: str  # class name in the generated layers.py, or an `nn.` class
    arguments: tuple[str, ...]  # rendered constructor arguments, in order
    attributes: dict[str, Any]  # the layer's settings, for the plan's readers (and twins)
    params: tuple[Param, ...]
    input: Layout
    output: Layout
    source: str  # "spec.yaml:12", for the comment beside the line that builds it
    sbp_comment: str  # the SBP algebra of the layer, e.g. "(S(0), B) -> (S(0), S(1))"
    reads: str  # the variable it is applied to
    call_arguments: tuple[str, ...]  # what forward passes besides `reads`
    construct: tuple[str, ...]  # the lines of __init__ that build it
    call: tuple[str, ...]  # the lines of forward that apply it
    stage: int  # pipeline stage (within a repeat body: that of its class's instance)


@dataclass(frozen=True, slots=True)
class Relayout:
    """A change of SBP between layers: an all-gather or a local split, never implicit."""

    step: ClassVar[str] = "relayout"
    kind: Literal["gather", "split"]
    before: Layout
    after: Layout
    reason: str
    reads: str
    constants: tuple[str, ...]  # the SBP constants of parallel.py it uses
    call: tuple[str, ...]  # `hidden = x.to_global(sbp=..., grad_sbp=...)`, laid out


@dataclass(frozen=True, slots=True)
class StageMove:
    """The activation crosses to the next pipeline stage (eager pipelining)."""

    step: ClassVar[str] = "stage_move"
    stage: int
    reads: str
    output: Layout


@dataclass(frozen=True, slots=True)
class ResidualBegin:
    step: ClassVar[str] = "residual_begin"
    variable: str  # holds the residual's input
    reads: str
    source: str


@dataclass(frozen=True, slots=True)
class ResidualEnd:
    step: ClassVar[str] = "residual_end"
    variable: str
    output: Layout


@dataclass(frozen=True, slots=True)
class RepeatStep:
    """`times` instances of a generated module class, applied in turn."""

    step: ClassVar[str] = "repeat"
    kind: ClassVar[str] = "repeat"
    name: str
    times: int
    module: str  # the generated class of one repetition
    reads: str
    call_arguments: tuple[str, ...]
    output: Layout
    source: str
    construct: tuple[str, ...]  # the lines of __init__ that build the ModuleList
    call: tuple[str, ...]  # the lines of forward that loop over it
    stages: tuple[int, ...]  # pipeline stage of each repetition
    stages_constant: str | None  # module constant holding them, when pipelined
    stages_expression: str  # e.g. "[0] * 6 + [1] * 6"
    stages_lines: tuple[str, ...]  # the constant's assignment, laid out


Step = LayerStep | Relayout | StageMove | ResidualBegin | ResidualEnd | RepeatStep


@dataclass(frozen=True, slots=True)
class ModuleClass:
    """A generated nn.Module: `Model`, or one repetition of a `repeat`."""

    name: str
    doc: str
    is_model: bool  # the top-level Model (checks the world size) or a repeat body
    forward_parameters: tuple[str, ...]  # after self
    signature: tuple[str, ...]  # the lines of `def forward(...)`
    steps: tuple[Step, ...]
    returns: str
    entry_moves: tuple[str, ...]  # inputs a repeat body moves onto its own stage first

    @property
    def layers(self) -> tuple[LayerStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, LayerStep))


@dataclass(frozen=True, slots=True)
class LayerClass:
    """A layer class the generated `layers.py` defines, and the template that writes it."""

    name: str
    template: str
    sbp_constants: tuple[str, ...]
    uses_math: bool  # whether its code needs `import math`


@dataclass(frozen=True, slots=True)
class Loss:
    kind: str
    labels: InputTensor


@dataclass(frozen=True, slots=True)
class Launch:
    single: str  # the command for one machine
    single_fits_one_line: bool  # write `LAUNCH_COMMAND = "..."` unwrapped, as ruff would
    node_counts: tuple[int, ...]  # machine counts > 1 that keep every tensor group on one

    @property
    def node_counts_lines(self) -> tuple[str, ...]:
        counts = [str(n) for n in self.node_counts]
        return call_lines(0, "NODE_COUNTS = ", counts, "]", "[", hug=False)


@dataclass(frozen=True, slots=True)
class Plan:
    package: str
    spec_file: str  # the spec's file name, as the header names it
    specc_version: str
    mesh: Mesh
    inputs: tuple[InputTensor, ...]
    classes: tuple[ModuleClass, ...]  # repeat bodies first, Model last
    output: Layout
    loss: Loss | None
    sbp_constants: tuple[SbpConstant, ...]
    layer_classes: tuple[LayerClass, ...]
    parameter_count: int
    launch: Launch
    sizes: dict[str, int]
    accumulation: int  # micro-batches per training step
    stage_parameters: tuple[int, ...]  # parameters held by each pipeline stage
    stage_units: tuple[tuple[str, ...], ...]  # the layers (and repetitions) of each stage

    @property
    def stage_repeats(self) -> tuple[RepeatStep, ...]:
        return tuple(s for s in self.model.steps if isinstance(s, RepeatStep))

    @property
    def training_imports(self) -> tuple[str, ...]:
        """The lines by which training.py imports from model.py."""
        constants = [s.stages_constant for s in self.stage_repeats if s.stages_constant]
        return import_lines(".model", ["Model", *constants])

    @property
    def model(self) -> ModuleClass:
        return self.classes[-1]

    @property
    def model_imports(self) -> tuple[str, ...]:
        """The lines by which model.py imports from layers.py and parallel.py."""
        layers = {
            s.module for c in self.classes for s in c.layers if not s.module.startswith("nn.")
        }
        if self.loss is not None:
            layers.add("cross_entropy")
        parallel = {"PLACEMENT", "check_world_size"} | {i.sbp_constant for i in self.inputs}
        if self.mesh.pipelined:
            parallel.add("STAGES")
        if self.loss is not None:
            parallel.add(self.loss.labels.sbp_constant)
        for cls in self.classes:
            parallel |= {c for s in cls.steps if isinstance(s, Relayout) for c in s.constants}
        lines = import_lines(".layers", sorted(layers)) if layers else ()
        return (*lines, *import_lines(".parallel", sorted(parallel)))

    @property
    def inputs_tuple(self) -> str:
        """The inputs as a tuple expression, e.g. "(x,)"."""
        names = [i.name for i in self.inputs]
        return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"

    @property
    def layers_use_math(self) -> bool:
        return any(c.uses_math for c in self.layer_classes)

    @property
    def layers_imports(self) -> tuple[str, ...]:
        """The lines by which layers.py imports from parallel.py."""
        names = sorted({c for cls in self.layer_classes for c in cls.sbp_constants})
        return import_lines(".parallel", names) if names else ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mesh"]["world_size"] = self.mesh.world_size
        for cls, source in zip(data["classes"], self.classes, strict=True):
            for step, original in zip(cls["steps"], source.steps, strict=True):
                step["step"] = original.step
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_text(self) -> str:
        """The plan for people: mesh, placements, and every tensor's global and local layout."""
        mesh = self.mesh
        axes = " x ".join(
            f"{axis}={getattr(mesh, axis)}" for axis in ("data", "tensor", "pipeline")
        )
        lines = [
            f"plan of {self.package} (from {self.spec_file})",
            f"mesh: {axes} = {mesh.world_size} ranks, device {mesh.device}, "
            f"SBP axes ({', '.join(mesh.axes) or 'none'})",
        ]
        for stage in mesh.stages:
            lines.append(
                f"  stage {stage.index}: ranks {_ranks_text(stage.ranks)}, "
                f"{self.stage_parameters[stage.index]:,} parameters: "
                + ", ".join(self.stage_units[stage.index])
            )
        if self.sizes:
            lines.append("sizes: " + ", ".join(f"{k}={v}" for k, v in self.sizes.items()))
        lines.append("inputs:")
        lines += [f"  {i.name}: {_layout_text(i.layout)} {i.dtype}" for i in self.inputs]
        for cls in reversed(self.classes):
            lines.append(f"{cls.name}:")
            lines += _steps_text(cls.steps)
        lines.append(f"output: {_layout_text(self.output)}")
        if self.loss is not None:
            lines.append(f"loss: {self.loss.kind}, labels {_layout_text(self.loss.labels.layout)}")
        lines.append(f"parameters: {self.parameter_count:,}")
        return "\n".join(lines) + "\n"


def _steps_text(steps: tuple[Step, ...]) -> list[str]:
    lines = []
    for step in steps:
        if isinstance(step, LayerStep):
            lines.append(
                f"  {step.name} ({step.kind}, {step.module}) at {step.source}"
                + ("" if step.stage is None else f", stage {step.stage}")
            )
            width = max([len(p.name) for p in step.params] + [6]) + 1
            lines += [f"    {p.name:<{width}}{_layout_text(p.layout)}" for p in step.params]
            lines.append(f"    {'output':<{width}}{_layout_text(step.output)}")
        elif isinstance(step, Relayout):
            lines.append(f"  {step.kind}: {step.reason}")
            lines.append(f"    output {_layout_text(step.after)}")
        elif isinstance(step, StageMove):
            lines.append(f"  move to stage {step.stage}: {_layout_text(step.output)}")
        elif isinstance(step, ResidualBegin):
            lines.append(f"  residual {step.variable} = input (at {step.source})")
        elif isinstance(step, ResidualEnd):
            lines.append(f"  add {step.variable}: output {_layout_text(step.output)}")
        else:
            lines.append(
                f"  {step.name}: {step.times} x {step.module} at {step.source}, "
                f"stages {step.stages_expression}"
            )
            lines.append(f"    output {_layout_text(step.output)}")
    return lines


def _shape_text(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _layout_text(layout: Layout) -> str:
    return (
        f"{_shape_text(layout.shape)} sbp ({', '.join(layout.sbp)}) "
        f"local {_shape_text(layout.local_shape)}"
    )


def _ranks_text(ranks: RankGrid) -> str:
    return json.dumps(ranks).replace("],[", "], [")
