"""What every random spec is drawn with: choosers, names, limits, sizes and batches.

Shared by tests/fuzz/strategies.py (chains of linears and norms) and
tests/fuzz/stacks.py (transformer stacks), so both draw names, meshes and batches alike.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

from specc import kinds

T = TypeVar("T")

MAX_SIZE = 2**40  # README: sizes are at most 2**40; group sizes at most 65536
MAX_GROUP = 65536
ACTIVATIONS = tuple(kinds.ACTIVATIONS)  # every activation kind specc registers
KINDS = ("linear", *ACTIVATIONS, "dropout", "layernorm")


# -- choosing ----------------------------------------------------------------------------


class Chooser(Protocol):
    def integer(self, low: int, high: int) -> int: ...

    def pick(self, options: Sequence[T]) -> T: ...

    def chance(self, percent: int) -> bool: ...


class RandomChooser:
    """Choices from a seeded `random.Random`: reproducible samples."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def chance(self, percent: int) -> bool:
        return self.rng.randrange(100) < percent


class DrawChooser:
    """Choices drawn by hypothesis, which shrinks them towards the first option and False."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self.draw = draw

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def pick(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(options))

    def chance(self, percent: int) -> bool:
        return self.draw(st.integers(0, 99)) >= 100 - percent


# -- names -------------------------------------------------------------------------------

_WORDS = ("fc", "up", "down", "proj", "head", "norm", "act", "drop", "mlp", "gate", "h", "z")
# Names that look harmless but collide with something in or around generated code:
# template variables, builtins, module attributes, soft keywords, oneflow's own
# dependencies. Any of them may be accepted or rejected; an accepted one must work.
TRICKY_NAMES = (
    "x",
    "hidden",
    "residual",
    "residual_1",
    "layer",
    "seed",
    "output",
    "shape",
    "bound",
    "rank",
    "weight",
    "bias",
    "features",
    "eps",
    "affine",
    "placement",
    "sbp",
    "in_features",
    "out_features",
    "world_size",
    "data",
    "tensor",
    "pipeline",
    "device",
    "kind",
    "name",
    "linear",
    "relu",
    "gelu",
    "dropout",
    "layernorm",
    "super",
    "print",
    "int",
    "float",
    "tuple",
    "list",
    "len",
    "range",
    "type",
    "object",
    "match",
    "case",
    "annotations",
    "argparse",
    "sys",
    "random_inputs",
    "check_world_size",
    "launch_help",
    "stage_ranks",
    "model_",
    "layers_",
    "share_memory",
    "get_submodule",
    "register_module",
    "named_parameters_",
    "extra_repr_",
    "b",
    "s",
    "_x",
    "a" * 32,
    "a" * 33,
)
TRICKY_PACKAGES = (
    "hidden",
    "seed",
    "model_x",
    "google",
    "setuptools",
    "pkg_resources",
    "typing_extensions",
    "yaml",
    "jinja2",
    "pydantic",
    "hypothesis",
    "pytest",
    "requests",
    "six",
    "packaging",
    "pip",
    "psutil",
    "tqdm",
    "rich",
    "a" * 32,
)
# Names the README's rule ("a lower-case identifier") refuses wherever they appear.
BAD_SYNTAX = (
    "My-Model",
    "my model",
    "1abc",
    "Upper",
    "class",
    "def",
    "import",
    "lambda",
    "None",
    "True",
    "f\u0441",  # Cyrillic es: reads as "fc"
    "\uff58",  # fullwidth x
    "x;import os",
    "x\n",
    "",
    "x.y",
    "\u00e9t\u00e9",
    "x\u200b",  # zero-width space
)
# ... and names that would break the code generated around them.
# Generated code's own names (specc.names) among them: the stream, what residuals keep,
# a repeat's loop variable and a repeat body's placement.
BAD_LAYER_NAMES = (*BAD_SYNTAX, "forward", "eval", "to", "cuda", "parameters", "state_dict",
                   "train", "float", "__init__", "hidden", "residual", "residual_3", "layer",
                   "placement")  # fmt: skip
BAD_INPUT_NAMES = (*BAD_SYNTAX, "self", "flow")
BAD_PACKAGES = (*BAD_SYNTAX, "oneflow", "json", "os", "sys", "numpy", "typing")


def safe_name(ch: Chooser, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A name any sound policy accepts: a word, an underscore and digits."""
    while True:
        word = ch.pick(_WORDS)
        if ch.chance(10):
            word = (word * 30)[: ch.integer(2, 28)]
        name = f"{word}_{ch.integer(0, 999)}"
        if name not in taken:
            return name


# -- drafts ------------------------------------------------------------------------------


class MeshSizes:
    """The mesh of a draft whose `parallel` holds the keys written under `parallel:`."""

    parallel: dict[str, int]

    @property
    def data(self) -> int:
        return self.parallel.get("data", 1)

    @property
    def tensor(self) -> int:
        return self.parallel.get("tensor", 1)

    @property
    def pipeline(self) -> int:
        return self.parallel.get("pipeline", 1)

    @property
    def world(self) -> int:
        return self.data * self.tensor * self.pipeline


