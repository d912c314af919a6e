"""What every layer kind module is made of, and what it may ask of the compiler.

A kind module (`specc/kinds/<kind>.py`) holds everything specc knows about one layer
kind and ends with `KIND = Kind(...)`:

* `model`: the pydantic model of its YAML (`kind: ...` and its keys, with defaults and
  the descriptions the JSON Schema carries);
* `lower`: its rule, `lower(ctx, layer, x)`: the checks, the shapes and SBP it gives
  the running activation `x`, its parameters, and the module that implements it;
* `classes`: the classes it adds to the generated `layers.py`, as templates;
* `reference`: what it computes on one device, for the parity tests' twin;
* `fuzz`: how the random-spec generator draws it, and the mistakes it can make;
* `synonyms`: what other frameworks call it, for "did you mean";
* `cost`: what it keeps for backward, computes and communicates per micro-batch on
  one rank (`specc.kinds.costs`), each formula in the kind's docstring of `cost`.

The registry (`specc.kinds`) finds the modules; nothing else names a kind. This module
imports only pydantic and the plan's types; kinds reach the lowering through `Context`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from specc.diagnostics import Clause, Help, Values
from specc.kinds.costs import CostRule, elementwise
from specc.plan import Call, Expr, Layout, Param, Scalar, Shape, sbp_text

if TYPE_CHECKING:
    from specc.source import YamlPath

MAX_SIZE = 2**40  # far beyond any real layer, small enough that shape products stay exact
MAX_GROUP = 65536  # processes in one mesh axis

B = "B"


def split(axis: int) -> str:
    return f"S({axis})"


def divisors(size: int, limit: int = 64) -> list[int]:
    """The divisors of `size` up to `limit`, as help texts list them."""
    return [d for d in range(1, min(size, limit) + 1) if size % d == 0]


def listed(numbers: Sequence[int]) -> str:
    return ", ".join(map(str, numbers))


def nearest(values: Sequence[int], current: int, limit: int = 12) -> tuple[int, ...]:
    """The `limit` values nearest `current` (a help offers a few), in order."""
    candidates = [v for v in values if v != current]
    return tuple(sorted(sorted(candidates, key=lambda v: (abs(v - current), v))[:limit]))


def offer(text: str, key: str | tuple[str, ...], values: Sequence[Any], **options: Any) -> Help:
    """A help offering `values` for the layer's `key` (or a path of the spec), shown where
    `text` has `{}`; `specc.fixes` keeps the values that work for the whole spec."""
    return Help.of(Clause(text, Values(key, tuple(values), **options)))


def axis_sizes(size: int, current: int, axis: str = "tensor") -> Values:
    """Sizes of mesh axis `axis` that divide `size`, those nearest `current`."""
    return Values(("parallel", axis), nearest(divisors(size), current))


# -- the spec's field types ---------------------------------------------------------------


class StrictModel(BaseModel):
    """Strict (no "2" for 2, no true for 1), frozen, and unknown keys are errors."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# In the schema a size may also be a `${...}` reference to `sizes:`, resolved before
# validation, so editors accept the zoo specs as written.
REFERENCE_SCHEMA = {"type": "string", "pattern": "^\\$\\{.+\\}$"}
Size = Annotated[
    int,
    Field(ge=1, le=MAX_SIZE),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_SIZE}, REFERENCE_SCHEMA]}
    ),
]
GroupSize = Annotated[
    int,
    Field(ge=1, le=MAX_GROUP),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_GROUP}, REFERENCE_SCHEMA]}
    ),
]
Name = Annotated[
    str,
    Field(
        description="A Python identifier (lower case, digits, underscores) used in generated code.",
        examples=["fc1"],
    ),
]
StageIndex = Annotated[
    int,
    Field(ge=0, le=65535),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0}, REFERENCE_SCHEMA]}),
]


