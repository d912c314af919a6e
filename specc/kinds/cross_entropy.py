"""cross_entropy: the loss on vocabulary-split logits, without gathering them."""

from __future__ import annotations

import math

from specc.kinds.base import ClassTemplate
from specc.kinds.costs import Comm, Cost, numel, rows
from specc.plan import Layout

CROSS_ENTROPY = ClassTemplate(
    "cross_entropy",
    '''\
def cross_entropy(logits: flow.Tensor, labels: flow.Tensor) -> flow.Tensor:
    """Mean cross-entropy over the last dimension, never gathering vocab-split logits.

    OneFlow's sparse softmax cross-entropy takes the logits split over tensor ranks
    and reduces the softmax across them. The mean is made whole on every rank of the
    stage, so that `loss.to_local()` reads the true loss, not a partial sum.
    """
    labels = labels.to_global(placement=logits.placement)
    classes = logits.shape[-1]
    flat = logits.view(-1, classes)
    loss = flow._C.sparse_softmax_cross_entropy(flat, labels.view(-1)).mean()
    return loss.to_global(sbp=[flow.sbp.broadcast] * len(loss.sbp))
''',
    placement=False,
)

# A loss is not a layer: it adds a function to layers.py, listed after every class.
CLASSES = (CROSS_ENTROPY,)


def loss_cost(logits: Layout, axes: tuple[str, ...]) -> Cost:
    """What the loss keeps and communicates per rank, for logits laid out as `logits` on
    a mesh whose SBP axes are `axes` (T local rows of logits).

    Keeps the softmax's probabilities in fp32 (4 bytes a local logit) and the labels
    (int64, 8 bytes a row). With the classes split over tensor ranks, OneFlow 0.9's
    sparse softmax cross-entropy all-gathers each row's maximum twice (T fp32 values)
    and reduces the rows' sums: on a mesh with a data axis by an all-reduce, on a
    tensor-only mesh by a reduce-scatter, an all-gather of the log (T / t values) and,
    in backward, an all-reduce. The mean loss is then all-reduced (one fp32 value) over
    the axes its rows or classes are split on, so every rank reads the true loss.
    """
    local = rows(logits)
    comms: list[Comm] = []
    if logits.local_shape[-1] != logits.shape[-1]:
        tensor = logits.shape[-1] // max(logits.local_shape[-1], 1)
        comms += [Comm("all-gather", "forward", local, "row maxima", fp32=True)] * 2
        if "data" in axes:
            comms.append(Comm("all-reduce", "forward", local, "row sums", fp32=True))
        else:
            comms += [
                Comm("reduce-scatter", "forward", local, "row sums", fp32=True),
                Comm("all-gather", "forward", -(-local // tensor), "log of row sums", fp32=True),
                Comm("all-reduce", "backward", local, "row sums", fp32=True),
            ]
    split_on = tuple(
        axis for axis, sbp in zip(axes, logits.sbp, strict=False) if sbp.startswith("S")
    )
    if split_on:
        comms.append(
            Comm(
                "all-reduce", "forward", 1, "mean loss", fp32=True, axes=split_on, per_sample=False
            )
        )
    return Cost(
        fixed=4 * numel(logits) + 8 * local,
        flops=5 * math.prod(logits.local_shape),
        comms=tuple(comms),
    )
