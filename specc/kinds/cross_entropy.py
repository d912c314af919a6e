"""cross_entropy: the loss on vocabulary-split logits, without gathering them."""

from __future__ import annotations

from specc.kinds.base import ClassTemplate

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
