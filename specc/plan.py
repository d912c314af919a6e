"""Stage 3's output: the plan, a frozen and complete description of the generated model.

The plan is the contract between lowering and rendering. It holds every number and
every string the templates print (identifiers, SBP spellings, constructor arguments),
so templates never compute. It imports nothing from `specc.spec` or jinja2 and can be
dumped to JSON (`specc plan --format json`) and to text (`specc plan`).

SBP tuples are written per mesh axis, `("S(0)", "B")` on a (data, tensor) mesh, and
already collapsed the way LiBai's `get_nd_sbp` does: an axis of size 1 is dropped, and
a mesh with no axis left is 1D with `("B",)`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

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
    name: str
    layout: Layout
    sbp_constant: str


@dataclass(frozen=True, slots=True)
class InputTensor:
    name: str
    dtype: str
    layout: Layout
    sbp_constant: str
    source: str
    randn_arguments: tuple[str, ...]  # how random_inputs() makes a sample of it
    fits_one_line: bool


@dataclass(frozen=True, slots=True)
class LayerStep:
    """One layer of the forward pass and the module that implements it."""

    step: ClassVar[str] = "layer"
    name: str
    kind: str
    module: str  # class name in the generated layers.py, or an `nn.` class
    arguments: tuple[str, ...]  # rendered constructor arguments, in order
    params: tuple[Param, ...]
    input: Layout
    output: Layout
    source: str  # "spec.yaml:12", for the comment beside the line that builds it
    sbp_comment: str  # the SBP algebra of the layer, e.g. "(S(0), B) -> (S(0), S(1))"
    fits_one_line: bool  # whether its construction fits one line of generated code


@dataclass(frozen=True, slots=True)
class Relayout:
    """A change of SBP between layers: an all-gather or a local split, never implicit."""

    step: ClassVar[str] = "relayout"
    kind: Literal["gather", "split"]
    before: Layout
    after: Layout
    sbp_constant: str
    reason: str


Step = LayerStep | Relayout


@dataclass(frozen=True, slots=True)
class LayerClass:
    """A layer class the generated `layers.py` defines, and the template that writes it."""

    name: str
    template: str
    sbp_constants: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Launch:
    single: str  # the command for one machine
    single_fits_one_line: bool  # whether `LAUNCH_COMMAND = "..."` fits one line
    node_counts: tuple[int, ...]  # machine counts > 1 that keep every tensor group on one


@dataclass(frozen=True, slots=True)
class Plan:
    package: str
    spec_file: str  # the spec's file name, as the header names it
    specc_version: str
    mesh: Mesh
    inputs: tuple[InputTensor, ...]
    steps: tuple[Step, ...]
    output: Layout
    sbp_constants: tuple[SbpConstant, ...]
    layer_classes: tuple[LayerClass, ...]
    parameter_count: int
    launch: Launch

    @property
    def layers(self) -> tuple[LayerStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, LayerStep))

    @property
    def model_imports(self) -> tuple[str, ...]:
        """Names model.py imports from parallel.py."""
        names = {"PLACEMENT", "check_world_size"} | {i.sbp_constant for i in self.inputs}
        names |= {s.sbp_constant for s in self.steps if isinstance(s, Relayout)}
        return tuple(sorted(names))

    @property
    def model_classes(self) -> tuple[str, ...]:
        """Layer classes model.py builds (base classes stay in layers.py)."""
        return tuple(sorted({s.module for s in self.layers if not s.module.startswith("nn.")}))

    @property
    def inputs_tuple(self) -> str:
        """The inputs as a tuple expression, e.g. "(x,)"."""
        names = [i.name for i in self.inputs]
        return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"

    @property
    def layers_imports(self) -> tuple[str, ...]:
        """Names layers.py imports from parallel.py."""
        return tuple(sorted({c for cls in self.layer_classes for c in cls.sbp_constants}))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mesh"]["world_size"] = self.mesh.world_size
        for step, source in zip(data["steps"], self.steps, strict=True):
            step["step"] = source.step
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
        lines += [f"  stage {s.index}: ranks {_ranks_text(s.ranks)}" for s in mesh.stages]
        lines.append("inputs:")
        lines += [f"  {i.name}: {_layout_text(i.layout)} {i.dtype}" for i in self.inputs]
        lines.append("steps:")
        for step in self.steps:
            if isinstance(step, LayerStep):
                lines.append(f"  {step.name} ({step.kind}, {step.module}) at {step.source}")
                lines += [f"    {p.name:<7}{_layout_text(p.layout)}" for p in step.params]
                lines.append(f"    {'output':<7}{_layout_text(step.output)}")
            else:
                lines.append(f"  {step.kind}: {step.reason}")
                lines.append(f"    {'output':<7}{_layout_text(step.after)}")
        lines.append(f"output: {_layout_text(self.output)}")
        lines.append(f"parameters: {self.parameter_count:,}")
        return "\n".join(lines) + "\n"


def _shape_text(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _layout_text(layout: Layout) -> str:
    return (
        f"{_shape_text(layout.shape)} sbp ({', '.join(layout.sbp)}) "
        f"local {_shape_text(layout.local_shape)}"
    )


def _ranks_text(ranks: RankGrid) -> str:
    return json.dumps(ranks).replace("],[", "], [")
