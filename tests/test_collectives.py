"""What OneFlow compiles into a generated TrainGraph, against LiBai's counts and against
the estimate of `specc plan` (docs/plan-report.md).

Each model trains one step under the launcher (tests/launch/collectives.py): the
collectives are read from the compiled job (tests/support/collectives.py) and the bytes
of parameters and optimizer moments each rank holds are weighed. One launch per world
size: on 4 processes the 2D MLP on data 2 x tensor 2 and the tiny GPT-2 on data 2 x
tensor 2 and on tensor 2 x pipeline 2; on 2 processes the MLP on tensor 2 and the tiny
GPT-2 on tensor 2, with and without sequence parallelism, and a sequence-parallel
stream that ends in a pooled token.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.support.cases import renamed
from tests.support.cli import specc
from tests.support.launcher import launch
from tests.support.paths import CASES, REPO, SPECS

pytest.importorskip("oneflow", reason="OneFlow is needed to run generated packages")
pytestmark = pytest.mark.launcher

DRIVER = REPO / "tests" / "launch" / "collectives.py"
MLP = CASES / "mlp_2d_train.yaml"
SEQUENCE = CASES / "gpt2_sequence.yaml"  # the tiny GPT-2 below, sequence parallel
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
# package -> (spec, --set pairs) per world size; a GPT-2 on another plan is a copy of the
# spec under another package name, so that one process can import both.
WORLDS = {
    4: {
        "mlp_2d_train": (MLP, []),
        "gpt2_dp2_tp2": (SPECS / "gpt2.yaml", [*GPT2_TINY, "data=2"]),
        "gpt2_tp2_pp2": (SPECS / "gpt2.yaml", [*GPT2_TINY, "pipeline=2", "accumulation=2"]),
    },
    2: {
        "mlp_2d_train": (MLP, ["data=1"]),
        "gpt2": (SPECS / "gpt2.yaml", GPT2_TINY),
        "gpt2_sequence": (SEQUENCE, []),
        "sequence_pooled": (CASES / "sequence_pooled.yaml", []),
    },
}


def sets(pairs):
    return [a for p in pairs for a in ("--set", p)]


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """{(package, world): (rank 0's record, the plan's report)}, after checking that all
    ranks agree on the collectives."""
    found = {}
    for world, builds in WORLDS.items():
        out = tmp_path_factory.mktemp(f"world{world}")
        specs = tmp_path_factory.mktemp(f"specs{world}")
        for package, (spec, pairs) in builds.items():
            copy = renamed(spec, package, specs)
            run = specc("build", str(copy), "-o", str(out), *sets(pairs))
            assert run.code == 0, run.stderr
            plan = specc("plan", str(copy), "--format", "json", *sets(pairs))
            found[(package, world)] = json.loads(plan.stdout)["report"]
        run = launch(world, [str(DRIVER), *builds], pythonpath=[out, REPO], cwd=out)
        assert run.returncode == 0, run.explain()
        records = run.records()
        assert sorted((r["package"], r["rank"]) for r in records) == sorted(
            (p, rank) for p in builds for rank in range(world)
        ), run.explain()
        for package in builds:
            mine = sorted((r for r in records if r["package"] == package), key=lambda r: r["rank"])
            for record in mine:
                differ = [
                    (a, b)
                    for a, b in zip(mine[0]["collectives"], record["collectives"], strict=False)
                    if a != b
                ]
                assert record["collectives"] == mine[0]["collectives"], (
                    f"{package}: rank {record['rank']} differs from 0: {differ}"
                )
            found[(package, world)] = (mine, found[(package, world)])
    return found


def all_reduces(found, phase=None):
    return [c for c in found if c["kind"] == "all-reduce" and phase in (None, c["phase"])]


def test_2d_mlp_on_data_2_x_tensor_2_all_reduces_6_times(counted):
    found = counted[("mlp_2d_train", 4)][0][0]["collectives"]
    # Forward: the row linear's partial sums, within each tensor group, and the mean
    # loss (one value) over the data-parallel replicas, so every rank reads it whole.
    down, mean = all_reduces(found, "forward")
    assert down["tensor"].startswith("model.down-")
    assert down["sbp"] == "(S(0), P) -> (S(0), B)"
    assert down["groups"] == [[0, 1], [2, 3]]
    assert (mean["bytes"], mean["groups"]) == (4, [[0, 2], [1, 3]])
    # Backward: one gradient per parameter, over the data-parallel replicas.
    backward = all_reduces(found, "backward")
    assert len(backward) == 4
    assert {tuple(tuple(g) for g in c["groups"]) for c in backward} == {((0, 2), (1, 3))}
    assert [c["kind"] for c in found] == ["all-reduce"] * 6


def test_2d_mlp_on_tensor_2_all_reduces_once(counted):
    found = counted[("mlp_2d_train", 2)][0][0]["collectives"]
    assert [(c["kind"], c["phase"], c["bytes"]) for c in found] == [
        ("all-reduce", "forward", 4 * 16 * 4)
    ]


def test_tiny_gpt2_on_tensor_2_all_reduce_count(counted):
    found = counted[("gpt2", 2)][0][0]["collectives"]
    names = [c["tensor"].split("-")[0] for c in all_reduces(found, "backward")]
    # Forward, as LiBai's: the embedding and 2 per layer (attention's dense, the MLP's
    # dense_4h_to_h); and the mean loss, made whole. The loss's sum over the vocabulary
    # shards reaches the loss by a reduce-scatter and an all-gather, and its all-reduce
    # feeds only the gradient.
    assert len(all_reduces(found, "forward")) == 1 + 2 * 4 + 1
    assert sorted(set(names)) == sorted(
        {"model.lm_head", "sparse_softmax_cross_entropy_ms"}
        | {f"model.h.{i}.{m}" for i in range(4) for m in LAYER_BACKWARD}
    )
    # As LiBai's: in backward the fused query_key_value and the MLP's dense_h_to_4h
    # all-reduce their input's gradient once per layer, besides the LM head and the
    # loss: 19 in all besides the mean loss.
    assert len(names) == 1 + 4 * len(LAYER_BACKWARD) + 1
    assert len(all_reduces(found)) == 19 + 1


LAYER_BACKWARD = ("attn.query_key_value", "mlp.dense_h_to_4h")


def test_sequence_parallel_gpt2_reduce_scatters_and_all_gathers_instead(counted):
    """Megatron's sequence parallelism: each all-reduce of the forward becomes a
    reduce-scatter over the sequence, and each block all-gathers the sequence before
    its column-parallel projection (as does the LM head); the same bytes move."""
    found = counted[("gpt2_sequence", 2)][0][0]["collectives"]
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
    plain = counted[("gpt2", 2)][0][0]["collectives"]
    plain = [c for c in all_reduces(plain, "forward") if c["tensor"].startswith("model.")]
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


def measured(collectives):
    """{(kind, phase): [count, bytes]} of what OneFlow compiled (sends aside)."""
    found = Counter()
    for c in collectives:
        if c["kind"] != "send":
            found[(c["kind"], c["phase"], "n")] += 1
            found[(c["kind"], c["phase"], "bytes")] += c["bytes"]
    return found


def reported(report):
    """The same from the plan's estimate; the gradients' reduction runs in backward."""
    found = Counter()
    for c in report["collectives"]:
        if c["kind"] != "send":
            phase = "backward" if c["phase"] == "step" else c["phase"]
            found[(c["kind"], phase, "n")] += c["count"]
            found[(c["kind"], phase, "bytes")] += c["bytes"]
    return found


@pytest.mark.parametrize(
    "package, world",
    [
        ("mlp_2d_train", 4),
        ("mlp_2d_train", 2),
        ("gpt2", 2),
        ("gpt2_sequence", 2),
        ("sequence_pooled", 2),
        ("gpt2_dp2_tp2", 4),
        ("gpt2_tp2_pp2", 4),
    ],
)
def test_the_plan_lists_the_collectives_oneflow_compiles(counted, package, world):
    records, report = counted[(package, world)]
    assert reported(report) == measured(records[0]["collectives"])
    # Every layer the estimate names communicates in the compiled graph too.
    # (A relayout is named by the layer that needs it; OneFlow names the tensor by the
    # layer that made it: the count and bytes above cover it.)
    tensors = [c["tensor"] for c in records[0]["collectives"]]
    for line in report["collectives"]:
        if line["phase"] != "step" and line["kind"] != "send":
            for name in line["names"]:
                if name == "loss" or name.endswith("relayout"):
                    continue
                assert any(t.startswith(f"model.{name}") for t in tensors), name


def test_the_plan_lists_the_stage_crossings_oneflow_compiles(counted):
    """Every send the compiled graph holds is in the estimate (at the same size).

    The job shows the sends to and from the tied LM head; the crossings into a later
    stage's repetitions go through the pipeline's buffers, which the counter does not
    see (tests/support/collectives.py reads producer->consumer SBP edges), so the
    estimate may list more."""
    records, report = counted[("gpt2_tp2_pp2", 4)]
    sends = {(c["phase"], c["bytes"]) for c in report["collectives"] if c["kind"] == "send"}
    compiled = [c for c in records[0]["collectives"] if c["kind"] == "send"]
    assert compiled
    for send in compiled:
        assert (send["phase"], send["bytes"]) in sends, send


@pytest.mark.parametrize(
    "package, world",
    [
        ("mlp_2d_train", 4),
        ("mlp_2d_train", 2),
        ("gpt2", 2),
        ("gpt2_sequence", 2),
        ("sequence_pooled", 2),
        ("gpt2_dp2_tp2", 4),
        ("gpt2_tp2_pp2", 4),
    ],
)
def test_parameter_and_optimizer_bytes_are_what_each_rank_holds(counted, package, world):
    records, report = counted[(package, world)]
    expected = {}
    for memory in report["memory"]:
        for rank in memory["ranks"]:
            expected[rank] = (memory["parameters"], memory["optimizer"])
    held = {r["rank"]: (r["parameters"], r["optimizer"]) for r in records}
    assert held == expected
