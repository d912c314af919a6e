"""The spec, format version 1, as pydantic models.

These models define what a user may write, and `schemas/specc.schema.json` is exported
from them, so every field carries a description and an example for editors. They hold
no parallel reasoning: divisibility and shapes are checked while lowering to a plan.
Models are strict (no "2" for 2, no true for 1) and forbid unknown keys.
"""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1
MAX_SIZE = 2**40  # far beyond any real layer, small enough that shape products stay exact


class StrictModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


Size = Annotated[int, Field(ge=1, le=MAX_SIZE)]
GroupSize = Annotated[int, Field(ge=1, le=65536)]
Name = Annotated[
    str,
    Field(
        description="A Python identifier (lower case, digits, underscores) used in generated code.",
        examples=["fc1"],
    ),
]


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
    dtype: Literal["float32"] = Field("float32", description="Element type.", examples=["float32"])
    split: Literal["data", "none"] = Field(
        "data",
        description=(
            "`data`: the batch is split over data-parallel ranks; "
            "`none`: every rank sees the whole input (broadcast)."
        ),
        examples=["data"],
    )


class _Layer(StrictModel):
    name: Name | None = Field(
        None,
        description="Attribute name in the generated model; defaults to `<kind>_<index>`.",
        examples=["fc1"],
    )


class Linear(_Layer):
    """y = x W^T + b, with W of shape [out_features, in_features]."""

    kind: Literal["linear"]
    in_features: Size = Field(description="Size of the input's last dimension.", examples=[1024])
    out_features: Size = Field(description="Size of the output's last dimension.", examples=[4096])
    bias: bool = Field(True, description="Whether the layer adds a learned bias.", examples=[True])
    split: Literal["col", "row", "data", "none"] = Field(
        "data",
        description=(
            "How the weight is split over tensor-parallel ranks (LiBai's words): "
            "`col` splits out_features (output stays split), `row` splits in_features "
            "(output is all-reduced), `data`/`none` replicate it."
        ),
        examples=["col"],
    )


class Activation(_Layer):
    """An element-wise activation; keeps the layout of its input."""

    kind: Literal["gelu", "relu", "silu", "tanh", "sigmoid"]


class Dropout(_Layer):
    """Zeroes elements with probability p during training; keeps the layout of its input."""

    kind: Literal["dropout"]
    p: float = Field(
        ge=0.0, lt=1.0, description="Probability of zeroing an element.", examples=[0.1]
    )


class LayerNorm(_Layer):
    """Normalises the last dimension; needs it whole on every rank."""

    kind: Literal["layernorm"]
    features: Size | None = Field(
        None,
        description="Size of the normalised (last) dimension; inferred when omitted.",
        examples=[1024],
    )
    eps: float = Field(1e-5, gt=0.0, description="Added to the variance.", examples=[1e-5])
    affine: bool = Field(True, description="Learn a scale and a shift.", examples=[True])


Layer = Annotated[Linear | Activation | Dropout | LayerNorm, Field(discriminator="kind")]
LAYER_KINDS: tuple[str, ...] = tuple(
    kind
    for model in (Linear, Activation, Dropout, LayerNorm)
    for kind in typing.get_args(model.model_fields["kind"].annotation)
)


class Spec(StrictModel):
    """A specc model spec: what to build and how to lay it out on devices."""

    specc: Literal[1] = Field(description="Spec format version.", examples=[1])
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
    layers: list[Layer] = Field(min_length=1, description="The layers, applied in order.")
