"""Stage 3: lower a validated spec to a plan, checking the parallel layout on the way.

This is where the parallel reasoning lives: the mesh and its placements, the SBP of
every weight and activation (LiBai's conventions, ../shared/research/libai.md section 1),
shape inference through the layers, and the divisibility every split needs. Each
problem becomes a located diagnostic, and lowering goes on after one so that a user
sees all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from specc import __version__, names
from specc.diagnostics import Diagnostics, Span
from specc.plan import (
    InputTensor,
    Launch,
    LayerClass,
    LayerStep,
    Layout,
    Mesh,
    Param,
    Plan,
    RankGrid,
    Relayout,
    SbpConstant,
    Shape,
    Stage,
    Step,
)
from specc.source import Document, YamlPath
from specc.spec import Activation, Dropout, Layer, LayerNorm, Linear, Spec, layer_names

B = "B"
LINE_LENGTH = 88  # ruff's default; generated code must need no reformatting


def split(axis: int) -> str:
    return f"S({axis})"


# Layer classes the generated layers.py can define, in the order it defines them.
_LAYER_CLASSES = {
    "LinearBase": ("layers/linear_base.py.jinja", ()),
    "ColumnParallelLinear": ("layers/column_parallel_linear.py.jinja", ("COLUMN_SPLIT",)),
    "RowParallelLinear": (
        "layers/row_parallel_linear.py.jinja",
        ("ACTIVATION", "REPLICATED", "ROW_SPLIT"),
    ),
    "ReplicatedLinear": ("layers/replicated_linear.py.jinja", ("REPLICATED",)),
    "LayerNorm": ("layers/layer_norm.py.jinja", ("REPLICATED",)),
}
_ACTIVATIONS = {
    "gelu": "GELU",
    "relu": "ReLU",
    "silu": "SiLU",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
}


def lower(spec: Spec, document: Document, diagnostics: Diagnostics) -> Plan | None:
    """Lower `spec` to a plan; report every problem and return None if lowering found one."""
    errors_before = diagnostics.error_count
    plan = _Lowering(spec, document, diagnostics).run()
    return plan if diagnostics.error_count == errors_before else None


@dataclass(frozen=True)
class _Activation:
    """The running activation while walking the layers: shape and its two mesh-axis SBPs."""

    shape: Shape
    data_sbp: str  # "S(0)" or "B"
    tensor_sbp: str  # "B" or "S(last)"


class _Lowering:
    def __init__(self, spec: Spec, document: Document, diagnostics: Diagnostics) -> None:
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
        self.classes: set[str] = set()

    # -- helpers ---------------------------------------------------------------------

    def span(self, path: YamlPath, *, key: bool = False) -> Span:
        return self.document.span(path, key=key)

    def where(self, path: YamlPath) -> str:
        span = self.span(path)
        return f"{self.spec_file}:{span.line}"

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

    def constant(self, name: str, data_sbp: str, tensor_sbp: str, comment: str) -> str:
        sbp = self.nd(data_sbp, tensor_sbp)
        # "S(0)" and "B" are also how the generated parallel.py spells them.
        python = "(" + ", ".join(sbp) + ("," if len(sbp) == 1 else "") + ")"
        self.constants.setdefault(name, SbpConstant(name, sbp, python, comment))
        return name

    def check_divisible(
        self,
        size: int,
        group: int,
        group_name: str,
        key: str,
        owner: str,
        path: YamlPath,
        code: str,
    ) -> None:
        """Report `key size of owner` (at `path`) unless `group` divides it."""
        if size % group:
            self.diagnostics.error(
                code,
                f"{key} {size} of {owner} is not divisible by {group_name} {group}",
                self.span(path),
                help=_divisibility_help(size, group, group_name),
            )

    # -- the walk ----------------------------------------------------------------------

    def run(self) -> Plan:
        mesh = self.mesh()
        activation_data_sbp, inputs = self.inputs()
        first = inputs[0]
        current = _Activation(first.layout.shape, activation_data_sbp, B)
        self.constant("ACTIVATION", activation_data_sbp, B, "activations: batch over data ranks")
        steps: list[Step] = []
        names = layer_names(self.spec)
        for index, layer in enumerate(self.spec.layers):
            current = self.layer(index, names[index], layer, current, steps)
        output = self.layout(current.shape, current.data_sbp, current.tensor_sbp)
        layer_steps = [s for s in steps if isinstance(s, LayerStep)]
        parameter_count = sum(_numel(p.layout.shape) for s in layer_steps for p in s.params)
        classes = tuple(
            LayerClass(name, template, constants)
            for name, (template, constants) in _LAYER_CLASSES.items()
            if name in self.classes
        )
        used = {c for cls in classes for c in cls.sbp_constants}
        used |= {i.sbp_constant for i in inputs}
        used |= {s.sbp_constant for s in steps if isinstance(s, Relayout)}
        constants = tuple(self.constants[name] for name in sorted(used))
        return Plan(
            package=self.spec.name,
            spec_file=self.spec_file,
            specc_version=__version__,
            mesh=mesh,
            inputs=inputs,
            steps=tuple(steps),
            output=output,
            sbp_constants=constants,
            layer_classes=classes,
            parameter_count=parameter_count,
            launch=self.launch(),
        )

    def mesh(self) -> Mesh:
        parallel = self.spec.parallel
        world = self.data * self.tensor * self.pipeline
        if parallel.world_size is not None and parallel.world_size != world:
            self.diagnostics.error(
                "E300",
                f"world_size {parallel.world_size} does not equal data {self.data} x tensor "
                f"{self.tensor} x pipeline {self.pipeline} = {world}",
                self.span(("parallel", "world_size")),
                help=f"set world_size: {world}, or change the parallel sizes so their product "
                f"is {parallel.world_size}",
            )
        if self.pipeline > 1:
            self.diagnostics.error(
                "E305",
                f"pipeline {self.pipeline} is not supported by specc {__version__} yet",
                self.span(("parallel", "pipeline")),
                help="use pipeline: 1; pipeline stages are planned for a later version",
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

    def inputs(self) -> tuple[str, tuple[InputTensor, ...]]:
        result = []
        data_sbp = B
        for index, item in enumerate(self.spec.inputs):
            path: YamlPath = ("inputs", index)
            shape = tuple(item.shape)
            item_sbp = B
            if item.split == "data":
                item_sbp = split(0)
                self.check_divisible(
                    shape[0],
                    self.data,
                    "data",
                    "batch",
                    f"input `{item.name}`",
                    (*path, "shape", 0),
                    "E302",
                )
            elif self.data > 1:
                self.diagnostics.warning(
                    "W501",
                    f"input `{item.name}` is not split but data is {self.data}: every "
                    f"data-parallel rank computes the same batch",
                    self.span((*path, "split")),
                    help="write `split: data` to give each data-parallel rank its own slice",
                )
            if index == 0:
                data_sbp = item_sbp
            # Format version 1 has one input; its layout is the activations' layout.
            constant = self.constant(
                "ACTIVATION", item_sbp, B, "activations: batch over data ranks"
            )
            layout = self.layout(shape, item_sbp, B)
            arguments = (*map(str, shape), "placement=PLACEMENT", f"sbp={constant}")
            fits = len(f"    {item.name} = flow.randn({', '.join(arguments)})") <= LINE_LENGTH
            result.append(
                InputTensor(
                    item.name, item.dtype, layout, constant, self.where(path), arguments, fits
                )
            )
        return data_sbp, tuple(result)

    def layer(
        self, index: int, name: str, layer: Layer, current: _Activation, steps: list[Step]
    ) -> _Activation:
        path: YamlPath = ("layers", index)
        if isinstance(layer, Linear):
            return self.linear(path, name, layer, current, steps)
        if isinstance(layer, LayerNorm):
            return self.layer_norm(path, name, layer, current, steps)
        if isinstance(layer, Activation):
            module, arguments = "nn." + _ACTIVATIONS[layer.kind], ()
        elif isinstance(layer, Dropout):
            module, arguments = "nn.Dropout", (f"p={layer.p!r}",)
        else:  # pragma: no cover - the models admit no other kind
            raise AssertionError(layer)
        layout = self.layout(current.shape, current.data_sbp, current.tensor_sbp)
        steps.append(
            LayerStep(
                name,
                layer.kind,
                module,
                arguments,
                (),
                layout,
                layout,
                self.where(path),
                f"{_sbp_text(layout.sbp)}, element-wise",
                _fits(name, module, arguments),
            )
        )
        return current

    def linear(
        self, path: YamlPath, name: str, layer: Linear, current: _Activation, steps: list[Step]
    ) -> _Activation:
        last = current.shape[-1]
        if layer.in_features != last:
            self.diagnostics.error(
                "E303",
                f"in_features {layer.in_features} of linear `{name}` does not match its input, "
                f"whose last dimension is {last}",
                self.span((*path, "in_features")),
                help=f"set in_features: {last}, or change the layer before it",
            )
        mode = layer.split if self.tensor > 1 else "data"
        if mode == "none":
            mode = "data"
        feature_axis = len(current.shape) - 1
        if mode == "col":
            self.check_divisible(
                layer.out_features,
                self.tensor,
                "tensor",
                "out_features",
                f"`col` linear `{name}`",
                (*path, "out_features"),
                "E301",
            )
            current = self.ensure_whole(current, name, "a `col` linear", steps, path)
            module, weight, bias = (
                "ColumnParallelLinear",
                ("COLUMN_SPLIT", B, split(0)),
                ("COLUMN_SPLIT", B, split(0)),
            )
            out_tensor_sbp = split(feature_axis)
            algebra = "x whole, weight rows split -> output features split"
        elif mode == "row":
            self.check_divisible(
                layer.in_features,
                self.tensor,
                "tensor",
                "in_features",
                f"`row` linear `{name}`",
                (*path, "in_features"),
                "E301",
            )
            current = self.ensure_split(current, steps)
            module, weight, bias = (
                "RowParallelLinear",
                ("ROW_SPLIT", B, split(1)),
                ("REPLICATED", B, B),
            )
            out_tensor_sbp = B
            algebra = "x features split, weight columns split -> partial sums -> all-reduce"
        else:
            current = self.ensure_whole(current, name, "a replicated linear", steps, path)
            module, weight, bias = "ReplicatedLinear", ("REPLICATED", B, B), ("REPLICATED", B, B)
            out_tensor_sbp = B
            algebra = "weight replicated"
        self.classes.update((module, "LinearBase"))
        self.constant("COLUMN_SPLIT", B, split(0), "col weight and bias: rows over tensor ranks")
        self.constant("ROW_SPLIT", B, split(1), "row weight: columns over tensor ranks")
        self.constant("REPLICATED", B, B, "whole on every rank")
        params = [self.param("weight", (layer.out_features, layer.in_features), *weight)]
        if layer.bias:
            params.append(self.param("bias", (layer.out_features,), *bias))
        arguments = [str(layer.in_features), str(layer.out_features)]
        if not layer.bias:
            arguments.append("bias=False")
        arguments.append("placement=PLACEMENT")
        before = self.layout(current.shape, current.data_sbp, current.tensor_sbp)
        result = _Activation(
            (*current.shape[:-1], layer.out_features), current.data_sbp, out_tensor_sbp
        )
        after = self.layout(result.shape, result.data_sbp, result.tensor_sbp)
        steps.append(
            LayerStep(
                name,
                "linear",
                module,
                tuple(arguments),
                tuple(params),
                before,
                after,
                self.where(path),
                f"{_sbp_text(before.sbp)} -> {_sbp_text(after.sbp)}: {algebra}",
                _fits(name, module, arguments),
            )
        )
        return result

    def layer_norm(
        self, path: YamlPath, name: str, layer: LayerNorm, current: _Activation, steps: list[Step]
    ) -> _Activation:
        last = current.shape[-1]
        if layer.features is not None and layer.features != last:
            self.diagnostics.error(
                "E304",
                f"features {layer.features} of layernorm `{name}` does not match its input, "
                f"whose last dimension is {last}",
                self.span((*path, "features")),
                help=f"set features: {last}, or leave it out to infer it",
            )
        current = self.ensure_whole(current, name, "layernorm", steps, path)
        self.classes.add("LayerNorm")
        self.constant("REPLICATED", B, B, "whole on every rank")
        params = []
        if layer.affine:
            params = [self.param(p, (last,), "REPLICATED", B, B) for p in ("weight", "bias")]
        arguments = [str(last), f"eps={layer.eps!r}"]
        if not layer.affine:
            arguments.append("affine=False")
        arguments.append("placement=PLACEMENT")
        layout = self.layout(current.shape, current.data_sbp, current.tensor_sbp)
        steps.append(
            LayerStep(
                name,
                "layernorm",
                "LayerNorm",
                tuple(arguments),
                tuple(params),
                layout,
                layout,
                self.where(path),
                f"{_sbp_text(layout.sbp)}, needs whole features",
                _fits(name, "LayerNorm", arguments),
            )
        )
        return current

    def param(
        self, name: str, shape: Shape, constant: str, data_sbp: str, tensor_sbp: str
    ) -> Param:
        return Param(name, self.layout(shape, data_sbp, tensor_sbp), constant)

    def ensure_whole(
        self, current: _Activation, consumer: str, what: str, steps: list[Step], path: YamlPath
    ) -> _Activation:
        """Insert an explicit all-gather where a feature-split activation meets a layer
        that needs whole features."""
        if current.tensor_sbp == B:
            return current
        before = self.layout(current.shape, current.data_sbp, current.tensor_sbp)
        whole = _Activation(current.shape, current.data_sbp, B)
        after = self.layout(whole.shape, whole.data_sbp, whole.tensor_sbp)
        constant = self.constant(
            "ACTIVATION", current.data_sbp, B, "activations: batch over data ranks"
        )
        reason = f"{what} `{consumer}` needs whole features"
        steps.append(Relayout("gather", before, after, constant, reason))
        self.diagnostics.warning(
            "W500",
            f"an all-gather of {list(current.shape)} over tensor ranks is inserted before "
            f"{what} `{consumer}`, whose input is split on its last dimension",
            self.span(path),
            help="a `row` linear before it keeps activations whole without the gather",
        )
        return whole

    def ensure_split(self, current: _Activation, steps: list[Step]) -> _Activation:
        """A row-parallel layer takes features split; slicing a whole tensor is local."""
        target = split(len(current.shape) - 1)
        if current.tensor_sbp == target:
            return current
        before = self.layout(current.shape, current.data_sbp, current.tensor_sbp)
        result = _Activation(current.shape, current.data_sbp, target)
        after = self.layout(result.shape, result.data_sbp, result.tensor_sbp)
        constant = self.constant(
            "FEATURE_SPLIT", current.data_sbp, target, "activations split on features"
        )
        reason = "a `row` linear takes features split over tensor ranks (local slice)"
        steps.append(Relayout("split", before, after, constant, reason))
        return result


def _sbp_text(sbp: tuple[str, ...]) -> str:
    return "(" + ", ".join(sbp) + ")"


def _numel(shape: Shape) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _fits(name: str, module: str, arguments: list[str] | tuple[str, ...]) -> bool:
    """Whether `self.<name> = <module>(<arguments>)` fits one line in __init__."""
    line = f"        self.{name} = {module}({', '.join(arguments)})"
    return len(line) <= LINE_LENGTH


def _divisibility_help(size: int, group: int, group_name: str) -> str:
    below = size - size % group
    above = below + group
    nearest = f"{below} or {above}" if below > 0 else str(above)
    divisors = [d for d in range(1, min(size, 64) + 1) if size % d == 0]
    return (
        f"make the size a multiple of {group} ({nearest}), or use a {group_name} size that "
        f"divides {size}: {', '.join(map(str, divisors))}"
    )
