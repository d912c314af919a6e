"""The model's inputs, how a training step is batched, and the loss on its output.

Inputs are made where stage 0 lives, batch split over data ranks (or replicated),
and `random_inputs()` samples them with the spec's shapes: ids below the vocabulary
of the layer that reads them, token types below their count, masks of 0 and 1.
"""

from __future__ import annotations

from specc.diagnostics import Clause, Help, Values
from specc.kinds.base import B, Running, split
from specc.lower.mesh import PLACEMENT
from specc.lower.reporter import Reporter
from specc.lower.sbp import Constants, Grid
from specc.plan import InputTensor, Loss, Shape
from specc.source import YamlPath
from specc.spec import Spec, walk_layers

# The layer kinds whose output is a score per class, which a cross-entropy loss takes.
SCORE_KINDS = ("linear", "lm_head")


class Inputs:
    """What the walk learns about the inputs, and the plan's inputs and loss from it."""

    def __init__(self, spec: Spec, grid: Grid, constants: Constants, report: Reporter) -> None:
        self.spec, self.grid, self.constants, self.report = spec, grid, constants, report
        self.by_name = {item.name: (i, item) for i, item in enumerate(spec.inputs)}
        self.high: dict[str, int] = {}  # exclusive bound of the integers an input holds
        self.seen: set[str] = {spec.inputs[0].name}

    @property
    def first(self) -> Running:
        """The stream at the start: the first input, as the first layer receives it."""
        item = self.spec.inputs[0]
        return Running(tuple(item.shape), self.constants.data_sbp, B, item.dtype)

    def optional(self, name: str) -> bool:
        return name in self.by_name and self.by_name[name][1].optional

    def values_below(self, name: str, high: int) -> None:
        self.high[name] = max(self.high.get(name, 0), high)

    def read(self, name: str, path: YamlPath, x: Running, high: int, what: str) -> bool:
        """A layer reads another model input (token types, a mask): int64 [batch, seq]."""
        if name not in self.by_name:
            known = ", ".join(self.by_name)
            self.report.error(
                "E308",
                f"{what} reads input `{name}`, which the spec does not declare",
                path,
                help=f"inputs: {known}",
            )
            return False
        index, item = self.by_name[name]
        self.seen.add(name)
        self.values_below(name, high)
        expected = list(x.shape[:2])
        if item.dtype != "int64" or list(item.shape) != expected:
            self.report.error(
                "E306",
                f"{what} needs input `{name}` to be int64 {expected}, but it is {item.dtype} "
                f"{list(item.shape)}",
                ("inputs", index, "shape"),
                help=f"declare `{name}` with shape {expected} and dtype int64",
            )
            return False
        return True

    def tensors(self) -> tuple[InputTensor, ...]:
        """Every input, checked against the mesh (after the walk, which sets their ranges)."""
        self._check_used()
        return tuple(self._tensor(i) for i in range(len(self.spec.inputs)))

    def _tensor(self, index: int) -> InputTensor:
        item = self.spec.inputs[index]
        path: YamlPath = ("inputs", index)
        shape = tuple(item.shape)
        data = self.grid.data
        if item.split == "data":
            self.report.check_divisible(
                shape[0], data, "data", "batch", f"input `{item.name}`", (*path, "shape", 0),
                code="E302",
            )  # fmt: skip
        elif data > 1 and index == 0:
            self.report.warning(
                "W501",
                f"input `{item.name}` is not split but data is {data}: every "
                f"data-parallel rank computes the same batch",
                (*path, "split"),
                help="write `split: data` to give each data-parallel rank its own slice",
            )
        later = [i.name for i in self.spec.inputs[index + 1 :] if not i.optional]
        if item.optional and later:
            self.report.error(
                "E305",
                f"optional input `{item.name}` comes before `{later[0]}`, which is not "
                "optional; forward's optional arguments come last",
                (*path, "optional"),
                help=f"move `{item.name}` after the inputs that are not optional",
            )
        if item.optional and index == 0:
            self.report.error(
                "E305",
                f"the first input `{item.name}` is the stream every layer starts from; it "
                "cannot be optional",
                (*path, "optional"),
                help="make another input optional, or drop `optional`",
            )
        item_sbp = split(0) if item.split == "data" else B
        if item_sbp != self.constants.data_sbp:
            first = self.spec.inputs[0]
            self.report.error(
                "E305",
                f"input `{item.name}` has split `{item.split}` but `{first.name}` has "
                f"`{first.split}`; inputs with different splits are not supported",
                (*path, "split"),
                help=Help.of(
                    Clause("write `split: {}`", Values((*path, "split"), (first.split,))),
                    otherwise="give every input the same split",
                ),
            )
        high = self.high.get(item.name, 2) if item.dtype == "int64" else None
        return self._sample(item.name, item.dtype, shape, high, self.report.where(path))

    def _sample(
        self, name: str, dtype: str, shape: Shape, high: int | None, source: str
    ) -> InputTensor:
        layout = self.grid.layout(shape, self.constants.data_sbp, B)
        constant = self.constants.activation()
        return InputTensor(
            name=name,
            dtype=dtype,
            layout=layout,
            sbp_constant=constant,
            placement=PLACEMENT,
            source=source,
            high=high,
        )

    def _check_used(self) -> None:
        for index, item in enumerate(self.spec.inputs):
            if item.name not in self.seen:
                self.report.warning(
                    "W502",
                    f"input `{item.name}` is never used by a layer",
                    ("inputs", index, "name"),
                    help="remove it, or name it in a layer's `input` or `mask`",
                )

    def loss(self, output: Running) -> Loss | None:
        """The loss on the model's output, and its labels; None without one."""
        if self.spec.loss is None:
            return None
        if output.dtype != "float32" or len(output.shape) < 2:
            self.report.error(
                "E306",
                f"cross_entropy takes logits [..., classes], but the model's output is "
                f"{output.dtype} {list(output.shape)}",
                ("loss", "kind"),
            )
            return None
        producer = self._output_layer()
        if producer is not None and producer[1] not in SCORE_KINDS:
            index, kind, name = producer
            self.report.error(
                "E306",
                f"cross_entropy takes class scores, but the model's output comes from {kind} "
                f"`{name}` ({self.report.where(('layers', index))}), which gives none",
                ("loss", "kind"),
                help="end the model with a `linear` giving one score per class, or an "
                "`lm_head`; or name the layer that does in `outputs`",
            )
            return None
        classes = output.vocab or output.shape[-1]
        where = self.report.where(("loss",))
        labels = self._sample("labels", "int64", output.shape[:-1], classes, where)
        return Loss(self.spec.loss.kind, labels)

    def _output_layer(self) -> tuple[int, str, str] | None:
        """The top-level layer whose output the loss takes: index, kind and name."""
        named = {ref.name: ref.path[1] for ref in walk_layers(self.spec) if len(ref.path) == 2}
        outputs = self.spec.outputs
        index = named.get(outputs[-1]) if outputs else len(self.spec.layers) - 1
        if not isinstance(index, int):
            return None
        name = next(n for n, i in named.items() if i == index)
        return index, self.spec.layers[index].kind, name

    def accumulation(self) -> int:
        """Check the batching of a training step; return the micro-batches per step."""
        training = self.spec.training
        accumulation = training.accumulation if training else 1
        data, pipeline = self.grid.data, self.grid.pipeline
        if training is not None:
            expected = training.micro_batch * data * accumulation
            product = (
                f"micro_batch {training.micro_batch} x data {data} x accumulation "
                f"{accumulation} = {expected}"
            )
            if training.global_batch is not None and training.global_batch != expected:
                self.report.error(
                    "E316",
                    f"global_batch {training.global_batch} is not {product}",
                    ("training", "global_batch"),
                    help=Help.of(
                        Clause(
                            "set global_batch: {}",
                            Values(("training", "global_batch"), (expected,)),
                        ),
                        "change the others",
                    ),
                )
            batch = self.spec.inputs[0].shape[0]
            if batch != expected:
                self.report.error(
                    "E316",
                    f"the batch of input `{self.spec.inputs[0].name}` is {batch}, but a "
                    f"training step takes {product}",
                    ("inputs", 0, "shape", 0),
                    help=Help.of(
                        Clause(
                            "make the batch {}: the training graph cuts it into "
                            f"{accumulation} micro-batches",
                            Values(("inputs", 0, "shape", 0), (expected,)),
                        ),
                        otherwise=f"the training graph cuts the batch into {accumulation} "
                        "micro-batches",
                    ),
                )
        if pipeline > 1 and accumulation < pipeline:
            where = ("training", "accumulation") if training else ("parallel", "pipeline")
            self.report.warning(
                "W503",
                f"{accumulation} micro-batch(es) per step cannot fill a {pipeline}-stage "
                f"pipeline; stages will wait for each other",
                where,
                help=Help.of(
                    Clause(
                        "set training.accumulation to {} or more",
                        Values(("training", "accumulation"), (pipeline,)),
                    ),
                    otherwise="accumulate at least as many micro-batches as there are stages",
                ),
            )
        return accumulation
