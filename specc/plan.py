"""Stage 3's output: the plan, a frozen and complete description of the generated model.

The plan is the contract between lowering and rendering. It holds every number and
every name the generated code uses, and the code itself as data: calls, assignments
and imports (`Call`, `Assign`, `ImportFrom`), never lines of source. Rendering alone
decides how they are written out (`specc.layout`), so the plan holds no indentation
and no line breaks. It imports nothing from `specc.spec` or jinja2 and can be dumped
to JSON (`specc plan --json`) and to text (`specc plan`).

SBP tuples are written per mesh axis, `("S(0)", "B")` on a (data, tensor) mesh, and
already collapsed the way LiBai's `get_nd_sbp` does: an axis of size 1 is dropped, and
a mesh with no axis left is 1D with `("B",)`.

The model is a tree of module classes: `Model` and one class per `repeat` body. Each
holds a flat list of steps; a residual is a pair of steps around its body.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

Sbp = tuple[str, ...]
Shape = tuple[int, ...]
RankGrid = tuple[int, ...] | tuple[tuple[int, ...], ...]
Scalar = int | float | bool | str | None

# -- the generated code's expressions, as data ------------------------------------------
# A Python `str` among them is a string literal; names the code refers to are `Ref`s.


@dataclass(frozen=True, slots=True)
class Ref:
    """A name the generated code already has: a local, a constant, `self.wte.weight`."""

    name: str


@dataclass(frozen=True, slots=True)
class Subscript:
    """`value[index]`, e.g. `STAGES[1]` or `STAGES[stage]`."""

    value: Ref
    index: Expr


@dataclass(frozen=True, slots=True)
class Call:
    """`function(*args, **kwargs)`; `function` is a dotted name, e.g. `nn.GELU`."""

    function: str
    args: tuple[Expr, ...] = ()
    kwargs: tuple[tuple[str, Expr], ...] = ()

    def functions(self) -> list[str]:
        """What it calls: its own function, then those of the calls among its arguments."""
        nested = [*self.args, *(value for _, value in self.kwargs)]
        inner = [name for arg in nested if isinstance(arg, Call) for name in arg.functions()]
        return [self.function, *inner]


@dataclass(frozen=True, slots=True)
class ListOf:
    """`[a, b, c]`."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class TupleOf:
    """`(a, b, c)`."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Repeated:
    """`[item] * times`: a list whose text does not grow with its length."""

    item: Expr
    times: int


@dataclass(frozen=True, slots=True)
class Sum:
    """`a + b + c`."""

    terms: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class DictOf:
    """`{"key": value, ...}` with string keys."""

    items: tuple[tuple[str, Expr], ...]


@dataclass(frozen=True, slots=True)
class Comprehension:
    """`[element for variable in iterable]`."""

    element: Expr
    variable: str
    iterable: Expr


Expr: TypeAlias = (
    Scalar | Ref | Subscript | Call | ListOf | TupleOf | DictOf | Repeated | Sum | Comprehension
)


@dataclass(frozen=True, slots=True)
class Assign:
    """`target = value`; the target is a local, an attribute or a module constant."""

    target: str
    value: Expr


@dataclass(frozen=True, slots=True)
class ImportFrom:
    """`from module import names`; the order of names is the formatter's business."""

    module: str
    names: tuple[str, ...]


# -- layouts ------------------------------------------------------------------------------


def shape_text(shape: Shape) -> str:
    """`[8, 1024, 768]`: how plans, comments and messages write a shape."""
    return "[" + ", ".join(map(str, shape)) + "]"


