"""The lowering walk: mesh, inputs, the model's structure, and the finished plan."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from specc import __version__, names
from specc.codeformat import LINE_LENGTH, call_lines, comprehension_lines, sum_lines
from specc.diagnostics import Diagnostics, Span
from specc.lower.common import (
    B,
    Running,
    Scope,
    divisibility_help,
    ranges,
    run_lengths,
    signature,
    split,
)
from specc.lower.layers import LayerRules
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
)
from specc.source import Document, YamlPath
from specc.spec import Layer, Repeat, Residual, Spec, walk_layers

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
MAX_WORLD = 65536  # processes in one mesh; more is a typo, not a cluster
_USE_MATH = {"LinearBase", "PatchEmbedding", "SelfAttention"}
_NO_PLACEMENT = {"SelectToken"}  # layer classes that hold no tensors
_CONSTANT_COMMENTS = {
    "ACTIVATION": "activations: batch over data ranks",
    "FEATURE_SPLIT_2D": "[batch, features] activations split on features",
    "FEATURE_SPLIT_3D": "[batch, seq, features] activations split on features",
    "COLUMN_SPLIT": "col weights, vocabulary: rows over tensor ranks",
    "ROW_SPLIT": "row weight: columns over tensor ranks",
    "REPLICATED": "whole on every rank",
}


class Lowering(LayerRules):
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

    def of(self, current: Running) -> Layout:
        sbp = self.nd(current.data_sbp, current.tensor_sbp)
        return Layout(current.shape, sbp, self.local(current.shape, sbp), current.stage)

    def placement(self, stage: int) -> str:
        return f"STAGES[{stage}]" if self.pipeline > 1 else "PLACEMENT"

    def constant(self, name: str, data_sbp: str, tensor_sbp: str) -> str:
        sbp = self.nd(data_sbp, tensor_sbp)
        # "S(0)" and "B" are also how the generated parallel.py spells them.
        python = "(" + ", ".join(sbp) + ("," if len(sbp) == 1 else "") + ")"
        comment = _CONSTANT_COMMENTS.get(name, "activations split on their last dimension")
        self.constants.setdefault(name, SbpConstant(name, sbp, python, comment))
        assert self.constants[name].sbp == sbp, (name, sbp)  # one name, one layout
        return name

    def feature_split(self, current: Running) -> str:
        """The constant of `current`'s SBP, split on its last dimension: one per rank
        of activations, since [batch, features] and [batch, seq, features] split on
        different dimensions."""
        self.constant("ACTIVATION", current.data_sbp, B)
        return self.constant(
            f"FEATURE_SPLIT_{len(current.shape)}D", current.data_sbp, current.tensor_sbp
        )

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
            help=help or divisibility_help(size, group, group_name),
        )
        return False

    def expect_features(self, current: Running, path: YamlPath, what: str) -> bool:
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

    def expect_sequence(self, current: Running, path: YamlPath, what: str) -> bool:
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
        current = Running(tuple(first.shape), self.data_sbp, B, first.dtype)
        scope = Scope("PLACEMENT", first.name)
        current = self.top_level(current, scope)
        parameters = tuple(item.name for item in self.spec.inputs)
        model = ModuleClass(
            "Model",
            f"The layers of {self.spec_file}, in order.",
            True,
            parameters,
            signature(parameters),
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
            constant
            for c in self.module_classes
            for s in c.steps
            if isinstance(s, Relayout)
            for constant in s.constants
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
            stage_units=tuple(tuple(ranges(units)) for units in self.stage_units),
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
        if world > MAX_WORLD:
            self.error(
                "E204",
                f"data {self.data} x tensor {self.tensor} x pipeline {self.pipeline} = {world:,} "
                f"processes; specc plans meshes of at most {MAX_WORLD:,}",
                ("parallel",),
                help="use smaller parallel sizes",
            )
            return Mesh(self.data, self.tensor, self.pipeline, self.spec.device, self.axes, ())
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
        # ruff leaves a string that does not fit even in parentheses on one line.
        fits = len(f'LAUNCH_COMMAND = "{single}"') <= LINE_LENGTH
        fits = fits or len(f'    "{single}"') > LINE_LENGTH
        nodes = tuple(
            n
            for n in range(2, min(world, MAX_WORLD) + 1)
            if world % n == 0 and (world // n) % self.tensor == 0
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

    def loss(self, current: Running) -> Loss | None:
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
        self, name: str, path: YamlPath, current: Running, scope: Scope, high: int, what: str
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

    def top_level(self, current: Running, scope: Scope) -> Running:
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
        self, layers: list[Layer], path: YamlPath, current: Running, scope: Scope
    ) -> Running:
        for index, layer in enumerate(layers):
            current = self.layer((*path, index), layer, current, scope)
        return current

    def layer(self, path: YamlPath, layer: Layer, current: Running, scope: Scope) -> Running:
        if isinstance(layer, Residual):
            return self.residual(path, layer, current, scope)
        if isinstance(layer, Repeat):
            return self.repeat(path, layer, current, scope)
        handler = getattr(self, "layer_" + layer.kind, None) or self.layer_elementwise
        return handler(path, self.names[path], layer, current, scope)

    def add(
        self,
        scope: Scope,
        path: YamlPath,
        name: str,
        kind: str,
        module: str,
        arguments: list[str],
        params: list[Param],
        before: Running,
        after: Running,
        comment: str,
        call: tuple[str, ...] = (),
        attributes: dict[str, Any] | None = None,
    ) -> Running:
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

    def residual(self, path: YamlPath, layer: Residual, current: Running, scope: Scope) -> Running:
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

    def repeat(self, path: YamlPath, layer: Repeat, current: Running, scope: Scope) -> Running:
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
        body = Scope("placement", "hidden", stage=None, top=False)
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
                signature(parameters),
                tuple(body.steps),
                body.reads,
                moves,
            )
        )
        constant = f"{name.upper()}_STAGES" if self.pipeline > 1 else None
        if constant:
            element, clause = f"{class_name}(placement=STAGES[stage])", f"for stage in {constant}"
        else:
            element = f"{class_name}(placement={scope.placement})"
            clause = f"for _ in range({layer.times})"
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
                comprehension_lines(8, f"self.{name} = nn.ModuleList", element, clause),
                tuple(loop),
                stages,
                constant,
                " + ".join(run_lengths(stages)),
                sum_lines(constant, run_lengths(stages)) if constant else (),
            )
        )
        scope.reads = "hidden"
        return result

    def ensure_whole(
        self, current: Running, consumer: str, what: str, scope: Scope, path: YamlPath
    ) -> Running:
        """Insert an explicit all-gather where a feature-split activation meets a layer
        that needs whole features."""
        if current.tensor_sbp == B or current.dtype != "float32":
            return current
        whole = replace(current, tensor_sbp=B)
        split_constant = self.feature_split(current)
        scope.steps.append(
            Relayout(
                "gather",
                self.of(current),
                self.of(whole),
                f"{what} `{consumer}` needs whole features",
                scope.reads,
                ("ACTIVATION", split_constant),
                # The gradient of an all-gather is the local slice of a whole gradient.
                # Said explicitly: OneFlow 0.9's default for it aborts CPU graphs that
                # train a split bias before the gather (register.cpp:75).
                call_lines(
                    8,
                    f"hidden = {scope.reads}.to_global",
                    ["sbp=ACTIVATION", f"grad_sbp={split_constant}"],
                ),
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

    def ensure_split(self, current: Running, scope: Scope) -> Running:
        """A row-parallel layer takes features split; slicing a whole tensor is local."""
        target = split(len(current.shape) - 1)
        if current.tensor_sbp == target:
            return current
        result = replace(current, tensor_sbp=target)
        constant = self.feature_split(result)
        scope.steps.append(
            Relayout(
                "split",
                self.of(current),
                self.of(result),
                "a `row` linear takes features split over tensor ranks (local slice)",
                scope.reads,
                (constant, "ACTIVATION"),
                # Its gradient is the all-gather of the split gradient.
                call_lines(
                    8,
                    f"hidden = {scope.reads}.to_global",
                    [f"sbp={constant}", "grad_sbp=ACTIVATION"],
                ),
            )
        )
        scope.reads = "hidden"
        return result
