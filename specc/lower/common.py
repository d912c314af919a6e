"""What the lowering modules share: the running activation, scopes, SBP spellings, help texts."""

from __future__ import annotations

from dataclasses import dataclass, field

from specc.codeformat import call_lines
from specc.plan import Shape, Step

B = "B"


def split(axis: int) -> str:
    return f"S({axis})"


ACTIVATIONS = {
    "gelu": "GELU",
    "relu": "ReLU",
    "silu": "SiLU",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
}


@dataclass(frozen=True)
class Running:
    """The running tensor while walking the layers: shape, dtype and its two mesh-axis SBPs."""

    shape: Shape
    data_sbp: str  # "S(0)" or "B"
    tensor_sbp: str  # "B" or "S(k)"
    dtype: str = "float32"
    vocab: int | None = None  # for logits: the real (unpadded) vocabulary
    stage: int = 0


@dataclass
class Scope:
    """A module class being filled: the top-level Model or one repeat body."""

    placement: str
    reads: str  # the variable the next step reads
    stage: int | None = 0  # None in a repeat body: each repetition has its own
    steps: list[Step] = field(default_factory=list)
    inputs_used: list[str] = field(default_factory=list)  # extra inputs forward takes
    residual_depth: int = 0
    top: bool = True

    def use_input(self, name: str) -> None:
        if name not in self.inputs_used:
            self.inputs_used.append(name)


def run_lengths(stages: tuple[int, ...]) -> tuple[str, ...]:
    """`[0] * 6`, `[1] * 6`: terms of a stage list whose size does not grow with the
    layer count."""
    runs: list[list[int]] = []
    for stage in stages:
        if runs and runs[-1][0] == stage:
            runs[-1][1] += 1
        else:
            runs.append([stage, 1])
    return tuple(f"[{stage}] * {count}" for stage, count in runs)


def ranges(units: list[str]) -> list[str]:
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


def signature(parameters: tuple[str, ...]) -> tuple[str, ...]:
    typed = ["self", *(f"{p}: flow.Tensor" for p in parameters)]
    return call_lines(4, "def forward", typed, ") -> flow.Tensor:")


def sbp_text(sbp: tuple[str, ...]) -> str:
    return "(" + ", ".join(sbp) + ")"


def divisors(size: int, limit: int = 64) -> list[int]:
    return [d for d in range(1, min(size, limit) + 1) if size % d == 0]


def divisibility_help(size: int, group: int, group_name: str) -> str:
    below = size - size % group
    above = below + group
    nearest = f"{below} or {above}" if below > 0 else str(above)
    return (
        f"make the size a multiple of {group} ({nearest}), or use a {group_name} size that "
        f"divides {size}: {', '.join(map(str, divisors(size)))}"
    )