def sbp_text(sbp: Sbp) -> str:
    """`(S(0), B)`: how plans, comments and messages write an SBP tuple."""
    return "(" + ", ".join(sbp) + ")"


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a tensor lives: its global shape, SBP, and the shape each rank holds."""

    shape: Shape
    sbp: Sbp
    local_shape: Shape

    def text(self, separator: str = " ") -> str:
        """`[8, 16] sbp (S(0), B) local [4, 16]`; comments separate the parts with ", "."""
        return separator.join(
            (
                shape_text(self.shape),
                f"sbp {sbp_text(self.sbp)}",
                f"local {shape_text(self.local_shape)}",
            )
        )


@dataclass(frozen=True, slots=True)
class Stage:
    """A pipeline stage: its index and the ranks that hold it."""

    index: int
    ranks: RankGrid


@dataclass(frozen=True, slots=True)
class Mesh:
    """The device mesh: data x tensor x pipeline ranks, its SBP axes and its stages."""

    data: int
    tensor: int
    pipeline: int
    device: Literal["auto", "cuda", "cpu"]
    axes: tuple[str, ...]  # mesh axes present in SBP tuples, e.g. ("data", "tensor")
    stages: tuple[Stage, ...]  # empty only when the mesh is too large to plan

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
class SbpConstant:
    """A named SBP signature, declared once in the generated `parallel.py`."""

    name: str
    sbp: Sbp
    comment: str

    @property
    def value(self) -> TupleOf:
        """`(S(0), B)`: "S(0)" and "B" are also how parallel.py spells them."""
        return TupleOf(tuple(Ref(entry) for entry in self.sbp))


@dataclass(frozen=True, slots=True)
class Param:
    """A parameter of one layer, by its name inside the layer's module."""

    name: str  # dotted path inside its layer, e.g. "query.weight"
    layout: Layout
    valid_rows: int | None = None  # a padded vocabulary's rows; those after it are padding
    decay: bool = True  # weight decay applies (not to norms and biases)


@dataclass(frozen=True, slots=True)
class Parameter:
    """A parameter of the built model, by its full name, on the stage that holds it."""

    name: str  # as `Model.named_parameters()` gives it, e.g. "h.3.attn.query.weight"
    layout: Layout
    stage: int
    valid_rows: int | None  # a padded vocabulary's rows; those after it are padding
    decay: bool  # weight decay applies (not to norms and biases)


@dataclass(frozen=True, slots=True)
class InputTensor:
    """A model input: its layout and SBP, and how `random_inputs()` samples it."""

    name: str
    dtype: str
    layout: Layout
    sbp_constant: str
    placement: str  # the constant of parallel.py where inputs are made
    source: str
    high: int | None  # exclusive upper bound of sampled integers, for int64 inputs

    @property
    def sample(self) -> Assign:
        """How random_inputs() makes it: the spec's shape, SBP and placement."""
        where = (("placement", Ref(self.placement)), ("sbp", Ref(self.sbp_constant)))
        if self.high is None:
            return Assign(self.name, Call("flow.randn", self.layout.shape, where))
        size = TupleOf(self.layout.shape)
        return Assign(self.name, Call("flow.randint", (0, self.high, size), where))


@dataclass(frozen=True, slots=True)
class TrainData:
    """What `python -m <package> train` reads, or why it cannot train this model.

    `tokens`: windows of a token file, the labels the next tokens (a causal language
    model); `images`: image arrays and their classes (a classifier).
    """

    kind: Literal["tokens", "images"] | None
    refusal: str  # why there is no train command, when kind is None
    input: InputTensor | None = None  # the input the data fills; the others get None
    labels: InputTensor | None = None
    classes: int = 0  # token ids or class labels are below this

    @property
    def sample_shape(self) -> Shape:
        """One sample of the input: (seq,), or (channels, height, width)."""
        assert self.input is not None
        return self.input.layout.shape[1:]

    @property
    def refusal_assignment(self) -> Assign:
        return Assign("CANNOT_TRAIN", self.refusal)

    @property
    def input_shape(self) -> TupleOf:
        assert self.input is not None
        return TupleOf(self.input.layout.shape)


@dataclass(frozen=True, slots=True)
class LayerStep:
    """One layer of a forward pass and the module that implements it."""

    step: ClassVar[str] = "layer"
    name: str  # the attribute holding the module
    kind: str
    module: Call  # its constructor, placement included
    attributes: Mapping[str, Scalar]  # the layer's settings, for the plan's readers (and twins)
    params: tuple[Param, ...]
    input: Layout
    output: Layout
    source: str  # "spec.yaml:12", for the comment beside the line that builds it
    sbp_comment: str  # the SBP algebra of the layer, e.g. "(S(0), B) -> (S(0), S(1))"
    reads: str  # the variable it is applied to
    writes: str  # the variable its output goes to
    call_arguments: tuple[Expr, ...]  # what forward passes besides `reads`
    stage: int | None  # its pipeline stage; None in a repeat body (see RepeatStep.stages)

    @property
    def class_name(self) -> str:
        return self.module.function

    def on_stage(self, stage: int, module: Call) -> LayerStep:
        """The step on `stage`, built by `module` (which holds the stage's placement).

        Spelled out rather than `dataclasses.replace`, at half its cost: lowering places
        every top-level layer this way, ten thousand in a long spec (issue 17).
        """
        return LayerStep(
            name=self.name,
            kind=self.kind,
            module=module,
            attributes=self.attributes,
            params=self.params,
            input=self.input,
            output=self.output,
            source=self.source,
            sbp_comment=self.sbp_comment,
            reads=self.reads,
            writes=self.writes,
            call_arguments=self.call_arguments,
            stage=stage,
        )

    @property
    def construct(self) -> Assign:
        return Assign(f"self.{self.name}", self.module)

    @property
    def forward(self) -> Assign:
        call = Call(f"self.{self.name}", (Ref(self.reads), *self.call_arguments))
        return Assign(self.writes, call)


