"""relu: the rectified linear unit."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from specc.kinds.base import LayerModel, activation
from specc.plan import Call


class Relu(LayerModel):
    """max(x, 0); keeps the layout of its input."""

    kind: Literal["relu"] = Field(description="The layer kind.", examples=["relu"])


KIND = activation(
    Relu,
    Call("nn.ReLU"),
    lambda t: t.flow.nn.functional.relu(t.x),
    order=210,
)
