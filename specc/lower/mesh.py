"""The device mesh: world size, the ranks of each pipeline stage, and how to launch it.

Ranks are laid out stage-major, as LiBai does: rank = stage * data * tensor +
d * tensor + t, so a tensor-parallel group is consecutive and stays on one machine
whenever the processes per machine are a multiple of the tensor size.
"""

from __future__ import annotations

from specc.diagnostics import Clause, Diagnostics, Help, Values
from specc.lower.sbp import Grid
from specc.plan import Launch, Mesh, RankGrid, Ref, Stage, Subscript
from specc.source import Document
from specc.spec import Spec

MAX_WORLD = 65536  # processes in one mesh; more is a typo, not a cluster
STAGES = "STAGES"  # parallel.py's placement of each pipeline stage
PLACEMENT = "PLACEMENT"  # parallel.py's placement of stage 0, where inputs are made


def build_mesh(spec: Spec, grid: Grid, document: Document, diagnostics: Diagnostics) -> Mesh:
    """The mesh, with every stage's ranks; no stages when it is too large to plan."""
    parallel = spec.parallel
    world = grid.world
    sizes = f"data {grid.data} x tensor {grid.tensor} x pipeline {grid.pipeline}"
    if parallel.world_size is not None and parallel.world_size != world:
        diagnostics.error(
            "E300",
            f"world_size {parallel.world_size} does not equal {sizes} = {world}",
            document.span(("parallel", "world_size")),
            help=Help.of(
                Clause("set world_size: {}", Values(("parallel", "world_size"), (world,))),
                f"change the parallel sizes so their product is {parallel.world_size}",
            ),
        )
    stages: tuple[Stage, ...] = ()
    if world > MAX_WORLD:
        diagnostics.error(
            "E204",
            f"{sizes} = {world:,} processes; specc plans meshes of at most {MAX_WORLD:,}",
            document.span(("parallel",)),
            help="use smaller parallel sizes",
        )
    else:
        stages = tuple(Stage(s, stage_ranks(grid, s)) for s in range(grid.pipeline))
    return Mesh(grid.data, grid.tensor, grid.pipeline, spec.device, grid.axes, stages)


def stage_ranks(grid: Grid, stage: int) -> RankGrid:
    """LiBai's stage-major layout: rank = stage * data * tensor + d * tensor + t."""
    first = stage * grid.data * grid.tensor
    if len(grid.axes) == 2:
        return tuple(
            tuple(first + d * grid.tensor + t for t in range(grid.tensor)) for d in range(grid.data)
        )
    return tuple(range(first, first + grid.data * grid.tensor))


def stage_placement(grid: Grid, stage: int) -> Ref | Subscript:
    """The placement a top-level layer on `stage` is built on, as parallel.py names it."""
    return Subscript(Ref(STAGES), stage) if grid.pipeline > 1 else Ref(PLACEMENT)


def launch(package: str, grid: Grid) -> Launch:
    """The launch command, and the machine counts a multi-node launch may use.

    Tensor-parallel ranks talk at every layer, so a tensor group must not straddle
    machines: the processes per machine must be a multiple of the tensor size.
    """
    world = grid.world
    single = f"python -m oneflow.distributed.launch --nproc_per_node {world} -m {package}"
    nodes = tuple(
        n
        for n in range(2, min(world, MAX_WORLD) + 1)
        if world % n == 0 and (world // n) % grid.tensor == 0
    )
    return Launch(single, nodes)
