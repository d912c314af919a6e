"""Stage 3: lower a validated spec to a plan, checking the parallel layout on the way.

This is where the parallel reasoning lives: the mesh and its placements, the SBP of
every weight and activation (LiBai's conventions), shape inference through the
layers, pipeline stages, and the divisibility every split needs. Each problem becomes
a located diagnostic, and lowering goes on after one so that a user sees all of them
at once. Each layer kind's own rule lives in its module under `specc/kinds/`.

  mesh.py      the mesh: world size, the ranks of each stage, the launch command
  sbp.py       SBP tuples over the mesh, local shapes, the named SBP constants
  inputs.py    the inputs, the batching of a training step, the loss
  relayout.py  all-gathers and local slices between layers
  walk.py      the one walk over the layers: every kind's rule, residuals, repeats
  staging.py   which pipeline stage each top-level layer runs on
  assemble.py  the plan, from the walk and the stages
  reporter.py  located diagnostics and shared help texts
"""

from __future__ import annotations

from specc.diagnostics import Diagnostics
from specc.kinds.base import B, split
from specc.lower.assemble import assemble
from specc.lower.inputs import Inputs
from specc.lower.reporter import Reporter
from specc.lower.sbp import Constants, Grid
from specc.lower.staging import assign_stages
from specc.lower.walk import Walk
from specc.plan import Plan
from specc.source import Document
from specc.spec import Spec

__all__ = ["lower"]


def lower(spec: Spec, document: Document, diagnostics: Diagnostics) -> Plan | None:
    """Lower `spec` to a plan; report every problem and return None if lowering found one."""
    errors_before = diagnostics.error_count
    parallel = spec.parallel
    grid = Grid(parallel.data, parallel.tensor, parallel.pipeline, sequence=parallel.sequence)
    report = Reporter(document, diagnostics)
    constants = Constants(grid, split(0) if spec.inputs[0].split == "data" else B)
    constants.activation()
    inputs = Inputs(spec, grid, constants, report)
    walk = Walk(spec, grid, constants, inputs, report)
    output = walk.run()
    stages = assign_stages(spec, walk.units, walk.layers, report)
    plan = assemble(walk, output, stages)
    return plan if diagnostics.error_count == errors_before else None
