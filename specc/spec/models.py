"""The spec, format version 1, as pydantic models.

These models define what a user may write, and `schemas/specc.schema.json` is exported
from them, so every field carries a description and an example for editors. They hold
no parallel reasoning: divisibility and shapes are checked while lowering to a plan.
Models are strict (no "2" for 2, no true for 1) and forbid unknown keys.
"""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError

FORMAT_VERSION = 1
MAX_SIZE = 2**40  # far beyond any real layer, small enough that shape products stay exact


class StrictModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# In the schema a size may also be a `${...}` reference to `sizes:`, resolved before
# validation, so editors accept the zoo specs as written.
_REFERENCE_SCHEMA = {"type": "string", "pattern": "^\\$\\{.+\\}$"}
Size = Annotated[
    int,
    Field(ge=1, le=MAX_SIZE),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_SIZE}, _REFERENCE_SCHEMA]}
    ),
]
GroupSize = Annotated[
    int,
    Field(ge=1, le=65536),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 65536}, _REFERENCE_SCHEMA]}
    ),
]
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


Stage = Annotated[
    int,
    Field(ge=0, le=65535),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0}, _REFERENCE_SCHEMA]}),
]


class _Layer(StrictModel):
    name: Name | None = Field(
        None,
        description="Attribute name in the generated model; defaults to `<kind>_<index>`.",
        examples=["fc1"],
    )
    stage: Stage | None = Field(
        None,
        description=(
            "Pipeline stage of a top-level layer (0 = first). Layers without one follow the "
            "layer before them; when no layer has one, stages are balanced by parameters."
        ),
        examples=[0],
    )


class Linear(_Layer):
    """y = x W^T + b, with W of shape [out_features, in_features]."""

    kind: Literal["linear"] = Field(description="The layer kind.", examples=["linear"])
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

    kind: Literal["gelu", "relu", "silu", "tanh", "sigmoid"] = Field(
        description="The layer kind.", examples=["gelu"]
    )


class Dropout(_Layer):
    """Zeroes elements with probability p during training; keeps the layout of its input."""

    kind: Literal["dropout"] = Field(description="The layer kind.", examples=["dropout"])
    p: float = Field(
        ge=0.0, lt=1.0, description="Probability of zeroing an element.", examples=[0.1]
    )


class LayerNorm(_Layer):
    """Normalises the last dimension; needs it whole on every rank."""

    kind: Literal["layernorm"] = Field(description="The layer kind.", examples=["layernorm"])
    features: Size | None = Field(
        None,
        description="Size of the normalised (last) dimension; inferred when omitted.",
        examples=[1024],
    )
    eps: float = Field(1e-5, gt=0.0, description="Added to the variance.", examples=[1e-5])
    affine: bool = Field(True, description="Learn a scale and a shift.", examples=[True])


class RMSNorm(_Layer):
    """Root-mean-square normalisation of the last dimension with a learned scale."""

    kind: Literal["rmsnorm"] = Field(description="The layer kind.", examples=["rmsnorm"])
    eps: float = Field(1e-6, gt=0.0, description="Added to the mean square.", examples=[1e-6])


class Embedding(_Layer):
    """Token embedding, vocabulary-parallel: the table's rows are split over tensor ranks.

    It reads the model's first input (token ids, int64 [batch, seq]) and starts the
    hidden stream [batch, seq, hidden].
    """

    kind: Literal["embedding"] = Field(description="The layer kind.", examples=["embedding"])
    vocab_size: Size = Field(description="Number of token ids.", examples=[50257])
    hidden: Size = Field(description="Embedding width.", examples=[768])
    pad_vocab_to_multiple_of: Size | None = Field(
        None,
        description=(
            "Pad the table to the next multiple of this (times nothing else), so it divides "
            "over tensor ranks; padded rows are never selected and their logits are masked."
        ),
        examples=[128],
    )


class PositionEmbedding(_Layer):
    """Adds a learned position embedding, replicated, for positions 0..seq-1."""

    kind: Literal["position_embedding"] = Field(
        description="The layer kind.", examples=["position_embedding"]
    )
    max_positions: Size = Field(description="Rows of the position table.", examples=[1024])


class TokenTypeEmbedding(_Layer):
    """Adds a learned embedding of the token types given by another int64 input."""

    kind: Literal["token_type_embedding"] = Field(
        description="The layer kind.", examples=["token_type_embedding"]
    )
    types: Size = Field(description="Number of token types.", examples=[2])
    input: Name = Field(description="Name of the int64 [batch, seq] input.", examples=["types"])


