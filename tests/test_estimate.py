"""The estimate of `specc plan`: bytes and collectives per rank, against hand counts.

Each figure here is worked out by hand from the kinds' formulas (their `cost`
docstrings), so a change to a formula shows up as a changed number, with its reason.
tests/test_collectives.py checks the same estimates against OneFlow under the launcher.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from dataclasses import replace

import pytest

from specc import api
from specc.cli import main
from specc.estimate import estimate, in_flight
from specc.estimate.units import parse_bytes, size_text
from tests.support.cli import specc
from tests.support.paths import CASES, SPECS

MLP = str(CASES / "mlp_2d_train.yaml")
GPT2 = str(SPECS / "gpt2.yaml")
TINY = ["hidden=64", "heads=4", "layers=4", "vocab=128", "seq=16", "positions=16"]


def report(spec, *overrides, memory=None):
    result = api.check(spec, list(overrides))
    assert result.plan is not None, result.diagnostics.items
    return estimate(result.plan, memory)


def test_2d_mlp_bytes_per_rank():
    found = report(MLP)
    (memory,) = found.memory
    assert memory.ranks == (0, 1, 2, 3)
    # up [64, 16] col: [32, 16] + [32]; down [16, 64] row: [16, 32] + [16]; fp32.
    assert memory.parameters == memory.gradients == 4 * (32 * 16 + 32 + 16 * 32 + 16)
    assert memory.optimizer == 2 * memory.parameters  # AdamW: two moments
    # Local batch 4: up keeps its input [4, 16], gelu its input [4, 32], down its input
    # [4, 32], fp32; the loss its probabilities [4, 16] fp32 and its labels (int64).
    assert memory.activations == 4 * (4 * 16 + 4 * 32 + 4 * 32) + 4 * 4 * 16 + 8 * 4


def test_2d_mlp_collectives():
    found = report(MLP)
    lines = [(c.kind, c.phase, c.group, c.count, c.bytes) for c in found.collectives]
    assert lines == [
        ("all-reduce", "forward", "tensor", 1, 4 * 4 * 16),  # down's partial sums
        ("all-reduce", "forward", "data", 1, 4),  # the mean loss
        ("all-reduce", "step", "data", 4, 4 * (32 * 16 + 32 + 16 * 32 + 16)),  # gradients
    ]


def block_bytes(batch=2, seq=16, hidden=64, heads=4, tensor=2, ffn=256):
    """One tiny GPT-2 block on one rank, fp32, by hand (the kinds' formulas)."""
    tokens = batch * seq
    scores = batch * heads // tensor * seq * seq
    ln = tokens * hidden  # and 8 bytes a row of statistics
    attention = tokens * hidden + tokens * 3 * hidden // tensor + 3 * scores
    attention += tokens * hidden // tensor
    mlp = tokens * hidden + 2 * tokens * ffn // tensor
    dropouts = 2 * tokens * hidden
    return 4 * (2 * ln + attention + mlp + dropouts) + 2 * 8 * tokens


def test_gpt2_block_activations_by_hand():
    one = report(GPT2, *TINY, "layers=1", "tensor=2", "micro_batch=2")
    two = report(GPT2, *TINY, "layers=2", "tensor=2", "micro_batch=2")
    assert two.stages[0].activations - one.stages[0].activations == block_bytes() == 111104


def test_recompute_keeps_each_repetition_input_and_one_repetition():
    plain = report(GPT2, *TINY, "tensor=2", "micro_batch=2")
    plan = api.check(GPT2, [*TINY, "tensor=2", "micro_batch=2"]).plan
    assert plan is not None
    recomputed = estimate(replace(plan, recipe=replace(plan.recipe, recompute=True)))
    saved = plain.stages[0].activations - recomputed.stages[0].activations
    # Four blocks kept their activations; now each keeps its input [2, 16, 64] and one
    # block's activations are made again in backward.
    assert saved == 4 * block_bytes() - (4 * 4 * 2 * 16 * 64 + block_bytes())


def test_micro_batches_in_flight_under_1f1b():
    assert [in_flight(s, 4, 8) for s in range(4)] == [4, 3, 2, 1]
    assert in_flight(0, 4, 2) == 2
    found = report(GPT2, *TINY, "pipeline=2", "accumulation=4")
    assert [s.in_flight for s in found.stages] == [2, 1]
    for memory, stage in zip(found.memory, found.stages, strict=True):
        assert memory.activations == stage.activations * stage.in_flight


def test_tiny_gpt2_on_tensor_2_lists_19_all_reduces_and_the_loss():
    found = report(GPT2, *TINY, "tensor=2", "micro_batch=2")
    counts = {}
    for c in found.collectives:
        counts[(c.kind, c.phase)] = counts.get((c.kind, c.phase), 0) + c.count
    assert counts == {
        ("all-reduce", "forward"): 1 + 2 * 4 + 1,  # embedding, two per block, the mean
        ("all-reduce", "backward"): 1 + 2 * 4 + 1,  # lm_head, two per block, the row sums
        ("all-gather", "forward"): 3,
        ("reduce-scatter", "forward"): 1,
    }


def test_zero_shards_over_data_ranks():
    plain = report(GPT2, *TINY, "data=2", "tensor=2")
    plan = api.check(GPT2, [*TINY, "data=2", "tensor=2"]).plan
    assert plan is not None
    for stage, expected in ((1, (1, 1, 2)), (2, (1, 2, 2)), (3, (2, 2, 2))):
        zero = estimate(replace(plan, recipe=replace(plan.recipe, zero=stage))).memory[0]
        base = plain.memory[0]
        shares = (
            base.parameters // zero.parameters,
            base.gradients // zero.gradients,
            base.optimizer // zero.optimizer,
        )
        assert shares == expected


def test_device_memory_says_fits_or_by_how_much():
    run = specc("plan", GPT2, "--set", "tensor=1", "--device-memory", "1GiB")
    assert run.code == 0, run.stderr
    assert "device memory 1.00 GiB: rank 0 does not fit" in run.stdout
    run = specc("plan", GPT2, "--device-memory", "80GiB")
    assert "device memory 80.0 GiB: rank 0 fits" in run.stdout


def test_report_json_is_one_document():
    run = specc("plan", MLP, "--format", "json", "--device-memory", "1MiB")
    assert run.code == 0
    document = json.loads(run.stdout)
    assert document["diagnostics"] == []
    found = document["report"]
    assert found["format"] == 1
    assert found["memory"][0]["total"] + found["memory"][0]["headroom"] == 2**20
    assert found["totals"]["fits"] is True
    assert {c["kind"] for c in found["collectives"]} == {"all-reduce"}


@pytest.mark.parametrize("size", ["80XB", "-1GiB", "0", "GiB", "80 GiB extra", "nan"])
def test_a_bad_device_memory_is_a_usage_error(size):
    with pytest.raises(SystemExit) as exited, contextlib.redirect_stderr(io.StringIO()) as err:
        main(["plan", MLP, "--device-memory", size])
    assert exited.value.code == 2
    assert "argument --device-memory:" in err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_sizes_read_and_written():
    assert parse_bytes("80GiB") == 80 * 2**30
    assert parse_bytes("40 GB") == 40 * 10**9
    assert parse_bytes("512") == 512
    assert size_text(80 * 2**30) == "80.0 GiB"
    assert size_text(1536) == "1.50 KiB"


def test_sequence_parallelism_splits_norms_and_the_all_reduces(tmp_path):
    """tests/cases/gpt2_sequence.yaml (1 layer) against the same spec without it."""
    spec = CASES / "gpt2_sequence.yaml"
    plain_spec = tmp_path / "gpt2_sequence.yaml"
    plain_spec.write_text(spec.read_text().replace("  sequence: true\n", ""))
    split = api.check(str(spec), ["layers=1"]).plan
    plan = api.check(str(plain_spec), ["layers=1"]).plan
    assert split is not None and plan is not None and split.recipe.sequence_parallel
    plain, split = estimate(plan), estimate(split)
    tokens, hidden, positions = 2 * 16, 64, 16
    # The block's two norms and the final one (input and 8 bytes a row) keep half on
    # each of 2 tensor ranks.
    norms = 3 * (4 * tokens * hidden + 8 * tokens)
    assert plain.stages[0].activations - split.stages[0].activations == norms // 2
    kinds = Counter(c.kind for c in split.collectives for _ in range(c.count))
    # Each all-reduce of a layer (the embedding's, 2 of the block forward and 2 in
    # backward, the head's) becomes a reduce-scatter and an all-gather: the same
    # traffic. The loss's sums stay.
    assert kinds["reduce-scatter"] == 1 + 4 + 1 + 1  # and the loss's own
    # The weights used on sequence slices have partial gradients, all-reduced: 3 norms'
    # scale and shift and 2 row-parallel biases; and the loss's row sums and mean.
    assert kinds["all-reduce"] == 3 * 2 + 2 + 2
    # The position table's gradient rows are each rank's, all-gathered.
    extra = (3 * 2 + 2) * hidden * 4 + positions * hidden * 4 // 2
    assert split.traffic(0, "tensor") - plain.traffic(0, "tensor") == pytest.approx(extra, abs=64)