@dataclass(frozen=True, slots=True)
class Relayout:
    """A change of SBP between layers: an all-gather or a local split, never implicit."""

    step: ClassVar[str] = "relayout"
    kind: Literal["gather", "split"]
    before: Layout
    after: Layout
    reason: str
    reads: str
    writes: str
    sbp_constant: str  # the SBP it converts to
    grad_sbp_constant: str  # the SBP its gradient takes (Megatron's f and g, said explicitly)

    @property
    def constants(self) -> tuple[str, str]:
        return (self.sbp_constant, self.grad_sbp_constant)

    @property
    def forward(self) -> Assign:
        call = Call(
            f"{self.reads}.to_global",
            kwargs=(("sbp", Ref(self.sbp_constant)), ("grad_sbp", Ref(self.grad_sbp_constant))),
        )
        return Assign(self.writes, call)


@dataclass(frozen=True, slots=True)
class StageMove:
    """The activation crosses to another pipeline stage (eager pipelining)."""

    step: ClassVar[str] = "stage_move"
    stage: int
    reads: str
    writes: str
    placement: Subscript
    output: Layout

    @property
    def forward(self) -> Assign:
        return Assign(
            self.writes, Call(f"{self.reads}.to_global", (), (("placement", self.placement),))
        )


@dataclass(frozen=True, slots=True)
class ResidualBegin:
    """A residual opens: the stream is kept in `variable` for the residual's end."""

    step: ClassVar[str] = "residual_begin"
    variable: str  # holds the residual's input
    reads: str
    source: str

    @property
    def forward(self) -> Assign:
        return Assign(self.variable, Ref(self.reads))


@dataclass(frozen=True, slots=True)
class ResidualEnd:
    """A residual closes: the kept input is added to the stream in `writes`."""

    step: ClassVar[str] = "residual_end"
    variable: str
    writes: str
    output: Layout

    @property
    def forward(self) -> Assign:
        return Assign(self.writes, Sum((Ref(self.variable), Ref(self.writes))))


@dataclass(frozen=True, slots=True)
class RepeatStep:
    """`times` instances of a generated module class, applied in turn."""

    step: ClassVar[str] = "repeat"
    kind: ClassVar[str] = "repeat"
    name: str
    times: int
    module: str  # the generated class of one repetition
    reads: str
    writes: str
    call_arguments: tuple[str, ...]  # the inputs each repetition reads besides the stream
    output: Layout
    source: str
    stages: tuple[int, ...]  # pipeline stage of each repetition
    stages_constant: str | None  # module constant holding them, when pipelined
    placement: Expr  # of each instance
    index_variable: str  # of the comprehension that builds the instances
    loop_variable: str  # of the loop that applies them

    @property
    def construct(self) -> Assign:
        element = Call(self.module, kwargs=(("placement", self.placement),))
        iterable: Expr = (
            Ref(self.stages_constant) if self.stages_constant else Call("range", (self.times,))
        )
        instances = Comprehension(element, self.index_variable, iterable)
        return Assign(f"self.{self.name}", Call("nn.ModuleList", (instances,)))

    @property
    def entry(self) -> Assign | None:
        """The stream's variable, when the loop does not start from it."""
        return None if self.reads == self.writes else Assign(self.writes, Ref(self.reads))

    @property
    def apply(self) -> Assign:
        arguments = (Ref(self.writes), *(Ref(name) for name in self.call_arguments))
        return Assign(self.writes, Call(self.loop_variable, arguments))

    @property
    def stage_runs(self) -> tuple[tuple[int, int], ...]:
        """(stage, repetitions) runs, e.g. ((0, 6), (1, 6))."""
        runs: list[list[int]] = []
        for stage in self.stages:
            if runs and runs[-1][0] == stage:
                runs[-1][1] += 1
            else:
                runs.append([stage, 1])
        return tuple((stage, count) for stage, count in runs)

    @property
    def stages_text(self) -> str:
        """`[0] * 6 + [1] * 6`, as the plan's text shows the stages."""
        return " + ".join(f"[{stage}] * {count}" for stage, count in self.stage_runs)

    @property
    def stages_assignment(self) -> Assign | None:
        """The module constant listing each repetition's stage, in run lengths."""
        if self.stages_constant is None:
            return None
        terms = tuple(Repeated(stage, count) for stage, count in self.stage_runs)
        return Assign(self.stages_constant, Sum(terms))


