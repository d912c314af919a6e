"""What the generated train command reads: decided from the inputs, the loss and the layers.

A model trains on token windows when its first input is int64 [batch, seq], its labels
have the same shape and no layer lets a position see later ones (next-token labels
would leak otherwise); it trains on image arrays when its first input is a float
[batch, channels, height, width] and its labels are [batch]. Every other input must be
optional: the train command leaves them out. Anything else gets the reason it cannot,
which the command prints.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from specc.kinds.base import LayerModel
from specc.plan import InputTensor, Loss, TrainData
from specc.spec import Spec


def train_data(spec: Spec, inputs: Sequence[InputTensor], loss: Loss | None) -> TrainData:
    if loss is None:
        return TrainData(None, "the spec has no loss")
    first, labels = inputs[0], loss.labels
    required = [item.name for item in spec.inputs[1:] if not item.optional]
    if required:
        return TrainData(
            None,
            f"the train command fills only the first input, and `{required[0]}` is "
            "required too (an optional one is left out)",
        )
    shape = first.layout.shape
    if first.dtype == "int64" and len(shape) == 2 and labels.layout.shape == shape:
        seeing = [layer for layer in _layers(spec.layers) if layer.sees_later_positions()]
        if seeing:
            named = f"`{seeing[0].name}`" if seeing[0].name else f"a {seeing[0].kind} layer"
            return TrainData(
                None,
                f"{named} lets a position see later ones, so next-token labels "
                "would leak (masked-LM data is not supported yet)",
            )
        return TrainData("tokens", "", first, labels, first.high or 0)
    if first.dtype != "int64" and len(shape) == 4 and labels.layout.shape == shape[:1]:
        return TrainData("images", "", first, labels, labels.high or 0)
    return TrainData(
        None,
        "the train command reads token windows (an int64 [batch, seq] input, labels of "
        "its shape) or images (a [batch, channels, height, width] input, [batch] labels); "
        f"`{first.name}` and the labels are neither",
    )


def _layers(layers: Sequence[LayerModel]) -> Iterator[LayerModel]:
    for layer in layers:
        yield layer
        yield from _layers(layer.sublayers())