class PatchEmbedding(_Layer):
    """Cuts images [batch, channels, size, size] into patches and projects them (ViT)."""

    kind: Literal["patch_embedding"] = Field(
        description="The layer kind.", examples=["patch_embedding"]
    )
    image_size: Size = Field(description="Height and width of the images.", examples=[224])
    patch_size: Size = Field(description="Height and width of a patch.", examples=[16])
    channels: Size = Field(3, description="Image channels.", examples=[3])
    hidden: Size = Field(description="Embedding width.", examples=[768])
    class_token: bool = Field(
        True, description="Prepend a learned class token to the patches.", examples=[True]
    )


class Attention(_Layer):
    """Multi-head self-attention: q, k, v column-parallel (whole heads per rank), dense row."""

    kind: Literal["attention"] = Field(description="The layer kind.", examples=["attention"])
    heads: Size = Field(description="Number of attention heads.", examples=[12])
    causal: bool = Field(False, description="Mask future positions (GPT).", examples=[True])
    mask: Name | None = Field(
        None,
        description="Name of an int64 [batch, seq] input; 0 marks padding keys (BERT).",
        examples=["attention_mask"],
    )


class MLP(_Layer):
    """Column-parallel linear, activation, row-parallel linear."""

    kind: Literal["mlp"] = Field(description="The layer kind.", examples=["mlp"])
    ffn: Size = Field(description="Width of the hidden layer.", examples=[3072])
    activation: Literal["gelu", "relu", "silu", "tanh"] = Field(
        "gelu", description="Activation between the two linears.", examples=["gelu"]
    )


class SelectToken(_Layer):
    """Keeps one position of [batch, seq, hidden], giving [batch, hidden] (class token, pooler)."""

    kind: Literal["select_token"] = Field(description="The layer kind.", examples=["select_token"])
    index: Annotated[int, Field(ge=0, le=MAX_SIZE)] = Field(
        0, description="Position to keep.", examples=[0]
    )


class LMHead(_Layer):
    """Logits over the vocabulary from the tied token embedding; they stay vocab-split."""

    kind: Literal["lm_head"] = Field(description="The layer kind.", examples=["lm_head"])
    tied_to: Name = Field(
        description="Name of the `embedding` layer whose table is reused.", examples=["wte"]
    )


class Residual(_Layer):
    """x + f(x), where f is the listed layers; f must keep the shape."""

    kind: Literal["residual"] = Field(description="The layer kind.", examples=["residual"])
    layers: list[Layer] = Field(min_length=1, description="The layers of f, in order.")


class Repeat(_Layer):
    """The listed layers `times` times, each repetition with its own weights."""

    kind: Literal["repeat"] = Field(description="The layer kind.", examples=["repeat"])
    times: Size = Field(description="Number of repetitions.", examples=[12])
    layers: list[Layer] = Field(min_length=1, description="One repetition's layers, in order.")
    stages: list[Stage] | None = Field(
        None,
        description="Pipeline stage of each repetition, so a stack can be cut between stages.",
        examples=[[0, 0, 1, 1]],
    )


_LAYER_MODELS = (
    Linear,
    Activation,
    Dropout,
    LayerNorm,
    RMSNorm,
    Embedding,
    PositionEmbedding,
    TokenTypeEmbedding,
    PatchEmbedding,
    Attention,
    MLP,
    SelectToken,
    LMHead,
    Residual,
    Repeat,
)
Layer = Annotated[
    Linear
    | Activation
    | Dropout
    | LayerNorm
    | RMSNorm
    | Embedding
    | PositionEmbedding
    | TokenTypeEmbedding
    | PatchEmbedding
    | Attention
    | MLP
    | SelectToken
    | LMHead
    | Residual
    | Repeat,
    Field(discriminator="kind"),
]
LAYER_KINDS: tuple[str, ...] = tuple(
    kind
    for model in _LAYER_MODELS
    for kind in typing.get_args(model.model_fields["kind"].annotation)
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
    def _exactly_an_integer(cls, value: object) -> object:
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
    loss: Loss | None = Field(None, description="The training loss, computed by Model.loss().")
    training: Training | None = Field(
        None, description="Batching of a training step (needed to check a pipeline)."
    )


Residual.model_rebuild()
Repeat.model_rebuild()
Spec.model_rebuild()