class LayerModel(StrictModel):
    """The keys every layer has; each kind's model adds `kind` and its own."""

    if TYPE_CHECKING:
        kind: str  # each kind's model declares it, a Literal of its own names

    name: Name | None = Field(
        None,
        description="Attribute name in the generated model; defaults to `<kind>_<index>`.",
        examples=["fc1"],
    )
    stage: StageIndex | None = Field(
        None,
        description=(
            "Pipeline stage of a top-level layer (0 = first). Layers without one follow the "
            "layer before them; when no layer has one, stages are balanced by estimated time "
            "and memory."
        ),
        examples=[0],
    )

    # A repeat's body is a module class of its own; a residual's is inlined.
    opens_scope: ClassVar[bool] = False

    def sublayers(self) -> Sequence[LayerModel]:
        """The layers inside this one (a residual's or a repeat's body)."""
        return ()

    def listed_stages(self) -> Sequence[int] | None:
        """The stage of each repetition, where the spec lists them (a repeat's `stages`)."""
        return None

    def sees_later_positions(self) -> bool:
        """Whether an output position depends on later input positions.

        Next-token training needs a model where none does (a causal one).
        """
        return False


# -- lowering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """The activation while walking the layers: shape, dtype and its two mesh-axis SBPs."""

    shape: Shape
    data_sbp: str  # "S(0)" or "B"
    tensor_sbp: str  # "B" or "S(k)"
    dtype: str = "float32"
    vocab: int | None = None  # for logits: the real (unpadded) vocabulary


@dataclass(frozen=True)
class Table:
    """An embedding table another layer may use (a tied LM head)."""

    layer: str
    vocab: int
    padded: int
    hidden: int
    path: YamlPath | None = None  # where the embedding is in the spec


@dataclass(frozen=True)
class Lowered:
    """What a layer's rule decided: its module, parameters and the activation it leaves.

    `input` is the activation the layer takes after any relayout the rule asked for
    (`Context.whole`, `Context.split_features`). `module` is the constructor without its
    placement, which the walk adds for classes that take one.
    """

    module: Call
    input: Running
    output: Running
    params: Sequence[Param]
    comment: str  # the SBP algebra, for the plan and the generated comments
    attributes: Mapping[str, Scalar] = field(default_factory=dict)
    call_arguments: tuple[Expr, ...] = ()


class Context(Protocol):
    """What a kind's rule may ask of the lowering walk, about the layer being lowered."""

    @property
    def name(self) -> str:
        """The layer's attribute name (given, or `<kind>_<index>`)."""

    @property
    def kind(self) -> str: ...

    @property
    def path(self) -> YamlPath:
        """Where the layer is in the spec, e.g. ("layers", 2)."""

    @property
    def data(self) -> int: ...

    @property
    def tensor(self) -> int: ...

    @property
    def top(self) -> bool:
        """At the top level of `layers` (not inside a repeat)."""

    @property
    def first_input(self) -> str:
        """The model input the stream starts from."""

    @property
    def init_std(self) -> float | None:
        """The spec's `init.std`: weights ~ normal(0, std); None: the classes' defaults."""

    @property
    def output_std(self) -> float | None:
        """The std of the output projections of attention and MLP (GPT-2's scaled init)."""

    def error(
        self, code: str, message: str, key: str | None = None, help: str | Help | None = None
    ) -> None:
        """Report at the layer, or at its key `key`; a help's offered values (`Values`) may
        name the layer's keys."""

    def check_divisible(
        self,
        size: int,
        key: str,
        *,
        label: str | None = None,
        what: str | None = None,
        help: str | Help | None = None,
    ) -> bool:
        """Report E301 at `key` unless the tensor-parallel size divides `size`.

        The message reads "<label> <size> of <what> `<name>` ...": `label` defaults to
        the key, `what` to the layer's kind.
        """

    def expect_features(self, x: Running, what: str) -> bool: ...

    def expect_sequence(self, x: Running, what: str) -> bool: ...

    def whole(self, x: Running, what: str) -> Running:
        """`x` with whole features: an all-gather where they are split (and a W500)."""

    def split_features(self, x: Running) -> Running:
        """`x` split on its last dimension over tensor ranks: a local slice."""

    def stream(self, x: Running) -> Running:
        """`x` as a block leaves it: under sequence parallelism a [batch, seq, hidden]
        output is reduce-scattered over the sequence; otherwise whole."""

    def whole_sequence(self, x: Running) -> Running:
        """`x` with the whole sequence: an all-gather where sequence parallelism split it."""

    def layout(self, x: Running) -> Layout: ...

    def param(
        self,
        name: str,
        shape: Shape,
        tensor_sbp: str,
        valid_rows: int | None = None,
        *,
        decay: bool = True,
    ) -> Param:
        """A parameter replicated over data ranks, `tensor_sbp` over tensor ranks; a
        padded vocabulary's table says how many of its rows are real (`valid_rows`).
        Weight decay skips biases, and whatever says `decay=False` (a norm's scale)."""

    def read_input(self, name: str, key: str, x: Running, high: int, what: str) -> bool:
        """The layer reads model input `name` (int64 [batch, seq], values below `high`)."""

    def sample_ids_below(self, high: int) -> None:
        """The first input holds ids below `high` (random_inputs() draws them so)."""

    def offer_table(self, table: Table) -> None:
        """Make an embedding table available to layers after this one."""

    def table(self, name: str) -> Table | None:
        """An embedding table offered before this layer."""

    def table_names(self) -> list[str]: ...

    def activation(self, name: str) -> Call:
        """The module computing the element-wise activation kind `name`."""

    def share_stage_with(self, layer: str) -> None:
        """Run on `layer`'s pipeline stage (whose weights this layer uses); the weights
        are counted once, with `layer`, when stages are balanced."""

    def sequence(self, layers: Sequence[LayerModel], x: Running) -> Running:
        """Lower a body's layers in this scope (a residual)."""

    def residual(self, layers: Sequence[LayerModel], x: Running) -> tuple[str, Running]:
        """Keep `x` in a variable, lower `layers` after it; the variable and their output."""

    def add_residual(self, variable: str, x: Running) -> None:
        """Add the kept `variable` to the stream, whose layout is `x`."""

    def repeat(self, layers: Sequence[LayerModel], times: int, x: Running) -> Running:
        """Lower a repeat's body as a module class of its own, applied `times` times."""


