"""How many all-reduces OneFlow compiles into a generated TrainGraph, against LiBai's.

Each model trains one SGD step under the launcher (tests/launch/collectives.py) and the
collectives are read from the compiled job (tests/support/collectives.py). One launch
per world size: the 2D MLP on data 2 x tensor 2 (4 processes); the same MLP on tensor
2 and a 4-layer tiny GPT-2 on tensor 2 (2 processes).
"""

from __future__ import annotations

import pytest

from tests.support.cli import specc
from tests.support.launcher import launch
from tests.support.paths import CASES, REPO, SPECS

pytest.importorskip("oneflow", reason="OneFlow is needed to run generated packages")
pytestmark = pytest.mark.launcher

DRIVER = REPO / "tests" / "launch" / "collectives.py"
MLP = CASES / "mlp_2d_train.yaml"
SEQUENCE = CASES / "gpt2_sequence.yaml"  # the same tiny GPT-2, sequence parallel
GPT2_TINY = [
    "hidden=64",
    "heads=4",
    "layers=4",
    "vocab=128",
    "seq=16",
    "positions=16",
    "micro_batch=2",
    "tensor=2",
]


def build(out, spec, *pairs):
    run = specc("build", str(spec), "-o", str(out), *[a for p in pairs for a in ("--set", p)])
    assert run.code == 0, run.stderr


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """{package: its collectives} per world size, after checking all ranks agree."""
    found = {}
    for world, builds in {
        4: [(MLP,)],
        2: [(MLP, "data=1"), (SPECS / "gpt2.yaml", *GPT2_TINY), (SEQUENCE,)],
    }.items():
        out = tmp_path_factory.mktemp(f"world{world}")
        for spec, *pairs in builds:
            build(out, spec, *pairs)
        packages = sorted(p.name for p in out.iterdir())
        run = launch(world, [str(DRIVER), *packages], pythonpath=[out, REPO], cwd=out)
        assert run.returncode == 0, run.explain()
        records = run.records()
        assert sorted((r["package"], r["rank"]) for r in records) == sorted(
            (p, rank) for p in packages for rank in range(world)
        ), run.explain()
        for package in packages:
            seen = [r["collectives"] for r in records if r["package"] == package]
            for rank, other in enumerate(seen):
                differ = [(a, b) for a, b in zip(seen[0], other, strict=False) if a != b]
                assert other == seen[0], f"{package}: rank {rank} differs from 0: {differ}"
            found[(package, world)] = seen[0]
    return found


def all_reduces(found, phase=None):
    """The all-reduces of the model and its loss, without the one that makes the mean
    loss whole on every rank (4 bytes, so that each rank reads the true loss: LiBai's
    counts leave it partial)."""
    return [
        c
        for c in found
        if c["kind"] == "all-reduce" and phase in (None, c["phase"]) and not is_loss_value(c)
    ]


def is_loss_value(collective):
    return collective["phase"] == "forward" and collective["shape"] == []


def test_2d_mlp_on_data_2_x_tensor_2_all_reduces_5_times(counted):
    found = counted[("mlp_2d_train", 4)]
    # Forward: the row linear's partial sums, within each tensor group.
    (forward,) = all_reduces(found, "forward")
    assert forward["tensor"].startswith("model.down-")
    assert forward["sbp"] == "(S(0), P) -> (S(0), B)"
    assert forward["groups"] == [[0, 1], [2, 3]]
    # Backward: one gradient per parameter, over the data-parallel replicas.
    backward = all_reduces(found, "backward")
    assert len(backward) == 4
    assert {tuple(tuple(g) for g in c["groups"]) for c in backward} == {((0, 2), (1, 3))}
    assert len(all_reduces(found)) == 5
    assert [c["kind"] for c in found] == ["all-reduce"] * 6
    (loss,) = [c for c in found if is_loss_value(c)]
    assert (loss["bytes"], loss["sbp"]) == (4, "(P, B) -> (B, B)")


