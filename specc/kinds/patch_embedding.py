"""patch_embedding: ViT's patches, a replicated convolution, and an optional class token."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Literal

from pydantic import Field

from specc.kinds.base import (
    B,
    ClassTemplate,
    Context,
    Drawn,
    Fuzz,
    FuzzStream,
    Kind,
    LayerModel,
    Lowered,
    Mistake,
    Running,
    Size,
    Twin,
    divisors,
    init_kwargs,
    nearest,
    offer,
)
from specc.kinds.costs import Cost, numel
from specc.plan import Call, LayerStep


class PatchEmbedding(LayerModel):
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


def lower(ctx: Context, layer: PatchEmbedding, x: Running) -> Lowered:
    size, patch, channels = layer.image_size, layer.patch_size, layer.channels
    expected = [x.shape[0], channels, size, size]
    if x.dtype != "float32" or list(x.shape) != expected:
        ctx.error(
            "E311",
            f"patch_embedding `{ctx.name}` takes images {expected}, but its input is "
            f"{x.dtype} {list(x.shape)}",
            help="declare the first input as [batch, channels, image_size, image_size]",
        )
    if size % patch:
        ctx.error(
            "E311",
            f"image_size {size} of patch_embedding `{ctx.name}` is not divisible by "
            f"patch_size {patch}",
            "patch_size",
            help=offer(
                f"patch sizes that divide {size}: {{}}",
                "patch_size",
                nearest([d for d in divisors(size) if d > 1], patch),
            ),
        )
    tokens = (size // patch) ** 2 + (1 if layer.class_token else 0)
    after = replace(x, shape=(x.shape[0], tokens, layer.hidden), tensor_sbp=B)
    params = [
        ctx.param("weight", (layer.hidden, channels, patch, patch), B),
        ctx.param("bias", (layer.hidden,), B),
    ]
    if layer.class_token:
        params.append(ctx.param("class_token", (1, 1, layer.hidden), B))
    kwargs = (() if layer.class_token else (("class_token", False),)) + init_kwargs(ctx.init_std)
    return Lowered(
        Call("PatchEmbedding", (channels, layer.hidden, patch), kwargs),
        x,
        after,
        params,
        "replicated convolution over each rank's images",
        attributes={"patch_size": patch, "class_token": layer.class_token},
    )


def reference(t: Twin) -> Any:
    flow, x, p = t.flow, t.x, t.params
    patches = flow.nn.functional.conv2d(
        x, p["weight"], p["bias"], stride=t.attributes["patch_size"]
    )
    patches = patches.flatten(2).transpose(1, 2)
    if not t.attributes["class_token"]:
        return patches
    return flow.cat([p["class_token"].expand(x.shape[0], -1, -1), patches], dim=1)


def draw(stream: FuzzStream) -> Drawn:
    patch, side, channels = stream.integer(1, 3), stream.integer(1, 3), stream.integer(1, 3)
    size, hidden = patch * side, stream.hidden()
    fields: dict[str, Any] = {"image_size": size, "patch_size": patch}
    if channels != 3 or stream.chance(30):
        fields["channels"] = channels
    fields["hidden"] = hidden
    class_token = stream.pick((None, True, False))
    if class_token is not None:
        fields["class_token"] = class_token
    batch = stream.shape[0]
    tokens = side * side + (class_token is not False)
    return Drawn(
        fields,
        (batch, tokens, hidden),
        takes=((batch, channels, size, size), "float32"),
        parameters=True,
    )


def patches_do_not_fit(stream: FuzzStream, fields: dict[str, Any]) -> Mistake:
    size = fields["image_size"]
    if stream.chance(50):
        fields["patch_size"] = stream.pick([p for p in range(2, size + 3) if size % p])
        return Mistake("patches_do_not_fit", frozenset({"E311"}))
    shape = [stream.shape[0], fields.get("channels", 3), size, size]
    shape[stream.pick((1, 2, 3))] += stream.pick((1, 2))
    return Mistake("patches_do_not_fit", frozenset({"E311"}), input_shape=tuple(shape))


PATCH_EMBEDDING = ClassTemplate(
    "PatchEmbedding",
    '''\
class PatchEmbedding(nn.Module):
    """Cuts images into patches and projects each to the hidden size (ViT).

    A convolution with kernel and stride equal to the patch size; the weights are
    replicated, so each rank embeds the images of its own batch slice. A learned class
    token is put in front of the patches.
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        patch_size: int,
        *,
        class_token: bool = True,
        init_std: float | None = None,
        placement: flow.placement,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        shape = (hidden, channels, patch_size, patch_size)
        weight = flow.empty(shape, placement=placement, sbp=REPLICATED)
        bias = flow.zeros(hidden, placement=placement, sbp=REPLICATED)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        if init_std is not None:
            nn.init.normal_(self.weight, std=init_std)
        else:  # nn.Conv2d's
            bound = 1.0 / math.sqrt(channels * patch_size * patch_size)
            nn.init.uniform_(self.weight, -bound, bound)
        if class_token:
            token = flow.zeros(1, 1, hidden, placement=placement, sbp=REPLICATED)
            self.class_token = nn.Parameter(token)
            nn.init.normal_(self.class_token, std=0.02)
        else:
            self.register_parameter("class_token", None)

    def forward(self, images: flow.Tensor) -> flow.Tensor:
        step = self.patch_size
        patches = nn.functional.conv2d(images, self.weight, self.bias, stride=step)
        patches = patches.flatten(2).transpose(1, 2)
        if self.class_token is None:
            return patches
        token = self.class_token.expand(patches.shape[0], -1, -1)
        token = token.to_global(sbp=patches.sbp)
        return flow.cat([token, patches], dim=1)
''',
    constants=("REPLICATED",),
    uses_math=True,
)


def cost(step: LayerStep) -> Cost:
    """Keeps the images (N local elements) for the convolution's weight gradient;
    2 x local images x patches x the weight's elements flops."""
    batch, _, height, width = step.input.local_shape
    patch = step.params[0].layout.shape[-1]
    patches = (height // patch) * (width // patch)
    flops = 2 * batch * patches * math.prod(step.params[0].layout.local_shape)
    return Cost(saved=numel(step.input), flops=flops)


KIND = Kind(
    PatchEmbedding,
    lower,
    order=530,
    classes=(PATCH_EMBEDDING,),
    reference=reference,
    fuzz=Fuzz(draw, roles=frozenset({"start"}), mistakes=(patches_do_not_fit,)),
    cost=cost,
)