@dataclass(frozen=True, slots=True)
class Keep:
    """A layer's output kept aside, to be returned with the model's last one."""

    step: ClassVar[str] = "keep"
    variable: str
    reads: str

    @property
    def forward(self) -> Assign:
        return Assign(self.variable, Ref(self.reads))


Step = LayerStep | Relayout | StageMove | ResidualBegin | ResidualEnd | RepeatStep | Keep


@dataclass(frozen=True, slots=True)
class ModuleClass:
    """A generated nn.Module: `Model`, or one repetition of a `repeat`."""

    name: str
    summary: str  # the docstring's first line
    source: str | None  # where in the spec a repeat body comes from, e.g. "gpt2.yaml:35"
    is_model: bool  # the top-level Model (checks the world size) or a repeat body
    forward_parameters: tuple[str, ...]  # after self
    steps: tuple[Step, ...]
    returns: tuple[str, ...]  # the variables forward returns, a tuple when more than one
    entry_moves: tuple[str, ...]  # inputs a repeat body moves onto its own stage first
    optional: tuple[str, ...]  # forward parameters that may be None (optional inputs)

    @property
    def layers(self) -> tuple[LayerStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, LayerStep))

    @property
    def members(self) -> tuple[LayerStep | RepeatStep, ...]:
        """The steps that hold a module: built in __init__, in order."""
        return tuple(s for s in self.steps if isinstance(s, LayerStep | RepeatStep))

    @property
    def entry_assignments(self) -> tuple[tuple[Assign, bool], ...]:
        """A repeat body's inputs, moved onto the placement of its instance; whether each
        is optional (then moved only when given)."""
        return tuple(
            (
                Assign(
                    name, Call(f"{name}.to_global", (), (("placement", Ref("self.placement")),))
                ),
                name in self.optional,
            )
            for name in self.entry_moves
        )


@dataclass(frozen=True, slots=True)
class LayerClass:
    """A class or function the generated `layers.py` defines, by its template's name."""

    name: str
    template: str
    sbp_constants: tuple[str, ...]
    uses_math: bool  # whether its code needs `import math`


@dataclass(frozen=True, slots=True)
class Output:
    """Something the model returns: a layer's output, where it is computed."""

    name: str  # the layer
    layout: Layout
    stage: int


@dataclass(frozen=True, slots=True)
class Loss:
    """The training loss on the model's output, and the labels input it reads."""

    kind: str
    labels: InputTensor


@dataclass(frozen=True, slots=True)
class Launch:
    """How the generated package is launched: the command and the machine counts."""

    single: str  # the command for one machine
    node_counts: tuple[int, ...]  # machine counts > 1 that keep every tensor group on one

    @property
    def command_assignment(self) -> Assign:
        return Assign("LAUNCH_COMMAND", self.single)

    @property
    def node_counts_assignment(self) -> Assign:
        return Assign("NODE_COUNTS", ListOf(self.node_counts))


