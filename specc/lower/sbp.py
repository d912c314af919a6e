"""SBP on the (data, tensor) mesh: collapsing tuples, local shapes, and the named constants.

An activation's layout is tracked as two entries, one per mesh axis (`Running.data_sbp`
and `.tensor_sbp`); `Grid.nd` collapses them the way LiBai's `get_nd_sbp` does, keeping
the axes of size > 1. `Constants` names the SBP tuples the generated code uses, each
declared once in parallel.py.
"""

from __future__ import annotations

from specc.kinds.base import B, Running, split
from specc.plan import Layout, Param, SbpConstant, Shape

_COMMENTS = {
    "ACTIVATION": "activations: batch over data ranks",
    "FEATURE_SPLIT_2D": "[batch, features] activations split on features",
    "FEATURE_SPLIT_3D": "[batch, seq, features] activations split on features",
    "COLUMN_SPLIT": "col weights, vocabulary: rows over tensor ranks",
    "ROW_SPLIT": "row weight: columns over tensor ranks",
    "REPLICATED": "whole on every rank",
    "STREAM": "[batch, seq, hidden] between blocks: seq over tensor ranks",
    "POSITIONS": "rows of a position table, as the sequence is split",
}
# The layout of the constants that layers.py's classes name, over (data, tensor).
_CLASS_CONSTANTS = {
    "COLUMN_SPLIT": split(0),
    "ROW_SPLIT": split(1),
    "REPLICATED": B,
    "POSITIONS": split(0),
}


class Grid:
    """The mesh's sizes, and what they make of shapes and SBP."""

    def __init__(self, data: int, tensor: int, pipeline: int, *, sequence: bool = False) -> None:
        self.data, self.tensor, self.pipeline = data, tensor, pipeline
        # Sequence parallelism: only tensor ranks can split the sequence.
        self.sequence = sequence and tensor > 1
        self.axes = tuple(axis for axis, size in (("data", data), ("tensor", tensor)) if size > 1)
        # Every layer asks for the layouts of its input and output, and a long spec
        # repeats a few of them thousands of times: each is computed once (issue 17).
        self._layouts: dict[tuple[Shape, str, str], Layout] = {}

    @property
    def world(self) -> int:
        return self.data * self.tensor * self.pipeline

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
        key = (shape, data_sbp, tensor_sbp)
        found = self._layouts.get(key)
        if found is None:
            sbp = self.nd(data_sbp, tensor_sbp)
            found = self._layouts[key] = Layout(shape, sbp, self.local(shape, sbp))
        return found

    def streams(self, x: Running) -> bool:
        """Whether `x` rests split over the sequence: [batch, seq, hidden] floats under
        sequence parallelism."""
        return self.sequence and len(x.shape) == 3 and x.dtype == "float32"

    def of(self, x: Running) -> Layout:
        return self.layout(x.shape, x.data_sbp, x.tensor_sbp)

    def param(
        self,
        name: str,
        shape: Shape,
        tensor_sbp: str,
        valid_rows: int | None = None,
        *,
        decay: bool = True,
    ) -> Param:
        """A parameter: replicated over data ranks, `tensor_sbp` over tensor ranks."""
        rows = valid_rows if valid_rows is not None and valid_rows < shape[0] else None
        decay = decay and not name.endswith("bias")
        return Param(name, self.layout(shape, B, tensor_sbp), rows, decay)


class Constants:
    """The SBP constants of the generated parallel.py, declared as they are needed."""

    def __init__(self, grid: Grid, data_sbp: str) -> None:
        self.grid = grid
        self.data_sbp = data_sbp  # how activations (and inputs) are laid out over data ranks
        self.declared: dict[str, SbpConstant] = {}

    def constant(self, name: str, data_sbp: str, tensor_sbp: str) -> str:
        sbp = self.grid.nd(data_sbp, tensor_sbp)
        comment = _COMMENTS.get(name, "activations split on their last dimension")
        self.declared.setdefault(name, SbpConstant(name, sbp, comment))
        assert self.declared[name].sbp == sbp, (name, sbp)  # one name, one layout
        return name

    def activation(self) -> str:
        """Activations whole over tensor ranks, batch over data ranks (or replicated)."""
        return self.constant("ACTIVATION", self.data_sbp, B)

    def feature_split(self, x: Running) -> str:
        """The constant of `x`'s SBP, split on its last dimension: one per rank of
        activations, since [batch, features] and [batch, seq, features] split on
        different dimensions."""
        self.activation()
        return self.constant(f"FEATURE_SPLIT_{len(x.shape)}D", x.data_sbp, x.tensor_sbp)

    def stream(self) -> str:
        """[batch, seq, hidden] activations under sequence parallelism: the batch over data
        ranks, the sequence over tensor ranks."""
        return self.constant("STREAM", self.data_sbp, split(1))

    def for_class(self, name: str) -> str:
        """A constant a class of layers.py names."""
        if name == "ACTIVATION":
            return self.activation()
        if name == "STREAM":
            return self.stream()
        return self.constant(name, B, _CLASS_CONSTANTS[name])

    def used(self, names: set[str]) -> tuple[SbpConstant, ...]:
        return tuple(self.declared[name] for name in sorted(names))
