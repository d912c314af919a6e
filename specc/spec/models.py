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

from pydantic import Field, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError

from specc import kinds
from specc.kinds.base import REFERENCE_SCHEMA, GroupSize, LayerModel, Name, Size, StrictModel

FORMAT_VERSION = 1
MAX_STEPS = 2**40
# A number of steps (0 allowed), or a `${...}` reference to `sizes:` in the schema.
Steps = Annotated[
    int,
    Field(ge=0, le=MAX_STEPS),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_STEPS}, REFERENCE_SCHEMA]}
    ),
]

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
    sequence: bool = Field(
        False,
        description=(
            "Sequence parallelism (Megatron's): between tensor-parallel blocks, activations "
            "are split over the sequence on tensor ranks, so norms, dropout and residuals "
            "work on a slice; all-gathered before a block, reduce-scattered after it."
        ),
        examples=[True],
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
    optional: bool = Field(
        False,
        description=(
            "The model may be called without it (an attention mask, token types): forward "
            "takes None. Optional inputs come after the others."
        ),
        examples=[True],
    )


class Loss(StrictModel):
    """The training loss on the model's output (the logits)."""

    kind: Literal["cross_entropy"] = Field(
        description="Cross-entropy over the last dimension; works on vocab-split logits.",
        examples=["cross_entropy"],
    )


class Optimizer(StrictModel):
    """The optimizer; norms and biases are never weight-decayed."""

    kind: Literal["adamw", "sgd"] = Field(
        "adamw", description="AdamW, or SGD with momentum.", examples=["adamw"]
    )
    lr: float = Field(1e-3, gt=0.0, description="The peak learning rate.", examples=[3e-4])
    betas: list[Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(
        [0.9, 0.999],
        min_length=2,
        max_length=2,
        description="AdamW's decays of its two moments.",
        examples=[[0.9, 0.95]],
    )
    eps: float = Field(1e-8, gt=0.0, description="AdamW's epsilon.", examples=[1e-8])
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="SGD's momentum.", examples=[0.9])
    weight_decay: float = Field(
        0.0,
        ge=0.0,
        description="Decoupled weight decay (AdamW) or L2 (SGD), on weights only.",
        examples=[0.1],
    )


class Schedule(StrictModel):
    """The learning rate over the steps: a linear warmup, then constant or decaying."""

    kind: Literal["constant", "cosine", "linear"] = Field(
        "constant", description="What follows the warmup.", examples=["cosine"]
    )
    warmup: Steps = Field(0, description="Steps of linear warmup from 0.", examples=[100])
    steps: Size | None = Field(
        None,
        description="Steps of the whole run, warmup included; a decay ends there.",
        examples=[10000],
    )
    min_lr: float = Field(
        0.0, ge=0.0, description="The learning rate a decay ends at.", examples=[3e-5]
    )


class Training(StrictModel):
    """How a training step is batched and what it does: the recipe the TrainGraph applies."""

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
    optimizer: Optimizer = Field(default_factory=Optimizer, description="The optimizer.")
    schedule: Schedule = Field(default_factory=Schedule, description="The learning rate schedule.")
    clip_grad_norm: float | None = Field(
        None, gt=0.0, description="Clip the gradients' global L2 norm to this.", examples=[1.0]
    )
    precision: Literal["fp32", "fp16", "bf16"] = Field(
        "fp32",
        description="Mixed precision: fp16 or bf16 compute, fp32 weights (a GPU's; on CPU "
        "OneFlow 0.9 computes in fp32 whatever this says).",
        examples=["bf16"],
    )
    loss_scale: Literal["dynamic"] | float | None = Field(
        None,
        description="fp16's loss scaling: `dynamic` (the default for fp16) or a fixed factor.",
        examples=["dynamic"],
    )
    recompute: bool = Field(
        False,
        description="Recompute each repetition's activations in backward instead of keeping "
        "them (activation checkpointing per repeated block).",
        examples=[True],
    )
    zero: Literal[0, 1, 2, 3] = Field(
        0,
        description="ZeRO stage: shard optimizer states (1), and gradients (2), and "
        "weights (3) over data ranks (a GPU's; OneFlow 0.9 aborts on CPU).",
        examples=[1],
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**63 - 1,
        description="Seeds the weights, dropout and the data order.",
        examples=[1234],
    )


class Init(StrictModel):
    """How weights are initialised; without it, linears follow nn.Linear (uniform)."""

    std: float = Field(
        gt=0.0,
        description=(
            "Every weight (linears, attention, MLPs, embeddings, the patch projection) "
            "draws from normal(0, std); biases start at 0, norms at 1 and 0."
        ),
        examples=[0.02],
    )
    output_layers: Size | None = Field(
        None,
        description=(
            "GPT-2's and Megatron's scaled init: the output projections of attention and "
            "MLP draw with std / sqrt(2 x output_layers); give the number of blocks."
        ),
        examples=[12],
    )


class TensorSource(StrictModel):
    """Where a parameter's values are in a checkpoint, and how they become the parameter.

    The steps apply in order: each tensor transposed (`transpose`), a single tensor cut
    into `parts` equal row blocks, the tensors' rows regrouped (`interleave`) or else
    stacked, the result reshaped to the parameter (`shape`, the stored shape, may add or
    drop dimensions of size 1). Saving applies them backwards.
    """

    tensor: str | list[str] = Field(
        description="The checkpoint's tensor, or several joined along rows; `*` a repetition.",
        examples=["transformer.h.*.attn.c_attn.weight"],
    )
    transpose: bool = Field(
        False,
        description="Each tensor is stored [in, out] (GPT-2's Conv1D): transpose it.",
        examples=[True],
    )
    parts: Size | None = Field(
        None,
        description="Cut the one tensor into this many equal row blocks (a fused q, k, v).",
        examples=[3],
    )
    interleave: Size | None = Field(
        None,
        description=(
            "Regroup the rows into this many groups, each taking its share of every tensor "
            "in turn: `kv_heads` for a q/k/v projection, `ffn` for a gated MLP's gate and up."
        ),
        examples=[12],
    )
    rows: list[Size] | None = Field(
        None,
        description=(
            "The rows each tensor holds, when they differ (grouped-query q, k and v), so "
            "that saving can cut them apart again; equal shares when omitted."
        ),
        examples=[[4096, 1024, 1024]],
    )
    shape: list[Size] | None = Field(
        None,
        description="The stored shape, when it differs by dimensions of size 1 ([1, 197, 768]).",
        examples=[[1, 197, 768]],
    )


class Checkpoint(StrictModel):
    """Pretrained weights in HuggingFace's layout, loaded into any plan and saved back."""

    format: Literal["safetensors"] = Field(
        "safetensors",
        description="`model.safetensors`, or shards listed in `model.safetensors.index.json`.",
        examples=["safetensors"],
    )
    tensors: dict[str, str | TensorSource] = Field(
        description=(
            "Every parameter of the model, by name (`*` a repetition of a repeat), and the "
            "checkpoint tensor it comes from."
        ),
        examples=[{"wte.weight": "transformer.wte.weight"}],
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Written as config.json beside saved weights, for the reference library.",
        examples=[{"model_type": "gpt2", "n_embd": 768}],
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
    init: Init | None = Field(None, description="How weights are initialised.")
    checkpoint: Checkpoint | None = Field(
        None, description="Where pretrained weights come from, and how they are saved."
    )
    training: Training | None = Field(
        None, description="Batching of a training step (needed to check a pipeline)."
    )


Spec.model_rebuild()