@dataclass(frozen=True, slots=True)
class TensorMapping:
    """How one parameter (`*` for each repetition) is read from a checkpoint's tensors."""

    parameter: str
    tensors: tuple[str, ...]
    transpose: bool
    parts: int | None
    interleave: int | None
    rows: tuple[int, ...] | None
    shape: tuple[int, ...] | None
    source: str  # where the spec states it

    @property
    def call(self) -> Call:
        kwargs: list[tuple[str, Expr]] = []
        if self.transpose:
            kwargs.append(("transpose", True))
        if self.parts:
            kwargs.append(("parts", self.parts))
        if self.interleave:
            kwargs.append(("interleave", self.interleave))
        if self.rows:
            kwargs.append(("rows", TupleOf(self.rows)))
        if self.shape:
            kwargs.append(("shape", TupleOf(self.shape)))
        return Call("Source", (self.parameter, TupleOf(self.tensors)), tuple(kwargs))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Pretrained weights: the layout read and written, and the config saved beside them."""

    format: str
    mappings: tuple[TensorMapping, ...]
    config: Mapping[str, Any]

    @property
    def sources_assignment(self) -> Assign:
        return Assign("SOURCES", ListOf(tuple(m.call for m in self.mappings)))

    @property
    def config_assignment(self) -> Assign:
        return Assign("CONFIG", _literal(self.config))


def _literal(value: Any) -> Expr:
    """A JSON-like value as an expression."""
    if isinstance(value, dict):
        return DictOf(tuple((str(k), _literal(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ListOf(tuple(_literal(v) for v in value))
    assert value is None or isinstance(value, int | float | bool | str), value
    return value


@dataclass(frozen=True, slots=True)
class Recipe:
    """How the generated TrainGraph trains: the spec's `training:`, checked and complete."""

    optimizer: Literal["adamw", "sgd"]
    lr: float
    betas: tuple[float, float]
    eps: float
    momentum: float
    weight_decay: float
    no_decay: tuple[str, ...]  # patterns of the parameters weight decay skips
    schedule: Literal["constant", "cosine", "linear"]
    warmup: int
    steps: int | None
    min_lr: float
    clip_grad_norm: float | None
    precision: Literal["fp32", "fp16", "bf16"]
    loss_scale: str | float | None
    recompute: bool
    zero: int
    seed: int
    sequence_parallel: bool

    @property
    def moments(self) -> TupleOf:
        """The suffixes OneFlow's graph gives the optimizer's state of a parameter."""
        if self.optimizer == "adamw":
            return TupleOf(("-m", "-v"))
        return TupleOf(("-momentum",) if self.momentum else ())

    @property
    def lines(self) -> tuple[str, ...]:
        """The recipe for `specc plan`."""
        if self.optimizer == "adamw":
            optimizer = f"AdamW lr {self.lr:g}, betas {self.betas[0]:g}, {self.betas[1]:g}, "
            optimizer += f"eps {self.eps:g}"
        else:
            optimizer = f"SGD lr {self.lr:g}, momentum {self.momentum:g}"
        if self.weight_decay:
            optimizer += f", weight decay {self.weight_decay:g} (not on norms and biases)"
        schedule = f"{self.schedule}"
        if self.warmup:
            schedule = f"{self.warmup} warmup steps, then {schedule}"
        if self.schedule != "constant":
            schedule += f" to {self.min_lr:g} at step {self.steps}"
        precision: str = self.precision
        if self.loss_scale is not None:
            precision += f", loss scale {self.loss_scale}"
        lines = [f"  optimizer: {optimizer}", f"  schedule: {schedule}"]
        if self.clip_grad_norm:
            lines.append(f"  gradients clipped to a global norm of {self.clip_grad_norm:g}")
        lines.append(f"  precision: {precision}; ZeRO stage {self.zero}; seed {self.seed}")
        if self.recompute:
            lines.append("  activations of each repetition recomputed in backward")
        if self.sequence_parallel:
            lines.append("  sequence parallel between tensor-parallel blocks")
        return tuple(lines)