Rule = Callable[[Context, Any, Running], "Lowered | Running | None"]


def init_kwargs(std: float | None, key: str = "init_std") -> tuple[tuple[str, Expr], ...]:
    """`init_std=` for a constructor, when the spec sets an init."""
    return () if std is None else ((key, std),)


# -- generated classes --------------------------------------------------------------------


@dataclass(frozen=True)
class ClassTemplate:
    """A class (or function) of the generated `layers.py`.

    `source` is a Jinja template, though most are plain Python: a class written once for
    every mesh, reading its layout from the SBP constants of parallel.py it names.
    """

    name: str
    source: str
    constants: tuple[str, ...] = ()  # SBP constants of parallel.py it uses
    sequence_constants: tuple[str, ...] = ()  # and those it uses under sequence parallelism
    needs: tuple[str, ...] = ()  # classes it builds on, defined before it
    uses_math: bool = False
    placement: bool = True  # its constructor takes `placement=`


# -- the random-spec generator -------------------------------------------------------------

T = TypeVar("T")


class FuzzStream(Protocol):
    """What a kind's fuzz strategy sees: random choices and the stream it must fit."""

    shape: Shape  # the activation entering the layer
    tensor: int
    keep: int | None  # the feature size the layer must return to, where the stack needs it

    def integer(self, low: int, high: int) -> int: ...

    def pick(self, options: Sequence[T]) -> T: ...

    def chance(self, percent: int) -> bool: ...

    def feature_size(self, multiple: int = 1) -> int:
        """A feature size; a multiple of `multiple`."""

    def hidden(self) -> int:
        """A hidden size, usually a multiple of tensor."""

    def read_input(self) -> str:
        """Declare an int64 [batch, seq] input for the layer to read; its name."""

    def table(self) -> tuple[str, int] | None:
        """The (name, hidden) of an embedding table a head may tie to."""

    def vocab(self) -> int:
        """A vocabulary size; now and then one at the edge of what specc accepts."""

    def non_multiple(self) -> int:
        """A size that tensor (> 1) does not divide."""

    def times(self) -> int:
        """A number of repetitions."""


