"""gelu: the Gaussian error linear unit, exact."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from specc.kinds.base import LayerModel, activation
from specc.plan import Call


class Gelu(LayerModel):
    """GELU, x * Phi(x) with the exact Gaussian CDF (BERT, ViT); keeps the layout of its input."""

    kind: Literal["gelu"] = Field(description="The layer kind.", examples=["gelu"])


KIND = activation(
    Gelu,
    Call("nn.GELU"),
    lambda t: t.flow.nn.functional.gelu(t.x),
    order=200,
)
