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
        2: [(MLP, "data=1"), (SPECS / "gpt2.yaml", *GPT2_TINY)],
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
    return [c for c in found if c["kind"] == "all-reduce" and phase in (None, c["phase"])]


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
    assert [c["kind"] for c in found] == ["all-reduce"] * 5


def test_2d_mlp_on_tensor_2_all_reduces_once(counted):
    found = counted[("mlp_2d_train", 2)]
    assert [(c["kind"], c["phase"], c["bytes"]) for c in found] == [
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
