"""silu: the sigmoid linear unit (swish)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from specc.kinds.base import LayerModel, activation
from specc.plan import Call


class Silu(LayerModel):
    """x * sigmoid(x), also called swish; keeps the layout of its input."""

    kind: Literal["silu"] = Field(description="The layer kind.", examples=["silu"])


KIND = activation(
    Silu,
    Call("nn.SiLU"),
    lambda t: t.flow.nn.functional.silu(t.x),
    order=220,
    synonyms=("swish",),
)
