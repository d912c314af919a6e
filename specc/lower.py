"""Stage 3: lower a validated spec to a plan, checking the parallel layout on the way.

This is where the parallel reasoning lives: the mesh and its placements, the SBP of
every weight and activation (LiBai's conventions, ../shared/research/libai.md section 1),
shape inference through the layers, and the divisibility every split needs. Each
problem becomes a located diagnostic, and lowering goes on after one so that a user
sees all of them at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from specc import __version__, names
from specc.codeformat import LINE_LENGTH, call_lines
from specc.diagnostics import Diagnostics, Span
from specc.plan import (
    InputTensor,
    Launch,
    LayerClass,
    LayerStep,
    Layout,
    Loss,
    Mesh,
    ModuleClass,
    Param,
    Plan,
    RankGrid,
    Relayout,
    RepeatStep,
    ResidualBegin,
    ResidualEnd,
    SbpConstant,
    Shape,
    Stage,
    StageMove,
    Step,
)
from specc.source import Document, YamlPath
from specc.spec import (
    MLP,
    Activation,
    Attention,
    Dropout,
    Embedding,
    Layer,
    LayerNorm,
    Linear,
    LMHead,
    PatchEmbedding,
    PositionEmbedding,
    Repeat,
    Residual,
    RMSNorm,
    SelectToken,
    Spec,
    TokenTypeEmbedding,
    walk_layers,
)
from specc.stages import balance

B = "B"


def split(axis: int) -> str:
    return f"S({axis})"


# Layer classes the generated layers.py can define, in the order it defines them:
# (template, SBP constants it uses, classes it builds on).
_LAYER_CLASSES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "LinearBase": ("layers/linear_base.py.jinja", (), ()),
    "ColumnParallelLinear": (
        "layers/column_parallel_linear.py.jinja",
        ("COLUMN_SPLIT",),
        ("LinearBase",),
    ),
    "RowParallelLinear": (
        "layers/row_parallel_linear.py.jinja",
        ("ACTIVATION", "REPLICATED", "ROW_SPLIT"),
        ("LinearBase",),
    ),
    "ReplicatedLinear": ("layers/replicated_linear.py.jinja", ("REPLICATED",), ("LinearBase",)),
    "LayerNorm": ("layers/layer_norm.py.jinja", ("REPLICATED",), ()),
    "RMSNorm": ("layers/rms_norm.py.jinja", ("REPLICATED",), ()),
    "VocabParallelEmbedding": (
        "layers/vocab_parallel_embedding.py.jinja",
        ("ACTIVATION", "COLUMN_SPLIT"),
        (),
    ),
    "PositionEmbedding": ("layers/position_embedding.py.jinja", ("REPLICATED",), ()),
    "TokenTypeEmbedding": ("layers/token_type_embedding.py.jinja", ("REPLICATED",), ()),
    "PatchEmbedding": ("layers/patch_embedding.py.jinja", ("REPLICATED",), ()),
    "SelfAttention": (
        "layers/self_attention.py.jinja",
        ("REPLICATED",),
        ("ColumnParallelLinear", "RowParallelLinear"),
    ),
    "MLP": ("layers/mlp.py.jinja", (), ("ColumnParallelLinear", "RowParallelLinear")),
    "SelectToken": ("layers/select_token.py.jinja", (), ()),
    "LMHead": ("layers/lm_head.py.jinja", ("COLUMN_SPLIT",), ()),
    "cross_entropy": ("layers/cross_entropy.py.jinja", (), ()),
}
_USE_MATH = {"LinearBase", "PatchEmbedding", "SelfAttention"}
_NO_PLACEMENT = {"SelectToken"}  # layer classes that hold no tensors
_ACTIVATIONS = {
    "gelu": "GELU",
    "relu": "ReLU",
    "silu": "SiLU",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
}
_CONSTANT_COMMENTS = {
    "ACTIVATION": "activations: batch over data ranks",
    "FEATURE_SPLIT": "activations split on their last dimension",
    "COLUMN_SPLIT": "col weights, vocabulary: rows over tensor ranks",
    "ROW_SPLIT": "row weight: columns over tensor ranks",
    "REPLICATED": "whole on every rank",
}


def lower(spec: Spec, document: Document, diagnostics: Diagnostics) -> Plan | None:
    """Lower `spec` to a plan; report every problem and return None if lowering found one.

    With a pipeline, a first pass (whose diagnostics are dropped: the second repeats
    them) weighs each top-level unit, so the stages can be balanced before placements
    are written into the plan.
    """
    errors_before = diagnostics.error_count
    weights = None
    if spec.parallel.pipeline > 1:
        scout = _Lowering(spec, document, Diagnostics(), None)
        scout.run()
        weights = scout.unit_weights
    stages = assign_stages(spec, document, diagnostics, weights)
    plan = _Lowering(spec, document, diagnostics, stages).run()
    return plan if diagnostics.error_count == errors_before else None


def assign_stages(
    spec: Spec, document: Document, diagnostics: Diagnostics, weights: list[list[int]] | None
) -> list[tuple[int, ...]]:
    """The pipeline stage of every top-level layer (one per repetition for a repeat).

    Explicit `stage`/`stages` are checked (in range, never going back, every stage
    used); without them the units are balanced by weight. Never drops or repeats a
    layer: every unit gets exactly one stage.
    """
    pipeline = spec.parallel.pipeline
    counts = [layer.times if isinstance(layer, Repeat) else 1 for layer in spec.layers]
    for ref in walk_layers(spec):
        if len(ref.path) > 2 and ref.layer.stage is not None:  # inside a residual or repeat
            diagnostics.error(
                "E313",
                f"layer `{ref.name}` sets `stage` inside a residual or repeat body",
                document.span((*ref.path, "stage")),
                help="set `stage` on the top-level layer, or `stages` on the repeat",
            )
    units = sum(counts)
    if units < pipeline:
        diagnostics.error(
            "E315",
            f"pipeline {pipeline} needs at least {pipeline} layers or repetitions, the model "
            f"has {units}",
            document.span(("parallel", "pipeline")),
            help=f"use pipeline {units} or less, or more layers",
        )
        return [(0,) * c for c in counts]
    heads = _tied_heads(spec)
    explicit = any(
        layer.stage is not None or (isinstance(layer, Repeat) and layer.stages is not None)
        for index, layer in enumerate(spec.layers)
        if index not in heads
    )
    if explicit:
        result = _explicit_stages(spec, document, diagnostics, counts, heads)
    elif weights is None:
        return [(0,) * c for c in counts]
    else:
        # A tied head joins its table's unit: it computes where the table lives.
        weights = [list(w) for w in weights]
        for head, table in heads.items():
            weights[table][0] += weights[head][0]
        kept = [i for i in range(len(counts)) if i not in heads]
        flat = balance([w for i in kept for w in weights[i]], pipeline)
        result, start = [(0,)] * len(counts), 0
        for index in kept:
            result[index] = tuple(flat[start : start + counts[index]])
            start += counts[index]
    for head, table in heads.items():
        layer = spec.layers[head]
        if layer.stage is not None and layer.stage != result[table][0]:
            diagnostics.error(
                "E314",
                f"lm_head `{layer.name or head}` is tied to a table on stage "
                f"{result[table][0]}, and runs there, not on stage {layer.stage}",
                document.span(("layers", head, "stage")),
                help="remove its `stage`: a tied head always runs on its table's stage",
            )
        result[head] = result[table]
    return result


def _tied_heads(spec: Spec) -> dict[int, int]:
    """Top-level tied heads and the top-level embedding whose table each uses.

    OneFlow 0.9 cannot send a variable to another stage inside a CPU graph, and a
    copied one gets wrong gradients there; so the head runs on its table's stage, the
    activations travel back to it instead.
    """
    embeddings = {
        layer.name: index for index, layer in enumerate(spec.layers) if isinstance(layer, Embedding)
    }
    return {
        index: embeddings[layer.tied_to]
        for index, layer in enumerate(spec.layers)
        if isinstance(layer, LMHead) and layer.tied_to in embeddings
    }


def _explicit_stages(
    spec: Spec,
    document: Document,
    diagnostics: Diagnostics,
    counts: list[int],
    heads: dict[int, int],
) -> list[tuple[int, ...]]:
    pipeline = spec.parallel.pipeline
    result: list[tuple[int, ...]] = []
    current = 0
    for index, (layer, count) in enumerate(zip(spec.layers, counts, strict=True)):
        path: YamlPath = ("layers", index)
        if index in heads:
            result.append((0,))  # set to its table's stage by the caller
            continue
        where = path
        if isinstance(layer, Repeat) and layer.stages is not None:
            where = (*path, "stages")
            given = list(layer.stages)
            if len(given) != count:
                diagnostics.error(
                    "E314",
                    f"`stages` lists {len(given)} stages for {count} repetitions",
                    document.span(where),
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
                diagnostics.error(
                    "E314",
                    f"stage {stage} is out of range for pipeline {pipeline}",
                    document.span(where),
                    help=f"stages are 0 to {pipeline - 1}",
                )
            elif stage < current:
                diagnostics.error(
                    "E314",
                    f"stage {stage} comes after stage {current}; stages must not go backwards",
                    document.span(where),
                    help=f"use stage {current} or later here, or move the layer",
                )
            current = max(current, min(stage, pipeline - 1))
        result.append(tuple(max(0, min(s, pipeline - 1)) for s in given))
    used = {s for unit in result for s in unit}
    for stage in range(pipeline):
        if stage not in used:
            diagnostics.error(
                "E315",
                f"pipeline stage {stage} has no layer",
                document.span(("parallel", "pipeline")),
                help="give it layers with `stage`, or use fewer stages",
            )
    return result


@dataclass(frozen=True)
class _Activation:
    """The running tensor while walking the layers: shape, dtype and its two mesh-axis SBPs."""

    shape: Shape
    data_sbp: str  # "S(0)" or "B"
    tensor_sbp: str  # "B" or "S(k)"
    dtype: str = "float32"
    vocab: int | None = None  # for logits: the real (unpadded) vocabulary
    stage: int = 0


@dataclass
class _Scope:
    """A module class being filled: the top-level Model or one repeat body."""

    placement: str
    reads: str  # the variable the next step reads
    stage: int | None = 0  # None in a repeat body: each repetition has its own
    steps: list[Step] = field(default_factory=list)
    inputs_used: list[str] = field(default_factory=list)  # extra inputs forward takes
    residual_depth: int = 0
    top: bool = True

    def use_input(self, name: str) -> None:
        if name not in self.inputs_used:
            self.inputs_used.append(name)


class _Lowering:
    def __init__(
        self,
        spec: Spec,
        document: Document,
        diagnostics: Diagnostics,
        stages: list[tuple[int, ...]] | None,
    ) -> None:
        self.spec = spec
        self.document = document
        self.diagnostics = diagnostics
        self.spec_file = names.file_label(document.file)
        parallel = spec.parallel
        self.data, self.tensor, self.pipeline = parallel.data, parallel.tensor, parallel.pipeline
        self.axes = tuple(
            axis for axis, size in (("data", self.data), ("tensor", self.tensor)) if size > 1
        )
        self.constants: dict[str, SbpConstant] = {}
        self.layer_classes: set[str] = set()
        self.module_classes: list[ModuleClass] = []
        self.names = {ref.path: ref.name for ref in walk_layers(spec)}
        self.inputs_by_name = {item.name: (i, item) for i, item in enumerate(spec.inputs)}
        self.input_high: dict[str, int] = {}
        self.inputs_seen: set[str] = set()
        self.embeddings: dict[str, tuple[int, int, int]] = {}  # name -> vocab, padded, hidden
        self.data_sbp = split(0) if spec.inputs[0].split == "data" else B
        self.stages = stages or [
            (0,) * (layer.times if isinstance(layer, Repeat) else 1) for layer in spec.layers
        ]
        self.param_total = 0  # parameters lowered so far, to weigh pipeline units
        self.unit_weights: list[list[int]] = []  # per top-level layer, per repetition
        self.head_weight: dict[YamlPath, int] = {}
        self.stage_parameters = [0] * self.pipeline
        self.stage_units: list[list[str]] = [[] for _ in range(self.pipeline)]

    # -- helpers ---------------------------------------------------------------------

    def span(self, path: YamlPath, *, key: bool = False) -> Span:
        return self.document.span(path, key=key)

    def where(self, path: YamlPath) -> str:
        return f"{self.spec_file}:{self.span(path).line}"

    def error(self, code: str, message: str, path: YamlPath, help: str | None = None) -> None:
        self.diagnostics.error(code, message, self.span(path), help=help)

    def nd(self, data_sbp: str, tensor_sbp: str) -> tuple[str, ...]:
        """LiBai's get_nd_sbp: keep the entries of mesh axes larger than 1."""
        kept = tuple(
            sbp for axis, sbp in (("data", data_sbp), ("tensor", tensor_sbp)) if axis in self.axes
        )
        return kept or (B,)

    def local(self, shape: Shape, sbp: tuple[str, ...]) -> Shape:
        sizes = {"data": self.data, "tensor": self.tensor}
        local = list(shape)
        for axis, entry in zip(self.axes, sbp, strict=False):
            if entry.startswith("S("):
                dim = int(entry[2:-1])
                local[dim] //= sizes[axis]
        return tuple(local)

    def layout(self, shape: Shape, data_sbp: str, tensor_sbp: str) -> Layout:
        sbp = self.nd(data_sbp, tensor_sbp)
        return Layout(shape, sbp, self.local(shape, sbp))

    def of(self, current: _Activation) -> Layout:
        sbp = self.nd(current.data_sbp, current.tensor_sbp)
        return Layout(current.shape, sbp, self.local(current.shape, sbp), current.stage)

    def placement(self, stage: int) -> str:
        return f"STAGES[{stage}]" if self.pipeline > 1 else "PLACEMENT"

    def constant(self, name: str, data_sbp: str, tensor_sbp: str) -> str:
        sbp = self.nd(data_sbp, tensor_sbp)
        # "S(0)" and "B" are also how the generated parallel.py spells them.
        python = "(" + ", ".join(sbp) + ("," if len(sbp) == 1 else "") + ")"
        self.constants.setdefault(name, SbpConstant(name, sbp, python, _CONSTANT_COMMENTS[name]))
        return name

    def param(self, name: str, shape: Shape, tensor_sbp: str) -> Param:
        return Param(name, self.layout(shape, B, tensor_sbp))

    def check_divisible(
        self,
        size: int,
        group: int,
        group_name: str,
        key: str,
        owner: str,
        path: YamlPath,
        help: str | None = None,
        code: str = "E301",
    ) -> bool:
        """Report `key size of owner` (at `path`) unless `group` divides it."""
        if size % group == 0:
            return True
        self.error(
            code,
            f"{key} {size} of {owner} is not divisible by {group_name} {group}",
            path,
            help=help or _divisibility_help(size, group, group_name),
        )
        return False

    def expect_features(self, current: _Activation, path: YamlPath, what: str) -> bool:
        """A layer on float [..., features]: report an integer input."""
        if current.dtype == "float32":
            return True
        self.error(
            "E306",
            f"{what} takes float activations, but its input is {current.dtype} "
            f"{list(current.shape)}",
            path,
            help="token ids need an `embedding` first; images a `patch_embedding`",
        )
        return False

    def expect_sequence(self, current: _Activation, path: YamlPath, what: str) -> bool:
        if not self.expect_features(current, path, what):
            return False
        if len(current.shape) == 3:
            return True
        self.error(
            "E306",
            f"{what} takes [batch, seq, hidden], but its input is {list(current.shape)}",
            path,
            help="put it after an embedding and before `select_token`",
        )
        return False

    # -- the walk ----------------------------------------------------------------------

    def run(self) -> Plan:
        mesh = self.mesh()
        first = self.spec.inputs[0]
        self.inputs_seen.add(first.name)
        self.constant("ACTIVATION", self.data_sbp, B)
        current = _Activation(tuple(first.shape), self.data_sbp, B, first.dtype)
        scope = _Scope("PLACEMENT", first.name)
        current = self.top_level(current, scope)
        parameters = tuple(item.name for item in self.spec.inputs)
        model = ModuleClass(
            "Model",
            f"The layers of {self.spec_file}, in order.",
            True,
            parameters,
            _signature(parameters),
            tuple(scope.steps),
            scope.reads,
            (),
        )
        self.module_classes.append(model)
        self.check_inputs_used()
        inputs = tuple(self.input_tensor(i) for i in range(len(self.spec.inputs)))
        loss = self.loss(current)
        output = self.of(current)
        classes = self.layer_class_list()
        used = {c for cls in classes for c in cls.sbp_constants}
        used |= {i.sbp_constant for i in inputs}
        used |= {
            s.sbp_constant for c in self.module_classes for s in c.steps if isinstance(s, Relayout)
        }
        constants = tuple(self.constants[name] for name in sorted(used))
        return Plan(
            package=self.spec.name,
            spec_file=self.spec_file,
            specc_version=__version__,
            mesh=mesh,
            inputs=inputs,
            classes=tuple(self.module_classes),
            output=output,
            loss=loss,
            sbp_constants=constants,
            layer_classes=classes,
            parameter_count=self.parameter_count(),
            launch=self.launch(),
            sizes=dict(self.spec.sizes),
            accumulation=self.training(),
            stage_parameters=tuple(self.stage_parameters),
            stage_units=tuple(tuple(_ranges(units)) for units in self.stage_units),
        )

    def layer_class_list(self) -> tuple[LayerClass, ...]:
        needed = set(self.layer_classes)
        for name in list(needed):
            needed |= set(_LAYER_CLASSES[name][2])
        for name in list(needed):
            needed |= set(_LAYER_CLASSES[name][2])
        for name in needed:
            for constant in _LAYER_CLASSES[name][1]:
                tensor_sbp = {"COLUMN_SPLIT": split(0), "ROW_SPLIT": split(1)}.get(constant, B)
                data_sbp = self.data_sbp if constant == "ACTIVATION" else B
                self.constant(constant, data_sbp, tensor_sbp)
        return tuple(
            LayerClass(name, template, constants, name in _USE_MATH)
            for name, (template, constants, _) in _LAYER_CLASSES.items()
            if name in needed
        )

    def parameter_count(self) -> int:
        counts: dict[str, int] = {}
        for cls in self.module_classes:
            total = 0
            for step in cls.steps:
                if isinstance(step, LayerStep):
                    total += sum(math.prod(p.layout.shape) for p in step.params)
                elif isinstance(step, RepeatStep):
                    total += step.times * counts[step.module]
            counts[cls.name] = total
        return counts["Model"]

    def mesh(self) -> Mesh:
        parallel = self.spec.parallel
        world = self.data * self.tensor * self.pipeline
        if parallel.world_size is not None and parallel.world_size != world:
            self.error(
                "E300",
                f"world_size {parallel.world_size} does not equal data {self.data} x tensor "
                f"{self.tensor} x pipeline {self.pipeline} = {world}",
                ("parallel", "world_size"),
                help=f"set world_size: {world}, or change the parallel sizes so their product "
                f"is {parallel.world_size}",
            )
        stages = tuple(Stage(s, self.stage_ranks(s)) for s in range(self.pipeline))
        return Mesh(self.data, self.tensor, self.pipeline, self.spec.device, self.axes, stages)

    def stage_ranks(self, stage: int) -> RankGrid:
        """LiBai's stage-major layout: rank = stage * data * tensor + d * tensor + t."""
        first = stage * self.data * self.tensor
        if len(self.axes) == 2:
            return tuple(
                tuple(first + d * self.tensor + t for t in range(self.tensor))
                for d in range(self.data)
            )
        return tuple(range(first, first + self.data * self.tensor))

    def launch(self) -> Launch:
        """The launch command, and the machine counts a multi-node launch may use.

        Tensor-parallel ranks talk at every layer, so a tensor group must not straddle
        machines: the processes per machine must be a multiple of the tensor size.
        """
        world = self.data * self.tensor * self.pipeline
        single = (
            f"python -m oneflow.distributed.launch --nproc_per_node {world} -m {self.spec.name}"
        )
        fits = len(f'LAUNCH_COMMAND = "{single}"') <= LINE_LENGTH
        nodes = tuple(
            n for n in range(2, world + 1) if world % n == 0 and (world // n) % self.tensor == 0
        )
        return Launch(single, fits, nodes)

    # -- inputs and the loss ---------------------------------------------------------------

    def input_tensor(self, index: int) -> InputTensor:
        item = self.spec.inputs[index]
        path: YamlPath = ("inputs", index)
        shape = tuple(item.shape)
        item_sbp = split(0) if item.split == "data" else B
        if item.split == "data":
            self.check_divisible(
                shape[0],
                self.data,
                "data",
                "batch",
                f"input `{item.name}`",
                (*path, "shape", 0),
                code="E302",
            )
        elif self.data > 1 and index == 0:
            self.diagnostics.warning(
                "W501",
                f"input `{item.name}` is not split but data is {self.data}: every "
                f"data-parallel rank computes the same batch",
                self.span((*path, "split")),
                help="write `split: data` to give each data-parallel rank its own slice",
            )
        if item_sbp != self.data_sbp:
            first = self.spec.inputs[0]
            self.error(
                "E305",
                f"input `{item.name}` has split `{item.split}` but `{first.name}` has "
                f"`{first.split}`; inputs with different splits are not supported",
                (*path, "split"),
                help=f"write `split: {first.split}`",
            )
        high = self.input_high.get(item.name, 2) if item.dtype == "int64" else None
        return self.sample(item.name, item.dtype, shape, high, self.where(path))

    def sample(
        self, name: str, dtype: str, shape: Shape, high: int | None, source: str
    ) -> InputTensor:
        constant = "ACTIVATION"
        if high is None:
            function, arguments = "flow.randn", [*map(str, shape)]
        else:
            size = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
            function, arguments = "flow.randint", ["0", str(high), size]
        arguments += ["placement=PLACEMENT", f"sbp={constant}"]
        lines = call_lines(4, f"{name} = {function}", arguments)
        layout = self.layout(shape, self.data_sbp, B)
        return InputTensor(name, dtype, layout, constant, source, high, lines)

    def check_inputs_used(self) -> None:
        for index, item in enumerate(self.spec.inputs):
            if item.name not in self.inputs_seen:
                self.diagnostics.warning(
                    "W502",
                    f"input `{item.name}` is never used by a layer",
                    self.span(("inputs", index, "name")),
                    help="remove it, or name it in a layer's `input` or `mask`",
                )

    def loss(self, current: _Activation) -> Loss | None:
        if self.spec.loss is None:
            return None
        if current.dtype != "float32" or len(current.shape) < 2:
            self.error(
                "E306",
                f"cross_entropy takes logits [..., classes], but the model's output is "
                f"{current.dtype} {list(current.shape)}",
                ("loss", "kind"),
            )
            return None
        self.layer_classes.add("cross_entropy")
        classes = current.vocab or current.shape[-1]
        labels = self.sample("labels", "int64", current.shape[:-1], classes, self.where(("loss",)))
        return Loss(self.spec.loss.kind, labels)

    def extra_input(
        self, name: str, path: YamlPath, current: _Activation, scope: _Scope, high: int, what: str
    ) -> bool:
        """A layer reads another model input (token types, a mask): int64 [batch, seq]."""
        if name not in self.inputs_by_name:
            known = ", ".join(self.inputs_by_name)
            self.error(
                "E308",
                f"{what} reads input `{name}`, which the spec does not declare",
                path,
                help=f"inputs: {known}",
            )
            return False
        index, item = self.inputs_by_name[name]
        self.inputs_seen.add(name)
        self.input_high[name] = max(self.input_high.get(name, 0), high)
        if scope.top and current.stage > 0:
            self.error(
                "E313",
                f"{what} reads input `{name}` on pipeline stage {current.stage}; inputs "
                "arrive on stage 0",
                path,
                help="move the layer to stage 0, or into a repeat (which carries inputs along)",
            )
        expected = list(current.shape[:2])
        if item.dtype != "int64" or list(item.shape) != expected:
            self.error(
                "E306",
                f"{what} needs input `{name}` to be int64 {expected}, but it is {item.dtype} "
                f"{list(item.shape)}",
                ("inputs", index, "shape"),
                help=f"declare `{name}` with shape {expected} and dtype int64",
            )
            return False
        if not scope.top:
            scope.use_input(name)
        return True

    # -- layers ------------------------------------------------------------------------------

    def top_level(self, current: _Activation, scope: _Scope) -> _Activation:
        """The Model's layers, each placed on its pipeline stage."""
        for index, layer in enumerate(self.spec.layers):
            path: YamlPath = ("layers", index)
            stages = self.stages[index]
            before = self.param_total
            if not isinstance(layer, Repeat):
                stage = stages[0]
                if stage != current.stage:
                    current = replace(current, stage=stage)
                    scope.steps.append(StageMove(stage, scope.reads, self.of(current)))
                    scope.reads = "hidden"
                scope.placement, scope.stage = self.placement(stage), stage
            current = self.layer(path, layer, current, scope)
            weight = self.param_total - before
            name = self.names[path]
            if isinstance(layer, Repeat):
                self.unit_weights.append([weight] * layer.times)
                for repetition, stage in enumerate(stages):
                    self.stage_parameters[stage] += weight
                    self.stage_units[stage].append(f"{name}.{repetition}")
            else:
                self.unit_weights.append([weight + self.head_weight.pop(path, 0)])
                self.stage_parameters[stages[0]] += weight
                self.stage_units[stages[0]].append(name)
        return current

    def training(self) -> int:
        """Check the batching of a training step; return the micro-batches per step."""
        training = self.spec.training
        accumulation = training.accumulation if training else 1
        if training is not None:
            expected = training.micro_batch * self.data * accumulation
            product = (
                f"micro_batch {training.micro_batch} x data {self.data} x accumulation "
                f"{accumulation} = {expected}"
            )
            if training.global_batch is not None and training.global_batch != expected:
                self.error(
                    "E316",
                    f"global_batch {training.global_batch} is not {product}",
                    ("training", "global_batch"),
                    help=f"set global_batch: {expected}, or change the others",
                )
            batch = self.spec.inputs[0].shape[0]
            if batch != expected:
                self.error(
                    "E316",
                    f"the batch of input `{self.spec.inputs[0].name}` is {batch}, but a "
                    f"training step takes {product}",
                    ("inputs", 0, "shape", 0),
                    help=f"make the batch {expected}: the training graph cuts it into "
                    f"{accumulation} micro-batches",
                )
        if self.pipeline > 1 and accumulation < self.pipeline:
            where = ("training", "accumulation") if training else ("parallel", "pipeline")
            self.diagnostics.warning(
                "W503",
                f"{accumulation} micro-batch(es) per step cannot fill a {self.pipeline}-stage "
                f"pipeline; stages will wait for each other",
                self.span(where),
                help=f"set training.accumulation to {self.pipeline} or more",
            )
        return accumulation

    def sequence(
        self, layers: list[Layer], path: YamlPath, current: _Activation, scope: _Scope
    ) -> _Activation:
        for index, layer in enumerate(layers):
            current = self.layer((*path, index), layer, current, scope)
        return current

    def layer(
        self, path: YamlPath, layer: Layer, current: _Activation, scope: _Scope
    ) -> _Activation:
        if isinstance(layer, Residual):
            return self.residual(path, layer, current, scope)
        if isinstance(layer, Repeat):
            return self.repeat(path, layer, current, scope)
        handler = getattr(self, "layer_" + layer.kind, None) or self.layer_elementwise
        return handler(path, self.names[path], layer, current, scope)

    def add(
        self,
        scope: _Scope,
        path: YamlPath,
        name: str,
        kind: str,
        module: str,
        arguments: list[str],
        params: list[Param],
        before: _Activation,
        after: _Activation,
        comment: str,
        call: tuple[str, ...] = (),
        attributes: dict[str, Any] | None = None,
    ) -> _Activation:
        if not module.startswith("nn."):
            self.layer_classes.add(module)
        self.param_total += sum(math.prod(p.layout.shape) for p in params)
        if module not in _NO_PLACEMENT and not module.startswith("nn."):
            arguments = [*arguments, f"placement={scope.placement}"]
        step = LayerStep(
            name,
            kind,
            module,
            tuple(arguments),
            attributes or {},
            tuple(params),
            self.of(before),
            self.of(after),
            self.where(path),
            comment,
            scope.reads,
            call,
            call_lines(8, f"self.{name} = {module}", arguments),
            call_lines(8, f"hidden = self.{name}", [scope.reads, *call]),
            scope.stage,
        )
        scope.steps.append(step)
        scope.reads = "hidden"
        return after

    def layer_elementwise(
        self, path: YamlPath, name: str, layer: Layer, current: _Activation, scope: _Scope
    ) -> _Activation:
        self.expect_features(current, path, f"{layer.kind} `{name}`")
        if isinstance(layer, Activation):
            module, arguments, attributes = "nn." + _ACTIVATIONS[layer.kind], [], {}
        elif isinstance(layer, Dropout):
            module, arguments, attributes = "nn.Dropout", [f"p={layer.p!r}"], {"p": layer.p}
        else:  # pragma: no cover - every other kind has its own handler
            raise AssertionError(layer)
        comment = f"{_sbp_text(self.of(current).sbp)}, element-wise"
        return self.add(
            scope,
            path,
            name,
            layer.kind,
            module,
            arguments,
            [],
            current,
            current,
            comment,
            attributes=attributes,
        )

    def layer_linear(
        self, path: YamlPath, name: str, layer: Linear, current: _Activation, scope: _Scope
    ) -> _Activation:
        self.expect_features(current, path, f"linear `{name}`")
        last = current.shape[-1]
        if layer.in_features != last:
            self.error(
                "E303",
                f"in_features {layer.in_features} of linear `{name}` does not match its input, "
                f"whose last dimension is {last}",
                (*path, "in_features"),
                help=f"set in_features: {last}, or change the layer before it",
            )
        mode = layer.split if self.tensor > 1 else "data"
        mode = "data" if mode == "none" else mode
        feature_axis = len(current.shape) - 1
        if mode == "col":
            self.check_divisible(
                layer.out_features,
                self.tensor,
                "tensor",
                "out_features",
                f"`col` linear `{name}`",
                (*path, "out_features"),
            )
            current = self.ensure_whole(current, name, "a `col` linear", scope, path)
            module, weight, bias, out_sbp = (
                "ColumnParallelLinear",
                split(0),
                split(0),
                split(feature_axis),
            )
            algebra = "x whole, weight rows split -> output features split"
        elif mode == "row":
            self.check_divisible(
                layer.in_features,
                self.tensor,
                "tensor",
                "in_features",
                f"`row` linear `{name}`",
                (*path, "in_features"),
            )
            current = self.ensure_split(current, scope)
            module, weight, bias, out_sbp = "RowParallelLinear", split(1), B, B
            algebra = "x features split, weight columns split -> partial sums -> all-reduce"
        else:
            current = self.ensure_whole(current, name, "a replicated linear", scope, path)
            module, weight, bias, out_sbp = "ReplicatedLinear", B, B, B
            algebra = "weight replicated"
        params = [self.param("weight", (layer.out_features, layer.in_features), weight)]
        if layer.bias:
            params.append(self.param("bias", (layer.out_features,), bias))
        arguments = [str(layer.in_features), str(layer.out_features)]
        if not layer.bias:
            arguments.append("bias=False")
        after = replace(
            current, shape=(*current.shape[:-1], layer.out_features), tensor_sbp=out_sbp
        )
        comment = f"{_sbp_text(self.of(current).sbp)} -> {_sbp_text(self.of(after).sbp)}: {algebra}"
        return self.add(
            scope,
            path,
            name,
            "linear",
            module,
            arguments,
            params,
            current,
            after,
            comment,
            attributes={"split": mode, "bias": layer.bias},
        )

    def layer_layernorm(
        self, path: YamlPath, name: str, layer: LayerNorm, current: _Activation, scope: _Scope
    ) -> _Activation:
        self.expect_features(current, path, f"layernorm `{name}`")
        last = current.shape[-1]
        if layer.features is not None and layer.features != last:
            self.error(
                "E304",
                f"features {layer.features} of layernorm `{name}` does not match its input, "
                f"whose last dimension is {last}",
                (*path, "features"),
                help=f"set features: {last}, or leave it out to infer it",
            )
        current = self.ensure_whole(current, name, "layernorm", scope, path)
        params = [self.param(p, (last,), B) for p in ("weight", "bias")] if layer.affine else []
        arguments = [str(last), f"eps={layer.eps!r}"] + ([] if layer.affine else ["affine=False"])
        comment = f"{_sbp_text(self.of(current).sbp)}, needs whole features"
        return self.add(
            scope,
            path,
            name,
            "layernorm",
            "LayerNorm",
            arguments,
            params,
            current,
            current,
            comment,
            attributes={"eps": layer.eps, "affine": layer.affine},
        )

    def layer_rmsnorm(
        self, path: YamlPath, name: str, layer: RMSNorm, current: _Activation, scope: _Scope
    ) -> _Activation:
        self.expect_features(current, path, f"rmsnorm `{name}`")
        current = self.ensure_whole(current, name, "rmsnorm", scope, path)
        last = current.shape[-1]
        comment = f"{_sbp_text(self.of(current).sbp)}, needs whole features"
        return self.add(
            scope,
            path,
            name,
            "rmsnorm",
            "RMSNorm",
            [str(last), f"eps={layer.eps!r}"],
            [self.param("weight", (last,), B)],
            current,
            current,
            comment,
            attributes={"eps": layer.eps},
        )

    def layer_embedding(
        self, path: YamlPath, name: str, layer: Embedding, current: _Activation, scope: _Scope
    ) -> _Activation:
        if current.dtype != "int64" or len(current.shape) != 2:
            self.error(
                "E306",
                f"embedding `{name}` reads token ids, int64 [batch, seq], but its input is "
                f"{current.dtype} {list(current.shape)}",
                path,
                help="make it the first layer and declare the first input `dtype: int64`",
            )
        if not scope.top:
            self.error("E313", f"embedding `{name}` must be at the top level of `layers`", path)
        vocab = layer.vocab_size
        multiple = layer.pad_vocab_to_multiple_of or 1
        padded = -(-vocab // multiple) * multiple
        if padded % self.tensor and multiple > 1:
            self.check_divisible(
                padded,
                self.tensor,
                "tensor",
                "padded vocabulary",
                f"embedding `{name}`",
                (*path, "pad_vocab_to_multiple_of"),
                help=f"pad to a multiple of {math.lcm(multiple, self.tensor)} instead",
            )
        elif padded % self.tensor:
            suggestion = 128 * self.tensor
            rows = -(-vocab // suggestion) * suggestion
            self.check_divisible(
                vocab,
                self.tensor,
                "tensor",
                "vocab_size",
                f"embedding `{name}`",
                (*path, "vocab_size"),
                help=f"set `pad_vocab_to_multiple_of: {suggestion}` ({rows} rows; the padding "
                f"is masked), or use a tensor size that divides {vocab}: "
                f"{', '.join(map(str, _divisors(vocab)))}",
            )
        first = self.spec.inputs[0].name
        if current.dtype == "int64":
            self.input_high[first] = max(self.input_high.get(first, 0), vocab)
        self.embeddings[name] = (vocab, padded, layer.hidden)
        after = replace(
            current, shape=(*current.shape[:2], layer.hidden), tensor_sbp=B, dtype="float32"
        )
        params = [self.param("weight", (padded, layer.hidden), split(0))]
        arguments = [str(padded), str(layer.hidden)]
        comment = "ids x table rows split over tensor ranks -> partial sums -> all-reduce"
        return self.add(
            scope,
            path,
            name,
            "embedding",
            "VocabParallelEmbedding",
            arguments,
            params,
            current,
            after,
            comment,
            attributes={"vocab_size": vocab, "padded_vocab_size": padded},
        )

    def layer_position_embedding(
        self,
        path: YamlPath,
        name: str,
        layer: PositionEmbedding,
        current: _Activation,
        scope: _Scope,
    ) -> _Activation:
        if not self.expect_sequence(current, path, f"position_embedding `{name}`"):
            return current
        seq, hidden = current.shape[1], current.shape[2]
        if seq > layer.max_positions:
            self.error(
                "E310",
                f"the sequence has {seq} positions but position_embedding `{name}` has "
                f"max_positions {layer.max_positions}",
                (*path, "max_positions"),
                help=f"set max_positions to at least {seq}, or shorten the sequence",
            )
        current = self.ensure_whole(current, name, "position_embedding", scope, path)
        params = [self.param("weight", (layer.max_positions, hidden), B)]
        return self.add(
            scope,
            path,
            name,
            "position_embedding",
            "PositionEmbedding",
            [str(layer.max_positions), str(hidden)],
            params,
            current,
            current,
            "adds replicated rows 0..seq-1",
        )

    def layer_token_type_embedding(
        self,
        path: YamlPath,
        name: str,
        layer: TokenTypeEmbedding,
        current: _Activation,
        scope: _Scope,
    ) -> _Activation:
        if not self.expect_sequence(current, path, f"token_type_embedding `{name}`"):
            return current
        what = f"token_type_embedding `{name}`"
        self.extra_input(layer.input, (*path, "input"), current, scope, layer.types, what)
        current = self.ensure_whole(current, name, "token_type_embedding", scope, path)
        params = [self.param("weight", (layer.types, current.shape[2]), B)]
        return self.add(
            scope,
            path,
            name,
            "token_type_embedding",
            "TokenTypeEmbedding",
            [str(layer.types), str(current.shape[2])],
            params,
            current,
            current,
            "adds replicated rows chosen by the token types",
            call=(layer.input,),
        )

    def layer_patch_embedding(
        self,
        path: YamlPath,
        name: str,
        layer: PatchEmbedding,
        current: _Activation,
        scope: _Scope,
    ) -> _Activation:
        size, patch, channels = layer.image_size, layer.patch_size, layer.channels
        expected = [current.shape[0], channels, size, size]
        if current.dtype != "float32" or list(current.shape) != expected:
            self.error(
                "E311",
                f"patch_embedding `{name}` takes images {expected}, but its input is "
                f"{current.dtype} {list(current.shape)}",
                path,
                help="declare the first input as [batch, channels, image_size, image_size]",
            )
        if size % patch:
            divisors = ", ".join(str(d) for d in _divisors(size) if d > 1)
            self.error(
                "E311",
                f"image_size {size} of patch_embedding `{name}` is not divisible by "
                f"patch_size {patch}",
                (*path, "patch_size"),
                help=f"patch sizes that divide {size}: {divisors}",
            )
        tokens = (size // patch) ** 2 + (1 if layer.class_token else 0)
        after = replace(current, shape=(current.shape[0], tokens, layer.hidden), tensor_sbp=B)
        params = [
            self.param("weight", (layer.hidden, channels, patch, patch), B),
            self.param("bias", (layer.hidden,), B),
        ]
        if layer.class_token:
            params.append(self.param("class_token", (1, 1, layer.hidden), B))
        arguments = [str(channels), str(layer.hidden), str(patch)]
        if not layer.class_token:
            arguments.append("class_token=False")
        return self.add(
            scope,
            path,
            name,
            "patch_embedding",
            "PatchEmbedding",
            arguments,
            params,
            current,
            after,
            "replicated convolution over each rank's images",
            attributes={"patch_size": patch, "class_token": layer.class_token},
        )

    def layer_attention(
        self, path: YamlPath, name: str, layer: Attention, current: _Activation, scope: _Scope
    ) -> _Activation:
        if not self.expect_sequence(current, path, f"attention `{name}`"):
            return current
        hidden, heads = current.shape[2], layer.heads
        if hidden % heads:
            self.error(
                "E312",
                f"hidden size {hidden} is not divisible by heads {heads} in attention `{name}`",
                (*path, "heads"),
                help=f"head counts that divide {hidden}: {', '.join(map(str, _divisors(hidden)))}",
            )
        self.check_divisible(
            heads,
            self.tensor,
            "tensor",
            "heads",
            f"attention `{name}`",
            (*path, "heads"),
            help=f"each tensor rank must hold whole heads: tensor sizes that divide {heads}: "
            f"{', '.join(map(str, _divisors(heads)))}",
        )
        call: tuple[str, ...] = ()
        if layer.mask is not None:
            self.extra_input(layer.mask, (*path, "mask"), current, scope, 2, f"attention `{name}`")
            call = (layer.mask,)
        current = self.ensure_whole(current, name, "attention", scope, path)
        params = []
        for projection in ("query", "key", "value"):
            params += [
                self.param(f"{projection}.weight", (hidden, hidden), split(0)),
                self.param(f"{projection}.bias", (hidden,), split(0)),
            ]
        params += [
            self.param("dense.weight", (hidden, hidden), split(1)),
            self.param("dense.bias", (hidden,), B),
        ]
        arguments = [str(hidden), str(heads)] + (["causal=True"] if layer.causal else [])
        comment = "q, k, v split by heads over tensor ranks; output all-reduced"
        return self.add(
            scope,
            path,
            name,
            "attention",
            "SelfAttention",
            arguments,
            params,
            current,
            current,
            comment,
            call=call,
            attributes={"heads": heads, "causal": layer.causal, "mask": layer.mask},
        )

    def layer_mlp(
        self, path: YamlPath, name: str, layer: MLP, current: _Activation, scope: _Scope
    ) -> _Activation:
        self.expect_features(current, path, f"mlp `{name}`")
        self.check_divisible(
            layer.ffn, self.tensor, "tensor", "ffn", f"mlp `{name}`", (*path, "ffn")
        )
        current = self.ensure_whole(current, name, "mlp", scope, path)
        hidden = current.shape[-1]
        params = [
            self.param("dense_h_to_4h.weight", (layer.ffn, hidden), split(0)),
            self.param("dense_h_to_4h.bias", (layer.ffn,), split(0)),
            self.param("dense_4h_to_h.weight", (hidden, layer.ffn), split(1)),
            self.param("dense_4h_to_h.bias", (hidden,), B),
        ]
        activation = f"activation=nn.{_ACTIVATIONS[layer.activation]}()"
        comment = "col linear, activation on split features, row linear (all-reduce)"
        return self.add(
            scope,
            path,
            name,
            "mlp",
            "MLP",
            [str(hidden), str(layer.ffn), activation],
            params,
            current,
            current,
            comment,
            attributes={"activation": layer.activation},
        )

    def layer_select_token(
        self, path: YamlPath, name: str, layer: SelectToken, current: _Activation, scope: _Scope
    ) -> _Activation:
        if not self.expect_sequence(current, path, f"select_token `{name}`"):
            return current
        if layer.index >= current.shape[1]:
            self.error(
                "E310",
                f"select_token `{name}` keeps position {layer.index}, but the sequence has "
                f"{current.shape[1]} positions",
                (*path, "index"),
                help=f"use an index below {current.shape[1]}",
            )
        current = self.ensure_whole(current, name, "select_token", scope, path)
        after = replace(current, shape=(current.shape[0], current.shape[2]))
        return self.add(
            scope,
            path,
            name,
            "select_token",
            "SelectToken",
            [str(layer.index)],
            [],
            current,
            after,
            "keeps one position",
            attributes={"index": layer.index},
        )

    def layer_lm_head(
        self, path: YamlPath, name: str, layer: LMHead, current: _Activation, scope: _Scope
    ) -> _Activation:
        if not self.expect_sequence(current, path, f"lm_head `{name}`"):
            return current
        if layer.tied_to not in self.embeddings or not scope.top:
            known = ", ".join(self.embeddings) or "none"
            self.error(
                "E308",
                f"lm_head `{name}` is tied to `{layer.tied_to}`, which is not an `embedding` "
                f"layer before it at the top level",
                (*path, "tied_to"),
                help=f"embeddings before it: {known}",
            )
            return current
        vocab, padded, width = self.embeddings[layer.tied_to]
        if width != current.shape[2]:
            self.error(
                "E309",
                f"lm_head `{name}` is tied to `{layer.tied_to}`, whose table is "
                f"[{vocab}, {width}], but its input has hidden size {current.shape[2]}",
                path,
                help=f"tied weights need equal shapes: give `{layer.tied_to}` hidden "
                f"{current.shape[2]}, or project to {width} first",
            )
        current = self.ensure_whole(current, name, "lm_head", scope, path)
        after = replace(
            current, shape=(*current.shape[:2], padded), tensor_sbp=split(2), vocab=vocab
        )
        arguments = [str(vocab), str(padded)]
        self.head_weight[path] = vocab * width  # the head weighs its table when balancing
        comment = "x whole, tied table rows split -> logits split over the vocabulary"
        return self.add(
            scope,
            path,
            name,
            "lm_head",
            "LMHead",
            arguments,
            [],
            current,
            after,
            comment,
            call=(f"self.{layer.tied_to}.weight",),
            attributes={"tied_to": layer.tied_to, "vocab_size": vocab, "padded_vocab_size": padded},
        )

    # -- structure ---------------------------------------------------------------------------

    def residual(
        self, path: YamlPath, layer: Residual, current: _Activation, scope: _Scope
    ) -> _Activation:
        current = self.ensure_whole(current, self.names[path], "a residual", scope, path)
        variable = "residual" if scope.residual_depth == 0 else f"residual_{scope.residual_depth}"
        scope.steps.append(ResidualBegin(variable, scope.reads, self.where(path)))
        scope.residual_depth += 1
        result = self.sequence(layer.layers, (*path, "layers"), current, scope)
        scope.residual_depth -= 1
        if result.shape != current.shape or result.dtype != current.dtype:
            self.error(
                "E307",
                f"residual `{self.names[path]}` adds its input {list(current.shape)} to its "
                f"layers' output {list(result.shape)}; they must have the same shape",
                path,
                help="make the last layer of the residual return the input's size",
            )
            return result
        result = self.ensure_whole(result, self.names[path], "the residual addition", scope, path)
        scope.steps.append(ResidualEnd(variable, self.of(result)))
        scope.reads = "hidden"
        return result

    def repeat(
        self, path: YamlPath, layer: Repeat, current: _Activation, scope: _Scope
    ) -> _Activation:
        name = self.names[path]
        if not scope.top:
            self.error(
                "E313",
                f"repeat `{name}` is inside another repeat; nesting is not supported",
                path,
                help="flatten the inner repeat into its layers",
            )
            return current
        current = self.ensure_whole(current, name, "a repeat", scope, path)
        stages = self.stages[path[1]]
        body = _Scope("placement", "hidden", stage=None, top=False)
        result = self.sequence(layer.layers, (*path, "layers"), current, body)
        if result.shape != current.shape or result.dtype != current.dtype:
            self.error(
                "E307",
                f"repeat `{name}` must keep the shape {list(current.shape)}, but one "
                f"repetition returns {list(result.shape)}",
                path,
                help="a repeated block's output feeds its next repetition; keep the size",
            )
            return result
        result = self.ensure_whole(result, name, "the next repetition", body, path)
        class_name = names.class_name(name) + "Layer"
        arguments = tuple(body.inputs_used)
        parameters = ("hidden", *arguments)
        # Each repetition moves what it reads onto its own stage (eager pipelining).
        moves = parameters if self.pipeline > 1 else ()
        self.module_classes.append(
            ModuleClass(
                class_name,
                f"One repetition of `{name}` ({self.where(path)}).",
                False,
                parameters,
                _signature(parameters),
                tuple(body.steps),
                body.reads,
                moves,
            )
        )
        constant = f"{name.upper()}_STAGES" if self.pipeline > 1 else None
        if constant:
            stack = f"[{class_name}(placement=STAGES[stage]) for stage in {constant}]"
        else:
            stack = f"[{class_name}(placement={scope.placement}) for _ in range({layer.times})]"
        loop = [f"        hidden = {scope.reads}"] if scope.reads != "hidden" else []
        loop += [
            f"        for layer in self.{name}:",
            *call_lines(12, "hidden = layer", parameters),
        ]
        result = replace(result, stage=stages[-1])
        scope.steps.append(
            RepeatStep(
                name,
                layer.times,
                class_name,
                scope.reads,
                arguments,
                self.of(result),
                self.where(path),
                call_lines(8, f"self.{name} = nn.ModuleList", [stack]),
                tuple(loop),
                stages,
                constant,
                _run_lengths(stages),
            )
        )
        scope.reads = "hidden"
        return result

    def ensure_whole(
        self, current: _Activation, consumer: str, what: str, scope: _Scope, path: YamlPath
    ) -> _Activation:
        """Insert an explicit all-gather where a feature-split activation meets a layer
        that needs whole features."""
        if current.tensor_sbp == B or current.dtype != "float32":
            return current
        whole = replace(current, tensor_sbp=B)
        scope.steps.append(
            Relayout(
                "gather",
                self.of(current),
                self.of(whole),
                "ACTIVATION",
                f"{what} `{consumer}` needs whole features",
                scope.reads,
            )
        )
        scope.reads = "hidden"
        self.diagnostics.warning(
            "W500",
            f"an all-gather of {list(current.shape)} over tensor ranks is inserted before "
            f"{what} `{consumer}`, whose input is split on its last dimension",
            self.span(path),
            help="a `row` linear before it keeps activations whole without the gather",
        )
        return whole

    def ensure_split(self, current: _Activation, scope: _Scope) -> _Activation:
        """A row-parallel layer takes features split; slicing a whole tensor is local."""
        target = split(len(current.shape) - 1)
        if current.tensor_sbp == target:
            return current
        result = replace(current, tensor_sbp=target)
        constant = self.constant("FEATURE_SPLIT", current.data_sbp, target)
        scope.steps.append(
            Relayout(
                "split",
                self.of(current),
                self.of(result),
                constant,
                "a `row` linear takes features split over tensor ranks (local slice)",
                scope.reads,
            )
        )
        scope.reads = "hidden"
        return result


def _run_lengths(stages: tuple[int, ...]) -> str:
    """`[0] * 6 + [1] * 6`: a stage list whose size does not grow with the layer count."""
    runs: list[list[int]] = []
    for stage in stages:
        if runs and runs[-1][0] == stage:
            runs[-1][1] += 1
        else:
            runs.append([stage, 1])
    return " + ".join(f"[{stage}] * {count}" for stage, count in runs)


def _ranges(units: list[str]) -> list[str]:
    """["h.0", "h.1", "h.2"] -> ["h.0-2"], for the plan's stage summary."""
    shown: list[str] = []
    for unit in units:
        head, _, tail = unit.rpartition(".")
        if head and tail.isdigit() and shown and shown[-1].startswith(head + "."):
            first = shown[-1][len(head) + 1 :].split("-")[0]
            shown[-1] = f"{head}.{first}-{tail}"
        else:
            shown.append(unit)
    return shown


def _signature(parameters: tuple[str, ...]) -> tuple[str, ...]:
    typed = ["self", *(f"{p}: flow.Tensor" for p in parameters)]
    return call_lines(4, "def forward", typed, ") -> flow.Tensor:")


def _sbp_text(sbp: tuple[str, ...]) -> str:
    return "(" + ", ".join(sbp) + ")"


def _divisors(size: int, limit: int = 64) -> list[int]:
    return [d for d in range(1, min(size, limit) + 1) if size % d == 0]


def _divisibility_help(size: int, group: int, group_name: str) -> str:
    below = size - size % group
    above = below + group
    nearest = f"{below} or {above}" if below > 0 else str(above)
    return (
        f"make the size a multiple of {group} ({nearest}), or use a {group_name} size that "
        f"divides {size}: {', '.join(map(str, _divisors(size)))}"
    )
