"""sigmoid: the logistic function."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from specc.kinds.base import LayerModel, activation
from specc.plan import Call


class Sigmoid(LayerModel):
    """1 / (1 + exp(-x)); keeps the layout of its input."""

    kind: Literal["sigmoid"] = Field(description="The layer kind.", examples=["sigmoid"])


KIND = activation(
    Sigmoid,
    Call("nn.Sigmoid"),
    lambda t: t.flow.sigmoid(t.x),
    order=240,
)