@dataclass(frozen=True, slots=True)
class Plan:
    """The lowered spec: every name, number and call of the generated package."""

    package: str
    spec_file: str  # the spec's file name, as the header names it
    specc_version: str
    mesh: Mesh
    inputs: tuple[InputTensor, ...]
    classes: tuple[ModuleClass, ...]  # repeat bodies first, Model last
    outputs: tuple[Output, ...]  # what the model returns, in order; the loss takes the last
    loss: Loss | None
    sbp_constants: tuple[SbpConstant, ...]
    layer_classes: tuple[LayerClass, ...]
    parameters: tuple[Parameter, ...]  # every parameter of the built model, in order
    parameter_count: int
    checkpoint: Checkpoint | None
    recipe: Recipe
    train_data: TrainData
    launch: Launch
    sizes: Mapping[str, int]
    accumulation: int  # micro-batches per training step
    stage_parameters: tuple[int, ...]  # parameters held by each pipeline stage
    stage_units: tuple[tuple[str, ...], ...]  # the layers (and repetitions) of each stage

    @property
    def model(self) -> ModuleClass:
        return self.classes[-1]

    @property
    def output(self) -> Layout:
        """The layout of the last output: the logits a loss takes."""
        return self.outputs[-1].layout

    @property
    def output_stage(self) -> int:
        """The pipeline stage that computes the last output."""
        return self.outputs[-1].stage

    @property
    def several_outputs(self) -> bool:
        return len(self.outputs) > 1

    @property
    def valid_rows_assignment(self) -> Assign:
        """The rows of each padded parameter that hold data; the rest is padding."""
        rows = tuple((p.name, p.valid_rows) for p in self.parameters if p.valid_rows is not None)
        return Assign("VALID_ROWS", DictOf(rows))

    @property
    def stage_repeats(self) -> tuple[RepeatStep, ...]:
        return tuple(s for s in self.model.steps if isinstance(s, RepeatStep))

    @property
    def stages_assignments(self) -> tuple[tuple[str, Assign], ...]:
        """(repeat name, its stages constant) for every pipelined repeat."""
        return tuple(
            (step.name, assignment)
            for step in self.stage_repeats
            if (assignment := step.stages_assignment) is not None
        )

    @property
    def files(self) -> tuple[str, ...]:
        """The package's modules besides __init__, __main__, parallel and model."""
        training = self.loss is not None
        wanted = {
            "layers.py": bool(self.layer_classes),
            "training.py": training,
            "shards.py": training or self.checkpoint is not None,
            "checkpoint.py": training,
            "pretrained.py": self.checkpoint is not None,
            "data.py": self.train_data.kind is not None,
            "train.py": self.train_data.kind is not None,
        }
        return tuple(name for name, made in wanted.items() if made)

    @property
    def exports(self) -> tuple[ImportFrom, ...]:
        """What the package's __init__ offers, in isort's order."""
        found = []
        if self.loss is not None:
            found.append(
                ImportFrom(
                    ".checkpoint", ("latest_checkpoint", "load_checkpoint", "save_checkpoint")
                )
            )
        model = ("Model", "random_inputs", *(("random_labels",) if self.loss else ()))
        found.append(ImportFrom(".model", model))
        found.append(
            ImportFrom(".parallel", ("PLACEMENT", "WORLD_SIZE", "WorldSizeError", "launch_help"))
        )
        if self.checkpoint is not None:
            found.append(ImportFrom(".pretrained", ("load_pretrained", "save_pretrained")))
        if self.loss is not None or self.checkpoint is not None:
            found.append(ImportFrom(".shards", ("CheckpointError",)))
        if self.loss is not None:
            graphs = ("EvalGraph", "LossGraph", "TrainGraph", "mean_loss")
            found.append(ImportFrom(".training", graphs))
        return tuple(found)

    @property
    def export_names(self) -> tuple[str, ...]:
        """`__all__`, sorted as ruff's RUF022 wants it."""
        names = [name for item in self.exports for name in item.names]
        return tuple(
            sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
        )

    @property
    def main_imports(self) -> tuple[ImportFrom, ...]:
        """What __main__.py imports from the package, in isort's order."""
        kind = self.train_data.kind
        found = []
        if kind is not None:
            found.append(ImportFrom(".", ("train",)))
        if kind == "tokens":
            found.append(ImportFrom(".data", ("DataError", "prepare_text")))
        model = ("Model", "random_inputs", *(("random_labels",) if self.loss else ()))
        found.append(ImportFrom(".model", model))
        parallel: tuple[str, ...] = ("WorldSizeError", "check_world_size", "launch_help")
        if self.mesh.pipelined:
            parallel += ("DATA", "PIPELINE", "TENSOR")
        found.append(ImportFrom(".parallel", parallel))
        if self.loss:
            found.append(ImportFrom(".training", ("TrainGraph", "mean_loss")))
        return tuple(found)

    @property
    def data_imports(self) -> ImportFrom:
        """What data.py imports from parallel.py: where its input and labels go."""
        data = self.train_data
        assert data.input is not None and data.labels is not None
        used = {
            name
            for tensor in (data.input, data.labels)
            for name in (tensor.placement, tensor.sbp_constant)
        }
        return ImportFrom(".parallel", tuple(sorted(used)))

    @property
    def training_imports(self) -> ImportFrom:
        """What training.py imports from model.py."""
        constants = [s.stages_constant for s in self.stage_repeats if s.stages_constant]
        return ImportFrom(".model", ("Model", *constants))

    @property
    def training_parallel_imports(self) -> ImportFrom:
        """What training.py imports from parallel.py."""
        names = ["ACCUMULATION"]
        if self.recipe.zero:
            names += ["DATA", "DEVICE"]  # ZeRO is refused where OneFlow would abort
        if self.mesh.pipelined:
            names.append("STAGES")
        return ImportFrom(".parallel", tuple(names))

    @property
    def model_imports(self) -> tuple[ImportFrom, ...]:
        """What model.py imports from layers.py and parallel.py."""
        defined = {c.name for c in self.layer_classes}
        called = {name for c in self.classes for s in c.layers for name in s.module.functions()}
        layers = called & defined
        if self.loss is not None:
            layers.add("cross_entropy")
        parallel = {"PLACEMENT", "check_world_size"} | {i.sbp_constant for i in self.inputs}
        if self.mesh.pipelined:
            parallel.add("STAGES")
        if self.loss is not None:
            parallel.add(self.loss.labels.sbp_constant)
        for cls in self.classes:
            parallel |= {c for s in cls.steps if isinstance(s, Relayout) for c in s.constants}
        imports = (ImportFrom(".layers", tuple(sorted(layers))),) if layers else ()
        return (*imports, ImportFrom(".parallel", tuple(sorted(parallel))))

    @property
    def training_no_decay(self) -> Assign:
        return Assign("NO_DECAY", TupleOf(self.recipe.no_decay))

    @property
    def inputs_tuple(self) -> TupleOf:
        """What random_inputs() returns, e.g. `(x,)`."""
        return TupleOf(tuple(Ref(i.name) for i in self.inputs))

    @property
    def layers_use_math(self) -> bool:
        return any(c.uses_math for c in self.layer_classes)

    @property
    def layers_imports(self) -> ImportFrom | None:
        """What layers.py imports from parallel.py."""
        names = sorted({c for cls in self.layer_classes for c in cls.sbp_constants})
        return ImportFrom(".parallel", tuple(names)) if names else None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mesh"]["world_size"] = self.mesh.world_size
        data["output"] = dataclasses.asdict(self.output)  # the last output, the loss's input
        data["output_stage"] = self.output_stage
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
        lines += [f"  {i.name}: {i.layout.text()} {i.dtype}" for i in self.inputs]
        for cls in reversed(self.classes):
            lines.append(f"{cls.name}:")
            lines += _steps_text(cls.steps)
        if self.several_outputs:
            lines.append("outputs:")
            lines += [f"  {o.name}: {o.layout.text()}, stage {o.stage}" for o in self.outputs]
        else:
            lines.append(f"output: {self.output.text()}")
        if self.loss is not None:
            lines.append(f"loss: {self.loss.kind}, labels {self.loss.labels.layout.text()}")
            lines.append("training:")
            lines += self.recipe.lines
        lines.append(f"parameters: {self.parameter_count:,}")
        return "\n".join(lines) + "\n"


