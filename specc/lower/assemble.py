"""Plan assembly: the walk's steps placed on their stages, and everything the files need.

Once stages are known, the Model's steps get their stage and placement, activations
that cross to another stage get a move, each repeat learns the stage of each of its
instances, and every parameter is listed under its full name on the stage that holds it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from specc import __version__, kinds, names
from specc.kinds.base import Running
from specc.lower.checkpoint import checkpoint_plan
from specc.lower.data import train_data
from specc.lower.mesh import STAGES, build_mesh, launch, stage_placement
from specc.lower.recipe import recipe
from specc.lower.sbp import Constants, Grid
from specc.lower.staging import Stages
from specc.lower.walk import HIDDEN, Unit, Walk, placed
from specc.plan import (
    Keep,
    LayerClass,
    LayerStep,
    ModuleClass,
    Output,
    Parameter,
    Plan,
    Ref,
    Relayout,
    RepeatStep,
    ResidualEnd,
    StageMove,
    Step,
    Subscript,
)


def assemble(walk: Walk, output: Running, stages: Stages) -> Plan:
    """The plan of what `walk` lowered, whose output is `output`, cut into `stages`."""
    spec, grid, constants = walk.spec, walk.grid, walk.constants
    inputs, report = walk.inputs, walk.report
    mesh = build_mesh(spec, grid, report.document, report.diagnostics)
    returned = _returned_units(walk)
    last = walk.units[-1]
    # The last layer's output is the stream itself; the others are kept aside as they pass.
    kept = {unit.name for unit in returned if unit is not last}
    model_steps = _place(walk, stages, grid, kept)
    returns = tuple(walk.model.reads if unit is last else unit.name for unit in returned)
    model = ModuleClass(
        name="Model",
        summary=f"The layers of {report.spec_file}, in order.",
        source=None,
        is_model=True,
        forward_parameters=tuple(item.name for item in spec.inputs),
        steps=tuple(model_steps),
        returns=returns,
        entry_moves=(),
        optional=tuple(item.name for item in spec.inputs if item.optional),
    )
    outputs = tuple(
        Output(unit.name, grid.of(unit.exit or output), unit_stages[-1])
        for unit, unit_stages in ((u, stages[u.index]) for u in returned)
    )
    classes = (*walk.body_classes, model)
    input_tensors = inputs.tensors()
    loss = inputs.loss(returned[-1].exit or output)
    layer_classes = _layer_classes(walk.used_classes, loss is not None, constants)
    used = {c for cls in layer_classes for c in cls.sbp_constants}
    used |= {i.sbp_constant for i in input_tensors}
    used |= {
        c for cls in classes for s in cls.steps if isinstance(s, Relayout) for c in s.constants
    }
    parameters = _parameters(model, {c.name: c for c in walk.body_classes})
    stage_parameters, stage_units = _stage_contents(walk.units, stages, grid.pipeline)
    return Plan(
        package=spec.name,
        spec_file=report.spec_file,
        specc_version=__version__,
        mesh=mesh,
        inputs=input_tensors,
        classes=classes,
        outputs=outputs,
        loss=loss,
        sbp_constants=constants.used(used),
        layer_classes=layer_classes,
        parameters=parameters,
        parameter_count=sum(math.prod(p.layout.shape) for p in parameters),
        checkpoint=checkpoint_plan(spec, parameters, report),
        recipe=recipe(
            spec, parameters, any(isinstance(s, RepeatStep) for s in model.steps), report
        ),
        train_data=train_data(spec, input_tensors, loss),
        launch=launch(spec.name, grid),
        sizes=dict(spec.sizes),
        accumulation=inputs.accumulation(),
        stage_parameters=stage_parameters,
        stage_units=stage_units,
    )


def _returned_units(walk: Walk) -> list[Unit]:
    """The top-level layers whose outputs the model returns: the spec's `outputs`, else
    the last layer. Names that are no top-level layer are reported."""
    named = walk.spec.outputs
    if named is None:
        return [walk.units[-1]]
    units = {unit.name: unit for unit in walk.units}
    returned: list[Unit] = []
    for index, name in enumerate(named):
        if name not in units:
            walk.report.error(
                "E308",
                f"`outputs` names `{name}`, which is not a top-level layer",
                ("outputs", index),
                help=f"top-level layers: {', '.join(units)}",
            )
        elif units[name] in returned:
            walk.report.error(
                "E208",
                f"`outputs` names `{name}` twice",
                ("outputs", index),
                help="list each output once",
            )
        else:
            returned.append(units[name])
    return returned or [walk.units[-1]]


def _place(walk: Walk, stages: Stages, grid: Grid, kept: set[str]) -> list[Step]:
    """The Model's steps on their stages, with a move wherever the stage changes.

    A repeat moves nothing itself: each of its instances moves what it reads onto
    its own stage.
    """
    steps = walk.model.steps
    result: list[Step] = []
    placements = [stage_placement(grid, stage) for stage in range(grid.pipeline)]
    current = 0
    for unit, unit_stages in zip(walk.units, stages, strict=True):
        own = list(steps[unit.start : unit.end])
        stage = unit_stages[0]
        first = own[0] if own else None
        if stage != current and not unit.repetitions and first is not None:
            # A unit starts with a layer, a relayout or a residual, each reading the stream.
            assert not isinstance(first, ResidualEnd), first
            result.append(
                StageMove(stage, first.reads, HIDDEN, Subscript(Ref(STAGES), stage), unit.entry)
            )
            own[0] = replace(first, reads=HIDDEN)
        for step in own:
            if isinstance(step, LayerStep):
                result.append(step.on_stage(stage, placed(step.module, placements[stage])))
            elif isinstance(step, RepeatStep):
                repetitions = unit_stages if unit.repetitions else (stage,) * step.times
                result.append(_place_repeat(step, repetitions, grid))
            else:
                result.append(step)
        if unit.name in kept:
            result.append(Keep(unit.name, HIDDEN))
        current = unit_stages[-1]
    return result


def _place_repeat(step: RepeatStep, stages: tuple[int, ...], grid: Grid) -> RepeatStep:
    if grid.pipeline == 1:
        return replace(step, stages=stages, placement=stage_placement(grid, 0))
    return replace(
        step,
        stages=stages,
        stages_constant=names.stages_constant(step.name),
        placement=Subscript(Ref(STAGES), Ref(names.STAGE_VARIABLE)),
        index_variable=names.STAGE_VARIABLE,
    )


def _layer_classes(used: set[str], loss: bool, constants: Constants) -> tuple[LayerClass, ...]:
    wanted = used | ({"cross_entropy"} if loss else set())
    classes = []
    for template in kinds.needed_classes(wanted):
        wanted_constants = template.constants
        if constants.grid.sequence:
            wanted_constants += template.sequence_constants
        declared = tuple(constants.for_class(name) for name in wanted_constants)
        classes.append(
            LayerClass(template.name, f"classes/{template.name}", declared, template.uses_math)
        )
    return tuple(classes)


def _parameters(model: ModuleClass, bodies: dict[str, ModuleClass]) -> tuple[Parameter, ...]:
    """Every parameter as `Model.named_parameters()` names it, on its real stage."""
    found: list[Parameter] = []

    def visit(cls: ModuleClass, prefix: str, stage: int | None) -> None:
        for step in cls.steps:
            if isinstance(step, LayerStep):
                where = step.stage if stage is None else stage
                assert where is not None
                found.extend(
                    Parameter(
                        f"{prefix}{step.name}.{p.name}", p.layout, where, p.valid_rows, p.decay
                    )
                    for p in step.params
                )
            elif isinstance(step, RepeatStep):
                for index, repetition in enumerate(step.stages):
                    visit(bodies[step.module], f"{prefix}{step.name}.{index}.", repetition)

    visit(model, "", None)
    return tuple(found)


def _stage_contents(
    units: Sequence[Unit], stages: Stages, pipeline: int
) -> tuple[tuple[int, ...], tuple[tuple[str, ...], ...]]:
    """The parameters each stage holds and its layers (and repetitions), for the plan."""
    weights = [0] * pipeline
    contents: list[list[str]] = [[] for _ in range(pipeline)]
    for unit, unit_stages in zip(units, stages, strict=True):
        if unit.repetitions:
            for repetition, stage in enumerate(unit_stages):
                weights[stage] += unit.weight
                contents[stage].append(f"{unit.name}.{repetition}")
        else:
            weights[unit_stages[0]] += unit.weight
            contents[unit_stages[0]].append(unit.name)
    return tuple(weights), tuple(tuple(_ranges(units)) for units in contents)


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