@dataclass(frozen=True)
class Drawn:
    """A layer a fuzz strategy drew: its YAML keys (besides kind and name), its output."""

    fields: dict[str, Any]
    shape: Shape
    table: int | None = None  # the hidden size of an embedding table it offers to heads
    takes: tuple[Shape, str] | None = None  # a start layer: the model input's shape, dtype
    body: bool = False  # a residual or repeat: the generator draws a body that keeps the shape
    tied: bool = False  # uses the table of another layer, and so runs on its pipeline stage
    parameters: bool = False  # the drawn layer holds parameters


@dataclass(frozen=True)
class Mistake:
    """A single mistake made in a drawn layer's keys, and the codes specc must report."""

    name: str
    codes: frozenset[str]
    # For a divisibility mistake that tests/launch/soundness.py forces into plain OneFlow
    # to show it really breaks: which one, and its numbers.
    forced: str | None = None
    facts: dict[str, int] = field(default_factory=dict)
    input_shape: Shape | None = None  # a start layer's mistake: the model input it gets


# Roles in a stack: `start` turns the model input into [batch, seq, hidden], `sequence`
# works on [batch, seq, hidden], `top` only at the top level, `features` on
# [batch, features], `end` closes a stack.
ROLES = ("start", "sequence", "top", "features", "end")


@dataclass(frozen=True)
class Fuzz:
    """How tests/fuzz draws a kind: `draw` fits it to the stream, or returns None."""

    draw: Callable[[FuzzStream], Drawn | None]
    roles: frozenset[str]
    weight: int = 1
    mistakes: tuple[Callable[[FuzzStream, dict[str, Any]], Mistake | None], ...] = ()


# -- the kind -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Twin:
    """What a kind's reference computes from, on one device (the parity tests' twin).

    The tensors are local OneFlow tensors holding the whole value; `flow` is the
    oneflow module, passed in so that specc itself never imports it.
    """

    flow: Any
    x: Any  # the layer's input
    params: Mapping[str, Any]  # its parameters, by their names in the layer ("query.weight")
    attributes: Mapping[str, Any]  # its settings, as the plan states them
    inputs: Mapping[str, Any]  # the model's inputs, by name
    model: Mapping[str, Any]  # every parameter of the model, by full name (a tied table)


Reference = Callable[[Twin], Any]


@dataclass(frozen=True)
class Kind:
    """Everything specc knows about one layer kind (see the module docstring)."""

    model: type[LayerModel]
    lower: Rule
    # Where the kind is listed: help texts, the schema, the classes of layers.py. Kinds are
    # spaced by 10 within a family, 100 between families, so a new one fits between.
    order: int
    classes: tuple[ClassTemplate, ...] = ()
    reference: Reference | None = None  # what it computes on one device
    fuzz: Fuzz | None = None
    synonyms: tuple[str, ...] = ()
    activation: Call | None = None  # an element-wise activation: the module computing it
    cost: CostRule | None = None  # None: keeps nothing, computes nothing worth counting

    @property
    def names(self) -> tuple[str, ...]:
        """The `kind:` values the model accepts."""
        annotation = self.model.model_fields["kind"].annotation
        return tuple(getattr(annotation, "__args__", ()))

    @property
    def name(self) -> str:
        return self.names[0]


# -- element-wise kinds --------------------------------------------------------------------


def activation(
    model: type[LayerModel],
    module: Call,
    reference: Reference,
    *,
    order: int,
    synonyms: tuple[str, ...] = (),
) -> Kind:
    """An element-wise activation: an `nn.` module, applied in whatever layout it meets.

    Every activation can also be an `mlp`'s `activation:`, computed there on the split
    features.
    """

    def lower(ctx: Context, layer: LayerModel, x: Running) -> Lowered:
        ctx.expect_features(x, f"{layer.kind} `{ctx.name}`")
        comment = f"{sbp_text(ctx.layout(x).sbp)}, element-wise"
        return Lowered(module, x, x, (), comment)

    fuzz = Fuzz(
        lambda stream: Drawn({}, stream.shape),
        roles=frozenset({"sequence", "features"}),
    )
    return Kind(
        model,
        lower,
        order,
        reference=reference,
        fuzz=fuzz,
        synonyms=synonyms,
        activation=module,
        cost=elementwise,
    )