# -- limits ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """How large and how varied the drawn specs are."""

    meshes: tuple[tuple[int, int, int], ...]  # (data, tensor, pipeline)
    features: tuple[int, int]
    large_sizes: bool  # sometimes sizes near 2**40
    max_batch: int
    max_layers: int
    max_middle: int  # dimensions between the batch and the features
    max_middle_size: int
    devices: tuple[str | None, ...]
    tricky_percent: int  # chance that a name comes from TRICKY_NAMES
    training_percent: int = 0  # chance of a `training:` batching section
    world_size_percent: int = 30
    # Transformer stacks (tests/fuzz/stacks.py): how often, and how long and wide.
    stack_percent: int = 0
    max_seq: int = 8
    max_vocab: int = 64
    max_times: int = 3


_SQUARE = tuple((d, t, 1) for d in (1, 2, 3, 4, 6, 8, 16) for t in (1, 2, 3, 4, 5, 8, 16))
_EDGES = ((65536, 1, 1), (1, 65536, 1), (256, 256, 1), (128, 256, 2))  # 65536 ranks at most
_PIPELINED = tuple((d, t, p) for d in (1, 2, 4) for t in (1, 2, 4) for p in (2, 4))
FUZZ = Limits(
    meshes=(*_SQUARE, *_EDGES, *_PIPELINED),
    features=(1, 64),
    large_sizes=True,
    max_batch=64,
    max_layers=8,
    training_percent=10,
    max_middle=3,
    max_middle_size=5,
    devices=(None, "auto", "cpu", "cuda"),
    tricky_percent=15,
    stack_percent=40,
    max_seq=12,
    max_vocab=300,
    max_times=4,
)
# What the launcher tests run: small, on 1, 2 or 4 CPU processes.
RUN = Limits(
    meshes=(
        *((1, 1, 1), (2, 1, 1), (1, 2, 1), (4, 1, 1), (1, 4, 1), (2, 2, 1)),
        *((1, 1, 2), (2, 1, 2), (1, 2, 2), (1, 1, 4)),
    ),
    features=(1, 32),
    large_sizes=False,
    max_batch=16,
    max_layers=6,
    training_percent=15,
    max_middle=1,
    max_middle_size=3,
    devices=(None, "auto", "cpu"),
    tricky_percent=15,
    stack_percent=40,
    max_seq=6,
    max_vocab=48,
    max_times=2,
)


def feature_size(ch: Chooser, limits: Limits, multiple: int = 1) -> int:
    """A feature size, a multiple of `multiple`; now and then a huge one."""
    if limits.large_sizes and ch.chance(4):
        top = MAX_SIZE // multiple
        return multiple * ch.pick((top, top - 1, 2**31 // multiple + 1, 1))
    low, high = limits.features
    return multiple * ch.integer(max(1, -(-low // multiple)), max(1, high // multiple))


def non_multiple(ch: Chooser, group: int) -> int:
    """A size in [1, 4 * group] that `group` (> 1) does not divide."""
    while True:
        size = ch.integer(1, 4 * group)
        if size % group:
            return size


def draw_parallel(ch: Chooser, limits: Limits) -> tuple[dict[str, int], tuple[int, int, int]]:
    """The keys written under `parallel:` (sizes of 1 often left out), and the mesh."""
    data, tensor, pipeline = ch.pick(limits.meshes)
    parallel: dict[str, int] = {}
    for key, size in (("data", data), ("tensor", tensor), ("pipeline", pipeline)):
        if size != 1 or ch.chance(20):
            parallel[key] = size
    if ch.chance(limits.world_size_percent):
        parallel["world_size"] = data * tensor * pipeline
    return parallel, (data, tensor, pipeline)


def draw_package(ch: Chooser, limits: Limits, draft_flags: dict[str, bool]) -> str:
    if ch.chance(limits.tricky_percent):
        draft_flags["tricky"] = True
        return ch.pick(TRICKY_PACKAGES)
    return safe_name(ch)


def draw_name(ch: Chooser, limits: Limits, taken: set[str], draft_flags: dict[str, bool]) -> str:
    if ch.chance(limits.tricky_percent):
        name = ch.pick(TRICKY_NAMES)
        if name not in taken:
            draft_flags["tricky"] = True
            return name
    return safe_name(ch, taken)


def draw_batch(
    ch: Chooser, limits: Limits, data: int, input_split: str | None
) -> tuple[int, dict[str, int] | None]:
    """The batch, divisible by data when split; or one a `training:` section multiplies out."""
    if ch.chance(limits.training_percent):
        micro = ch.integer(1, max(1, limits.max_batch // data // 2))
        accumulation = ch.integer(1, max(1, limits.max_batch // (data * micro)))
        training = {"micro_batch": micro}
        if accumulation > 1 or ch.chance(30):
            training["accumulation"] = accumulation
        if ch.chance(30):
            training["global_batch"] = micro * data * accumulation
        return micro * data * accumulation, training
    if input_split == "none":
        return ch.integer(1, limits.max_batch), None
    return data * ch.integer(1, max(1, limits.max_batch // data)), None