def test_2d_mlp_on_tensor_2_all_reduces_once(counted):
    found = counted[("mlp_2d_train", 2)]
    assert [(c["kind"], c["phase"], c["bytes"]) for c in all_reduces(found)] == [
        ("all-reduce", "forward", 4 * 16 * 4)
    ]


def test_tiny_gpt2_on_tensor_2_all_reduce_count(counted):
    found = counted[("gpt2", 2)]
    names = [c["tensor"].split("-")[0] for c in all_reduces(found, "backward")]
    # Forward, as LiBai's: the embedding and 2 per layer (attention's dense, the MLP's
    # dense_4h_to_h). The loss's sum over the vocabulary shards reaches the loss by a
    # reduce-scatter and an all-gather, and its all-reduce feeds only the gradient.
    assert len(all_reduces(found, "forward")) == 1 + 2 * 4
    assert sorted(set(names)) == sorted(
        {"model.lm_head", "sparse_softmax_cross_entropy_ms"}
        | {f"model.h.{i}.{m}" for i in range(4) for m in LAYER_BACKWARD}
    )
    # As LiBai's: in backward the fused query_key_value and the MLP's dense_h_to_4h
    # all-reduce their input's gradient once per layer, besides the LM head and the
    # loss: 19 in all.
    assert len(names) == 1 + 4 * len(LAYER_BACKWARD) + 1
    assert len(all_reduces(found)) == 19


LAYER_BACKWARD = ("attn.query_key_value", "mlp.dense_h_to_4h")


def test_sequence_parallel_gpt2_reduce_scatters_and_all_gathers_instead(counted):
    """Megatron's sequence parallelism: each all-reduce of the forward becomes a
    reduce-scatter over the sequence, and each block all-gathers the sequence before
    its column-parallel projection (as does the LM head); the same bytes move."""
    found = counted[("gpt2_sequence", 2)]
    forward = [c for c in found if c["phase"] == "forward" and c["tensor"].startswith("model.")]
    kinds = [(c["kind"], c["tensor"].split("-")[0], c["sbp"]) for c in forward]
    gathered = [f"model.h.{i}.{norm}" for i in range(4) for norm in ("ln_1", "ln_2")]
    scattered = [
        f"model.h.{i}.{row}" for i in range(4) for row in ("attn.dense", "mlp.dense_4h_to_h")
    ]
    assert kinds == [
        ("reduce-scatter", "model.wte", "(P) -> (S(1))"),
        *(
            step
            for gather, scatter in zip(gathered, scattered, strict=True)
            for step in (
                ("all-gather", gather, "(S(1)) -> (B)"),
                ("reduce-scatter", scatter, "(P) -> (S(1))"),
            )
        ),
        ("all-gather", "model.ln_f", "(S(1)) -> (B)"),
    ]
    # The forward all-reduces of the plain plan, element for element.
    plain = [
        c for c in all_reduces(counted[("gpt2", 2)], "forward") if c["tensor"].startswith("model.")
    ]
    assert [c["bytes"] for c in plain] == [
        c["bytes"] for c in forward if c["kind"] == "reduce-scatter"
    ]
    # Backward mirrors it, as Megatron's: the gradient entering each row-parallel block
    # (and the embedding) is all-gathered, the one leaving each column-parallel
    # projection (and the LM head) reduce-scattered; no all-to-all.
    backward = [c for c in found if c["phase"] == "backward"]
    assert "all-to-all" not in {c["kind"] for c in backward}
    assert len([c for c in backward if c["kind"] == "reduce-scatter"]) == 2 * 4 + 1
    stream = [c for c in backward if c["kind"] == "all-gather" and c["sbp"] == "(S(1)) -> (B)"]
    assert len(stream) == 2 * 4 + 1
    # Norms and the row-parallel biases see a slice of the sequence on each tensor rank:
    # their gradients are partial sums, all-reduced over the tensor group.
    reduced = {c["tensor"].split("-")[0] for c in all_reduces(found, "backward")}
    assert {f"model.h.{i}.{n}" for i in range(4) for n in ("ln_1", "ln_2")} <= reduced
    assert {"model.ln_f", "model.h.0.attn.dense", "model.h.0.mlp.dense_4h_to_h"} <= reduced
