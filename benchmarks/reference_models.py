"""The benchmark's models written by hand in plain OneFlow, as an expert would.

The yardstick for the code specc generates (benchmarks/step_time.py): the same
functions with the same shapes, parameters global from the start with LiBai's layouts,
and LiBai's choices where they save work: one fused query/key/value projection per
attention (one gradient all-reduce in backward instead of three), the softmax scale
folded into the score matmul, and the causal mask a registered buffer added to the
scores, built once instead of every step. Weights are [out, in], as nn.Linear and the
generated code hold them, so a generated model's weights can be copied in (see
`load_generated`) and both compute the same loss.

Meshes are (data, tensor); an axis of size 1 is dropped from placements and SBP, as
LiBai's `get_nd_sbp` does, so tensor 2 alone is a 1D mesh of 2 ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import oneflow as flow
from oneflow import nn

B = flow.sbp.broadcast
S = flow.sbp.split


@dataclass(frozen=True)
class Mesh:
    """A data x tensor mesh: its placement and the SBP of each layout on it."""

    data: int
    tensor: int
    device: str

    @property
    def placement(self) -> flow.placement:
        grid = [[d * self.tensor + t for t in range(self.tensor)] for d in range(self.data)]
        if self.data > 1 and self.tensor > 1:
            return flow.placement(self.device, ranks=grid)
        return flow.placement(self.device, ranks=[rank for row in grid for rank in row])

    def sbp(self, data: flow.sbp.sbp, tensor: flow.sbp.sbp) -> tuple[flow.sbp.sbp, ...]:
        """(data-axis SBP, tensor-axis SBP), without the axes of size 1."""
        kept = tuple(s for s, n in ((data, self.data), (tensor, self.tensor)) if n > 1)
        return kept or (B,)


class Linear(nn.Module):
    """y = x W^T + b, W [out, in]; `col` splits W's rows, `row` its columns (LiBai's)."""

    def __init__(self, mesh: Mesh, in_features: int, out_features: int, split: str) -> None:
        super().__init__()
        self.mesh, self.split = mesh, split
        weight = mesh.sbp(B, S(0) if split == "col" else S(1))
        bias = mesh.sbp(B, S(0) if split == "col" else B)
        place = mesh.placement
        self.weight = nn.Parameter(
            flow.empty(out_features, in_features, placement=place, sbp=weight)
        )
        self.bias = nn.Parameter(flow.zeros(out_features, placement=place, sbp=bias))
        nn.init.xavier_normal_(self.weight)

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        if self.split == "col":
            # Megatron's "f": the input's gradient, partial over tensor ranks, is summed.
            x = x.to_global(grad_sbp=x.sbp)
            return flow.matmul(x, self.weight, transpose_b=True) + self.bias
        partial = flow.matmul(x, self.weight, transpose_b=True)
        return partial.to_global(sbp=self.mesh.sbp(S(0), B)) + self.bias


def cross_entropy(logits: flow.Tensor, labels: flow.Tensor) -> flow.Tensor:
    """Mean cross-entropy on logits split over the classes, never gathered (LiBai's)."""
    classes = logits.shape[-1]
    flat = logits.view(-1, classes)
    return flow._C.sparse_softmax_cross_entropy(flat, labels.view(-1)).mean()


class MLP2D(nn.Module):
    """The 2D MLP: column-parallel up, GELU on the split features, row-parallel down."""

    def __init__(self, mesh: Mesh, features: int, ffn: int) -> None:
        super().__init__()
        self.up = Linear(mesh, features, ffn, "col")
        self.activation = nn.GELU()
        self.down = Linear(mesh, ffn, features, "row")

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        return self.down(self.activation(self.up(x)))

    def loss(self, logits: flow.Tensor, labels: flow.Tensor) -> flow.Tensor:
        return cross_entropy(logits, labels)


class MLP(nn.Module):
    """A transformer block's MLP, the same layout under Megatron's names; GPT-2's GELU is
    the tanh approximation (specs/gpt2.yaml: `gelu_tanh`)."""

    def __init__(self, mesh: Mesh, hidden: int, ffn: int) -> None:
        super().__init__()
        self.dense_h_to_4h = Linear(mesh, hidden, ffn, "col")
        self.activation = nn.GELU(approximate="tanh")
        self.dense_4h_to_h = Linear(mesh, ffn, hidden, "row")

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        return self.dense_4h_to_h(self.activation(self.dense_h_to_4h(x)))


class LayerNorm(nn.Module):
    """Layer normalisation with a replicated scale and shift."""

    def __init__(self, mesh: Mesh, features: int, eps: float = 1e-5) -> None:
        super().__init__()
        replicated = mesh.sbp(B, B)
        self.weight = nn.Parameter(flow.ones(features, placement=mesh.placement, sbp=replicated))
        self.bias = nn.Parameter(flow.zeros(features, placement=mesh.placement, sbp=replicated))
        self.shape, self.eps = (features,), eps

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        return nn.functional.layer_norm(x, self.shape, self.weight, self.bias, self.eps)


class CausalSelfAttention(nn.Module):
    """LiBai's attention: fused q/k/v (rows grouped [head, q|k|v, d]), whole heads per rank.

    The causal mask is built for sequences of length `seq`, the training length.
    """

    def __init__(self, mesh: Mesh, hidden: int, heads: int, seq: int) -> None:
        super().__init__()
        self.heads, self.head_size = heads, hidden // heads
        self.query_key_value = Linear(mesh, hidden, 3 * hidden, "col")
        self.dense = Linear(mesh, hidden, hidden, "row")
        keep = flow.ones(seq, seq, placement=mesh.placement, sbp=mesh.sbp(B, B)).tril()
        self.register_buffer(
            "causal", ((keep - 1.0) * 10000.0).view(1, 1, seq, seq), persistent=False
        )

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        batch, seq = x.shape[0], x.shape[1]
        qkv = self.query_key_value(x).view(batch, seq, self.heads, 3 * self.head_size)
        query, key, value = flow.chunk(qkv.permute(0, 2, 1, 3), chunks=3, dim=-1)
        alpha = 1.0 / math.sqrt(self.head_size)
        scores = flow.matmul(query, key, transpose_b=True, alpha=alpha) + self.causal
        context = flow.matmul(flow.softmax(scores, dim=-1), value)
        return self.dense(context.permute(0, 2, 1, 3).flatten(2))


class Block(nn.Module):
    """A pre-norm GPT-2 block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, mesh: Mesh, hidden: int, heads: int, seq: int) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(mesh, hidden)
        self.attn = CausalSelfAttention(mesh, hidden, heads, seq)
        self.ln_2 = LayerNorm(mesh, hidden)
        self.mlp = MLP(mesh, hidden, 4 * hidden)

    def forward(self, x: flow.Tensor) -> flow.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """GPT-2 with a vocab-parallel embedding and the LM head tied to it (LiBai's)."""

    def __init__(
        self,
        mesh: Mesh,
        *,
        vocab: int,
        hidden: int,
        heads: int,
        layers: int,
        positions: int,
        seq: int,
    ) -> None:
        super().__init__()
        place = mesh.placement
        self.activation = mesh.sbp(S(0), B)
        self.wte = nn.Parameter(flow.empty(vocab, hidden, placement=place, sbp=mesh.sbp(B, S(0))))
        self.wpe = nn.Parameter(flow.empty(positions, hidden, placement=place, sbp=mesh.sbp(B, B)))
        nn.init.normal_(self.wte, std=0.02)
        nn.init.normal_(self.wpe, std=0.02)
        self.h = nn.ModuleList([Block(mesh, hidden, heads, seq) for _ in range(layers)])
        self.ln_f = LayerNorm(mesh, hidden)

    def forward(self, ids: flow.Tensor) -> flow.Tensor:
        # Each rank looks up the ids in its rows of the table: partial sums, all-reduced.
        x = flow._C.gather(self.wte, ids, axis=0).to_global(sbp=self.activation)
        x = x + self.wpe[: ids.shape[1]]
        for block in self.h:
            x = block(x)
        x = self.ln_f(x).to_global(grad_sbp=self.activation)
        return flow.matmul(x, self.wte, transpose_b=True)  # logits split over the vocabulary

    def loss(self, logits: flow.Tensor, labels: flow.Tensor) -> flow.Tensor:
        return cross_entropy(logits, labels)


class TrainGraph(nn.Graph):
    """One training step, forward, loss, backward and the optimizer, as one graph."""

    def __init__(self, model: nn.Module, optimizer: flow.optim.Optimizer) -> None:
        super().__init__()
        self.model = model
        self.add_optimizer(optimizer)

    def build(self, *batch: flow.Tensor) -> flow.Tensor:
        *inputs, labels = batch
        loss = self.model.loss(self.model(*inputs), labels)
        loss.backward()
        return loss


def load_generated(reference: nn.Module, generated: nn.Module) -> None:
    """Copy a generated model's weights into its reference: the same names and layouts
    (the generated attention fuses q/k/v as LiBai does, rows grouped [head, q|k|v, d]),
    but for the tables, which the reference holds as bare parameters."""
    theirs = dict(generated.named_parameters())
    with flow.no_grad():
        for name, mine in reference.named_parameters():
            value = whole(theirs[_generated_name(name)])
            assert tuple(value.shape) == tuple(mine.shape), (name, value.shape, mine.shape)
            mine.copy_(value.to_global(placement=mine.placement, sbp=mine.sbp))


def whole(tensor: flow.Tensor) -> flow.Tensor:
    return tensor.to_global(sbp=[B] * len(tensor.sbp))


def _generated_name(name: str) -> str:
    """The generated model's name for a reference parameter (they differ for tables)."""
    return {"wte": "wte.weight", "wpe": "wpe.weight"}.get(name, name)
