"""Stage 3: lower a validated spec to a plan, checking the parallel layout on the way.

This is where the parallel reasoning lives: the mesh and its placements, the SBP of
every weight and activation (LiBai's conventions, ../shared/research/libai.md section 1),
shape inference through the layers, pipeline stages, and the divisibility every split
needs. Each problem becomes a located diagnostic, and lowering goes on after one so that
a user sees all of them at once.

  walk.py      the walk over the spec: mesh, inputs, structure (residual, repeat), plan
  layers.py    one rule per layer kind: checks, parameters and SBP
  pipeline.py  which layer runs on which pipeline stage
  common.py    what they share
"""

from __future__ import annotations

from specc.diagnostics import Diagnostics
from specc.lower.pipeline import assign_stages
from specc.lower.walk import Lowering
from specc.plan import Plan
from specc.source import Document
from specc.spec import Spec

__all__ = ["assign_stages", "lower"]


def lower(spec: Spec, document: Document, diagnostics: Diagnostics) -> Plan | None:
    """Lower `spec` to a plan; report every problem and return None if lowering found one.

    With a pipeline, a first pass (whose diagnostics are dropped: the second repeats
    them) weighs each top-level unit, so the stages can be balanced before placements
    are written into the plan.
    """
    errors_before = diagnostics.error_count
    weights = None
    if spec.parallel.pipeline > 1:
        scout = Lowering(spec, document, Diagnostics(), None)
        scout.run()
        weights = scout.unit_weights
    stages = assign_stages(spec, document, diagnostics, weights)
    plan = Lowering(spec, document, diagnostics, stages).run()
    return plan if diagnostics.error_count == errors_before else None
