"""The spec, format version 1, as pydantic models.

These models define what a user may write, and `schemas/specc.schema.json` is exported
from them, so every field carries a description and an example for editors. They hold
no parallel reasoning: divisibility and shapes are checked while lowering to a plan.
Models are strict (no "2" for 2, no true for 1) and forbid unknown keys.

Each layer kind's model lives in its kind's module (`specc/kinds/`); `Layer`, the union
of them all told apart by `kind:`, is assembled here from the registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from specc import kinds
from specc.kinds.base import GroupSize, LayerModel, Name, Size, StrictModel

FORMAT_VERSION = 1

if TYPE_CHECKING:
    Layer = LayerModel
else:
    Layer = Annotated[Union[tuple(kind.model for kind in kinds.KINDS)], Field(discriminator="kind")]  # noqa: UP007
    ActivationName = Literal[tuple(kinds.ACTIVATIONS)]
    for _kind in kinds.KINDS:
        _kind.model.model_rebuild(
            _types_namespace={"Layer": Layer, "ActivationName": ActivationName}
        )

LAYER_KINDS: tuple[str, ...] = kinds.NAMES


class Parallel(StrictModel):
    """The device mesh: ranks = data x tensor x pipeline, laid out stage-major."""

    data: GroupSize = Field(
        1,
        description="Data-parallel size: replicas that each see a slice of the batch.",
        examples=[2],
    )
    tensor: GroupSize = Field(
        1, description="Tensor-parallel size: ranks that split each weight.", examples=[2]
    )
    pipeline: GroupSize = Field(
        1, description="Pipeline-parallel size: stages the layers are cut into.", examples=[1]
    )
    world_size: GroupSize | None = Field(
        None,
        description="Total number of processes; when given it must equal data x tensor x pipeline.",
        examples=[4],
    )


class Input(StrictModel):
    """A model input; the first dimension is the batch."""

    name: Name = Field(description="Argument name of the model's forward().", examples=["x"])
    shape: list[Size] = Field(
        min_length=2,
        max_length=8,
        description="Global shape: the batch, then one or more feature dimensions.",
        examples=[[32, 1024]],
    )
    dtype: Literal["float32", "int64"] = Field(
        "float32", description="Element type.", examples=["float32"]
    )
    split: Literal["data", "none"] = Field(
        "data",
        description=(
            "`data`: the batch is split over data-parallel ranks; "
            "`none`: every rank sees the whole input (broadcast)."
        ),
        examples=["data"],
    )


class Loss(StrictModel):
    """The training loss on the model's output (the logits)."""

    kind: Literal["cross_entropy"] = Field(
        description="Cross-entropy over the last dimension; works on vocab-split logits.",
        examples=["cross_entropy"],
    )


class Training(StrictModel):
    """How a training step is batched: micro-batches, accumulated, over data ranks."""

    micro_batch: Size = Field(
        description="Samples per data-parallel rank in one micro-batch.", examples=[4]
    )
    accumulation: Size = Field(
        1,
        description="Micro-batches per step (gradient accumulation); fills the pipeline.",
        examples=[4],
    )
    global_batch: Size | None = Field(
        None,
        description="Samples per step; must equal micro_batch x data x accumulation.",
        examples=[32],
    )


class Spec(StrictModel):
    """A specc model spec: what to build and how to lay it out on devices."""

    specc: Literal[1] = Field(description="Spec format version.", examples=[1])

    @field_validator("specc", mode="before")
    @classmethod
    def _exactly_an_integer(cls, value: Any) -> Any:
        """`true` and `1.0` equal 1 in Python but are not a format version."""
        if type(value) is not int:
            raise PydanticCustomError("literal_error", "Input should be 1", {"expected": "1"})
        return value

    name: Name = Field(
        description="Name of the generated Python package.", examples=["huge_mlp_2d"]
    )
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto",
        description="`auto` uses cuda when available at run time, else cpu.",
        examples=["auto"],
    )
    parallel: Parallel = Field(
        default_factory=Parallel, description="Parallel sizes of the device mesh."
    )
    inputs: list[Input] = Field(min_length=1, description="The model inputs, in argument order.")
    sizes: dict[Name, Size] = Field(
        default_factory=dict,
        description=(
            "Named sizes, used elsewhere as `${name}` or `${4 * name}` and overridable with "
            "`specc build --set name=value`."
        ),
        examples=[{"hidden": 768, "heads": 12}],
    )
    layers: list[Layer] = Field(min_length=1, description="The layers, applied in order.")
    outputs: list[Name] | None = Field(
        None,
        min_length=1,
        description=(
            "Top-level layers whose outputs the model returns, in order (a tuple when more "
            "than one); the loss takes the last. Defaults to the last layer."
        ),
        examples=[["encoder", "pooler_activation"]],
    )
    loss: Loss | None = Field(None, description="The training loss, computed by Model.loss().")
    training: Training | None = Field(
        None, description="Batching of a training step (needed to check a pipeline)."
    )


Spec.model_rebuild()
