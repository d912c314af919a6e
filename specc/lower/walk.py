"""The walk over the spec's layers: each kind's rule in turn, scopes, residuals and repeats.

The walk is the `Context` every kind's rule sees (`specc.kinds.base`). It keeps the
running activation's layout, inserts relayouts where a rule asks for one, fills one
module class per scope (`Model`, and one per repeat body) and records, for every
top-level layer, what pipeline staging needs to know: its weight, the table it shares
a stage with, the inputs it reads. It assigns no stages: that comes after, from what
it recorded, so the walk runs once whatever the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from specc import kinds, names
from specc.diagnostics import Clause, Help
from specc.kinds.base import B, LayerModel, Lowered, Running, Table, axis_sizes, split
from specc.kinds.costs import layer_cost
from specc.lower import relayout
from specc.lower.inputs import Inputs
from specc.lower.reporter import Reporter
from specc.lower.sbp import Constants, Grid
from specc.plan import (
    Call,
    Expr,
    LayerStep,
    Layout,
    ModuleClass,
    Param,
    Ref,
    Relayout,
    RepeatStep,
    ResidualBegin,
    ResidualEnd,
    Shape,
    Step,
)
from specc.source import YamlPath
from specc.spec import Spec, walk_layers

HIDDEN = names.HIDDEN


def placed(call: Call, placement: Expr) -> Call:
    """`call` with `placement=` for itself and each call among its arguments that takes one
    (a layer's rotary embedding lives where the layer does)."""
    args, kwargs = call.args, call.kwargs
    # Most calls have no call among their arguments: they are not rebuilt (issue 17).
    if any(isinstance(value, Call) for value in args):
        args = tuple(placed(v, placement) if isinstance(v, Call) else v for v in args)
    if any(isinstance(value, Call) for _, value in kwargs):
        kwargs = tuple((k, placed(v, placement) if isinstance(v, Call) else v) for k, v in kwargs)
    template = kinds.CLASSES.get(call.function)
    if template is not None and template.placement:
        kwargs = (*kwargs, ("placement", placement))
    if args is call.args and kwargs is call.kwargs:
        return call
    return Call(call.function, args, kwargs)


@dataclass
class Scope:
    """A module class being filled: the top-level Model or one repeat body."""

    top: bool
    reads: str  # the variable the next step reads
    steps: list[Step] = field(default_factory=list)
    inputs_used: list[str] = field(default_factory=list)  # extra inputs a body's forward takes
    residual_depth: int = 0

    def add(self, step: Step, writes: str = HIDDEN) -> None:
        self.steps.append(step)
        self.reads = writes


@dataclass(frozen=True)
class InputRead:
    """A top-level layer reads a model input: it must run on stage 0, where inputs are."""

    path: YamlPath
    what: str
    input: str


@dataclass
class Unit:
    """A top-level layer, what pipeline stages are cut from (a repeat: each repetition)."""

    index: int
    name: str
    path: YamlPath
    entry: Layout  # the activation it receives
    start: int  # its steps in the Model's: steps[start:end]
    exit: Running | None = None  # the activation it leaves
    end: int = 0
    repetitions: int = 0  # a repeat's `times`; 0 for any other layer
    weight: int = 0  # parameters (of one repetition)
    # Forward FLOPs on one rank and fp32 bytes kept for backward, of one repetition (its
    # kinds' `cost`): weighed only where there are stages to balance (pipeline > 1).
    flops: int = 0
    activations: int = 0
    tied_to: str | None = None  # the layer whose weights, and so stage, it uses
    input_reads: list[InputRead] = field(default_factory=list)


class _Frame(NamedTuple):
    path: YamlPath
    name: str
    kind: str


class Walk:
    """Lower every layer once; the plan is assembled from what it leaves behind."""

    def __init__(
        self, spec: Spec, grid: Grid, constants: Constants, inputs: Inputs, report: Reporter
    ) -> None:
        self.spec, self.grid, self.constants = spec, grid, constants
        self.inputs, self.report = inputs, report
        self.layers = walk_layers(spec)  # every layer, nested ones too
        self.layer_names = {ref.path: ref.name for ref in self.layers}
        self.model = Scope(top=True, reads=spec.inputs[0].name)
        self.scope = self.model
        self.body_classes: list[ModuleClass] = []
        self.units: list[Unit] = []
        self.used_classes: set[str] = set()
        self.tables: dict[str, Table] = {}
        self.parameters = 0  # lowered so far, to weigh the units
        self.flops = 0  # and what they compute and keep (their kinds' `cost`)
        self.activations = 0
        self._frames: list[_Frame] = []
        self._sequence_reported = False

    def run(self) -> Running:
        """Lower the top-level layers; the activation the model returns."""
        x = self.inputs.first
        for index, layer in enumerate(self.spec.layers):
            path: YamlPath = ("layers", index)
            unit = Unit(index, self.layer_names[path], path, self.grid.of(x), len(self.model.steps))
            if layer.opens_scope:
                unit.repetitions = getattr(layer, "times", 1)
            self.units.append(unit)
            if index == 0:
                x = self.rest(x, f"input `{self.first_input}`")  # as sequence parallelism keeps it
            before = (self.parameters, self.flops, self.activations)
            x = self.layer(path, layer, x)
            unit.exit = x
            unit.end = len(self.model.steps)
            unit.weight = self.parameters - before[0]
            unit.flops = self.flops - before[1]
            unit.activations = self.activations - before[2]
        if self.spec.loss is not None and self.units:
            # The loss keeps its probabilities in fp32 where the logits are (as
            # kinds.cross_entropy.loss_cost counts them); it weighs on the last unit.
            self.units[-1].activations += 4 * math.prod(self.grid.of(x).local_shape)
        return x

    def layer(self, path: YamlPath, layer: LayerModel, x: Running) -> Running:
        kind = kinds.of(layer)
        self._frames.append(_Frame(path, self.layer_names[path], layer.kind))
        try:
            result = kind.lower(self, layer, x)
        finally:
            self._frames.pop()
        if result is None:
            return x
        if not isinstance(result, Running):
            result = self._add_layer(path, layer.kind, result)
        return self.rest(result, f"`{self.layer_names[path]}`")

    def rest(self, x: Running, where: str) -> Running:
        """`x` as it rests between layers: under sequence parallelism, a whole [batch,
        seq, hidden] activation (a patch embedding's, a float input) is sliced over the
        sequence, so that residual branches meet in one layout."""
        if not self.grid.streams(x) or not self._sequence_divides(x, where):
            return x
        return self._relayout(
            relayout.split_sequence(
                x, reads=self.scope.reads, writes=HIDDEN, grid=self.grid, constants=self.constants
            )
        )

    def _add_layer(self, path: YamlPath, kind: str, lowered: Lowered) -> Running:
        module = lowered.module
        self.used_classes |= {name for name in module.functions() if name in kinds.CLASSES}
        if not self.scope.top:
            # A body's layers live where its instance is; the Model's layers get
            # their stage's placement once stages are known (assemble.py).
            module = placed(module, Ref(names.PLACEMENT))
        params = tuple(lowered.params)
        self.parameters += sum(math.prod(p.layout.shape) for p in params)
        step = LayerStep(
            name=self.layer_names[path],
            kind=kind,
            module=module,
            attributes=dict(lowered.attributes),
            params=params,
            input=self.grid.of(lowered.input),
            output=self.grid.of(lowered.output),
            source=self.report.where(path),
            sbp_comment=lowered.comment,
            reads=self.scope.reads,
            writes=HIDDEN,
            call_arguments=lowered.call_arguments,
            stage=None,  # assemble.py places the Model's layers; a body's have none
        )
        self.scope.add(step)
        rule = kinds.BY_NAME[kind].cost
        # Weighed for balancing a plan's stages: not needed with one stage, and a spec
        # with errors gets none, as its shapes may be degenerate (a head size of 0).
        weighed = self.grid.pipeline > 1 and not self.report.diagnostics.error_count
        if rule is not None and weighed:
            cost = layer_cost(rule, step, self.grid.axes, self.grid.tensor)
            self.flops += cost.flops
            self.activations += cost.saved * 4 + cost.fixed
        return lowered.output

    # -- the Context kinds see -----------------------------------------------------------

    @property
    def _frame(self) -> _Frame:
        return self._frames[-1]

    @property
    def name(self) -> str:
        return self._frame.name

    @property
    def kind(self) -> str:
        return self._frame.kind

    @property
    def path(self) -> YamlPath:
        return self._frame.path

    @property
    def data(self) -> int:
        return self.grid.data

    @property
    def tensor(self) -> int:
        return self.grid.tensor

    @property
    def top(self) -> bool:
        return self.scope.top

    @property
    def first_input(self) -> str:
        return self.spec.inputs[0].name

    @property
    def init_std(self) -> float | None:
        return None if self.spec.init is None else self.spec.init.std

    @property
    def output_std(self) -> float | None:
        init = self.spec.init
        if init is None or init.output_layers is None:
            return self.init_std
        return init.std / math.sqrt(2 * init.output_layers)

    def _at(self, key: str | None) -> YamlPath:
        return self.path if key is None else (*self.path, key)

    def error(
        self, code: str, message: str, key: str | None = None, help: str | Help | None = None
    ) -> None:
        self.report.error(code, message, self._at(key), self._located(help))

    def _located(self, help: str | Help | None) -> str | Help | None:
        """A help whose offered values name the layer's keys, with their paths."""
        return help.at(self.path) if isinstance(help, Help) else help

    def check_divisible(
        self,
        size: int,
        key: str,
        *,
        label: str | None = None,
        what: str | None = None,
        help: str | Help | None = None,
    ) -> bool:
        owner = f"{what or self.kind} `{self.name}`"
        return self.report.check_divisible(
            size,
            self.tensor,
            "tensor",
            label or key,
            owner,
            self._at(key),
            help=self._located(help),
        )

    def expect_features(self, x: Running, what: str) -> bool:
        """A layer on float [..., features]: report an integer input."""
        if x.dtype == "float32":
            return True
        self.error(
            "E306",
            f"{what} takes float activations, but its input is {x.dtype} {list(x.shape)}",
            help="token ids need an `embedding` first; images a `patch_embedding`",
        )
        return False

    def expect_sequence(self, x: Running, what: str) -> bool:
        if not self.expect_features(x, what):
            return False
        if len(x.shape) == 3:
            return True
        self.error(
            "E306",
            f"{what} takes [batch, seq, hidden], but its input is {list(x.shape)}",
            help="put it after an embedding and before `select_token`",
        )
        return False

    def _relayout(self, result: tuple[Running, Relayout | None]) -> Running:
        x, step = result
        if step is not None:
            self.scope.add(step, step.writes)
        return x

    def whole(self, x: Running, what: str) -> Running:
        return self._relayout(
            relayout.gather(
                x,
                consumer=self.name,
                what=what,
                reads=self.scope.reads,
                writes=HIDDEN,
                path=self.path,
                grid=self.grid,
                constants=self.constants,
                report=self.report,
            )
        )

    def stream(self, x: Running) -> Running:
        if not self.grid.streams(x) or not self._sequence_divides(x, f"`{self.name}`"):
            return replace(x, tensor_sbp=B)
        return replace(x, tensor_sbp=split(1))

    def whole_sequence(self, x: Running) -> Running:
        return self._relayout(
            relayout.gather_sequence(
                x,
                consumer=self.name,
                reads=self.scope.reads,
                writes=HIDDEN,
                grid=self.grid,
                constants=self.constants,
            )
        )

    def _sequence_divides(self, x: Running, where: str) -> bool:
        """Whether the sequence of `x` divides over tensor ranks; reported once if not."""
        seq, tensor = x.shape[1], self.grid.tensor
        if seq % tensor == 0:
            return True
        if not self._sequence_reported:
            self._sequence_reported = True
            self.report.error(
                "E319",
                f"sequence parallelism splits the sequence over tensor ranks, but the "
                f"sequence of {seq} (from {where}) is not divisible by tensor {tensor}",
                ("parallel", "sequence"),
                help=Help.of(
                    Clause(f"use a tensor size that divides {seq}: {{}}", axis_sizes(seq, tensor)),
                    "leave sequence out",
                ),
            )
        return False

    def split_features(self, x: Running) -> Running:
        x = self.whole_sequence(x)
        return self._relayout(
            relayout.slice_features(
                x, reads=self.scope.reads, writes=HIDDEN, grid=self.grid, constants=self.constants
            )
        )

    def layout(self, x: Running) -> Layout:
        return self.grid.of(x)

    def param(
        self,
        name: str,
        shape: Shape,
        tensor_sbp: str,
        valid_rows: int | None = None,
        *,
        decay: bool = True,
    ) -> Param:
        return self.grid.param(name, shape, tensor_sbp, valid_rows, decay=decay)

    def read_input(self, name: str, key: str, x: Running, high: int, what: str) -> bool:
        path = self._at(key)
        declared = name in self.inputs.by_name
        ok = self.inputs.read(name, path, x, high, what)
        if declared and self.scope.top:
            self.units[-1].input_reads.append(InputRead(path, what, name))
        if ok and not self.scope.top and name not in self.scope.inputs_used:
            self.scope.inputs_used.append(name)
        return ok

    def sample_ids_below(self, high: int) -> None:
        self.inputs.values_below(self.first_input, high)

    def offer_table(self, table: Table) -> None:
        self.tables[table.layer] = table

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def table_names(self) -> list[str]:
        return list(self.tables)

    def share_stage_with(self, layer: str) -> None:
        self.units[-1].tied_to = layer

    def activation(self, name: str) -> Call:
        module = kinds.ACTIVATIONS[name].activation
        assert module is not None
        return module

    def sequence(self, layers: Sequence[LayerModel], x: Running) -> Running:
        for index, layer in enumerate(layers):
            x = self.layer((*self.path, "layers", index), layer, x)
        return x

    def residual(self, layers: Sequence[LayerModel], x: Running) -> tuple[str, Running]:
        scope = self.scope
        variable = names.residual_variable(scope.residual_depth)
        # The body reads on from the same variable; the residual keeps a second name for it.
        scope.steps.append(ResidualBegin(variable, scope.reads, self.report.where(self.path)))
        scope.residual_depth += 1
        try:
            return variable, self.sequence(layers, x)
        finally:
            scope.residual_depth -= 1

    def add_residual(self, variable: str, x: Running) -> None:
        self.scope.add(ResidualEnd(variable, HIDDEN, self.grid.of(x)))

    def repeat(self, layers: Sequence[LayerModel], times: int, x: Running) -> Running:
        name, path, outer = self.name, self.path, self.scope
        body = Scope(top=False, reads=HIDDEN)
        self.scope = body
        try:
            result = self.sequence(layers, x)
            if result.shape != x.shape or result.dtype != x.dtype:
                self.error(
                    "E307",
                    f"repeat `{name}` must keep the shape {list(x.shape)}, but one "
                    f"repetition returns {list(result.shape)}",
                    help="a repeated block's output feeds its next repetition; keep the size",
                )
                return result
            result = self.whole(result, "the next repetition")
        finally:
            self.scope = outer
        class_name = names.body_class(name)
        arguments = tuple(body.inputs_used)
        parameters = (HIDDEN, *arguments)
        self.body_classes.append(
            ModuleClass(
                name=class_name,
                summary=f"One repetition of `{name}`.",
                source=self.report.where(path),
                is_model=False,
                forward_parameters=parameters,
                steps=tuple(body.steps),
                returns=(body.reads,),
                # Each repetition moves what it reads onto its own stage (eager pipelining).
                entry_moves=parameters if self.grid.pipeline > 1 else (),
                optional=tuple(name for name in arguments if self.inputs.optional(name)),
            )
        )
        placement: Expr = Ref(names.PLACEMENT)  # assemble.py sets each instance's
        step = RepeatStep(
            name=name,
            times=times,
            module=class_name,
            reads=outer.reads,
            writes=HIDDEN,
            call_arguments=arguments,
            output=self.grid.of(result),
            source=self.report.where(path),
            stages=(0,) * times,  # assemble.py sets them, with the placement of each instance
            stages_constant=None,
            placement=placement,
            index_variable=names.UNUSED_VARIABLE,
            loop_variable=names.LOOP_VARIABLE,
        )
        outer.add(step)
        return result