def _steps_text(steps: tuple[Step, ...]) -> list[str]:
    lines = []
    for step in steps:
        if isinstance(step, LayerStep):
            lines.append(
                f"  {step.name} ({step.kind}, {step.class_name}) at {step.source}"
                + ("" if step.stage is None else f", stage {step.stage}")
            )
            width = max([len(p.name) for p in step.params] + [6]) + 1
            lines += [f"    {p.name:<{width}}{p.layout.text()}" for p in step.params]
            lines.append(f"    {'output':<{width}}{step.output.text()}")
        elif isinstance(step, Relayout):
            lines.append(f"  {step.kind}: {step.reason}")
            lines.append(f"    output {step.after.text()}")
        elif isinstance(step, StageMove):
            lines.append(f"  move to stage {step.stage}: {step.output.text()}")
        elif isinstance(step, ResidualBegin):
            lines.append(f"  residual {step.variable} = input (at {step.source})")
        elif isinstance(step, ResidualEnd):
            lines.append(f"  add {step.variable}: output {step.output.text()}")
        elif isinstance(step, Keep):
            lines.append(f"  keep {step.variable} as an output")
        else:
            lines.append(
                f"  {step.name}: {step.times} x {step.module} at {step.source}, "
                f"stages {step.stages_text}"
            )
            lines.append(f"    output {step.output.text()}")
    return lines


def _ranks_text(ranks: RankGrid) -> str:
    return json.dumps(ranks).replace("],[", "], [")
