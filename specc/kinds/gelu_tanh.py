"""gelu_tanh: GELU with the tanh approximation, which GPT-2 computes ("gelu_new")."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from specc.kinds.base import LayerModel, Twin, activation
from specc.plan import Call


class GeluTanh(LayerModel):
    """GELU approximated with tanh, as GPT-2 computes it; keeps the layout of its input."""

    kind: Literal["gelu_tanh"] = Field(description="The layer kind.", examples=["gelu_tanh"])


def reference(t: Twin) -> Any:
    """The formula itself, not OneFlow's kernel for it: 0.5 x (1 + tanh(a (x + b x^3)))."""
    x = t.x
    return 0.5 * x * (1.0 + t.flow.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


KIND = activation(
    GeluTanh,
    Call("nn.GELU", kwargs=(("approximate", "tanh"),)),
    reference,
    order=205,
    synonyms=("gelu_new", "gelu_pytorch_tanh", "gelu_fast", "fast_gelu"),
)
