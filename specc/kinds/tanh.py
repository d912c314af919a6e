"""tanh: the hyperbolic tangent."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from specc.kinds.base import LayerModel, activation
from specc.plan import Call


class Tanh(LayerModel):
    """The hyperbolic tangent (the BERT pooler's); keeps the layout of its input."""

    kind: Literal["tanh"] = Field(description="The layer kind.", examples=["tanh"])


KIND = activation(
    Tanh,
    Call("nn.Tanh"),
    lambda t: t.flow.tanh(t.x),
    order=230,
)
