"""The plan checks that need no layer: for a spec whose layers (or inputs) are not sound.

A spec with schema errors is still checked as far as its sound parts allow
(`specc.spec.Parsed`); when no layer can be walked, what is left is the mesh (world
size) and, when the inputs are sound, the batch: its split over data ranks and the
training step's micro-batches.
"""

from __future__ import annotations

from specc.diagnostics import Diagnostics
from specc.kinds.base import B, split
from specc.lower.inputs import Inputs
from specc.lower.mesh import build_mesh
from specc.lower.reporter import Reporter
from specc.lower.sbp import Constants, Grid
from specc.source import Document
from specc.spec import Spec


def check_setup(spec: Spec, document: Document, diagnostics: Diagnostics, *, inputs: bool) -> None:
    """Check the mesh and, with `inputs`, the inputs and the training batch."""
    parallel = spec.parallel
    grid = Grid(parallel.data, parallel.tensor, parallel.pipeline, sequence=parallel.sequence)
    build_mesh(spec, grid, document, diagnostics)
    if not inputs:
        return
    constants = Constants(grid, split(0) if spec.inputs[0].split == "data" else B)
    constants.activation()
    checked = Inputs(spec, grid, constants, Reporter(document, diagnostics))
    checked.tensors()
    checked.accumulation()
