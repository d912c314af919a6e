"""Pipeline parallelism: stage assignment in the plan, and the generated code under the launcher.

Plans: balanced and explicit assignments, an uneven cut, a stack of blocks cut between
stages, and every layer placed exactly once. Runs: tiny GPT-2 and the 2D MLP with
pipeline=2 on 2 processes and data=2 x tensor=2 x pipeline=2 on 8: the eager model and
its gradients against the single-process twin, and three SGD steps of the generated
TrainGraph (4 micro-batches) against the twin's losses; and the tutorial's 2D MLP cut
into two stages still prints each rank's shape.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time

import pytest

from specc import api
from specc.lower.staging import balance
from specc.plan import Call, LayerStep
from tests.support.cli import specc
from tests.support.launcher import launch
from tests.support.paths import CASES, REPO, SPECS

PARITY = REPO / "tests" / "launch" / "parity.py"
GPT2_TINY = [
    "hidden=64",
    "heads=4",
    "layers=2",
    "vocab=125",
    "vocab_multiple=4",
    "seq=16",
    "positions=16",
    "micro_batch=2",
    "accumulation=4",
    "pipeline=2",
]


def sets(pairs):
    return [part for pair in pairs for part in ("--set", pair)]


def plan_of(spec, *pairs):
    run = specc("plan", "--json", str(spec), *sets(pairs))
    assert run.code == 0, run.stderr
    return json.loads(run.stdout)


def layer_stages(plan):
    """(layer, stage) for every top-level unit; repetitions as name.index."""
    found = []
    for step in plan["classes"][-1]["steps"]:
        if step["step"] == "layer":
            found.append((step["name"], step["stage"]))
        elif step["step"] == "repeat":
            found += [(f"{step['name']}.{i}", s) for i, s in enumerate(step["stages"])]
    return found


def test_gpt2_small_on_four_stages_is_balanced_by_time_and_memory():
    """The tied LM head computes as much as four blocks (logits over 50,257 words) and
    runs with its table: stage 0 holds no block."""
    plan = plan_of(SPECS / "gpt2.yaml", "pipeline=4", "accumulation=4")
    units = plan["stage_units"]
    assert units == [["wte", "lm_head"], ["wpe", "drop", "h.0-3"], ["h.4-7"], ["h.8-11", "ln_f"]]
    assert plan["stage_parameters"] == [38_597_376, 29_137_920, 28_351_488, 28_353_024]
    assert sum(plan["stage_parameters"]) == plan["parameter_count"]


def test_gpt2_small_on_two_stages_counts_the_tied_table_once():
    """Counted twice (as the head's weight too), the table left stage 0 with no block:
    39.4M | 85.1M parameters. Counted once, by time stage 0 takes four blocks beside
    the embeddings and the head, which computes about as much as 4.5 blocks."""
    plan = plan_of(SPECS / "gpt2.yaml", "pipeline=2", "accumulation=8")
    assert plan["stage_units"] == [["wte", "wpe", "drop", "h.0-3", "lm_head"], ["h.4-11", "ln_f"]]
    assert plan["stage_parameters"] == [67_735_296, 56_704_512]
    assert sum(plan["stage_parameters"]) == plan["parameter_count"]


def test_balancing_weighs_time_and_memory():
    from specc.lower.staging import Weight, balance_weights

    blocks = [Weight(flops=10, state=10, activations=10)] * 6
    # Equal blocks: equal time; the first stage keeps two micro-batches in flight, but
    # that alone does not outweigh a stage computing a block more.
    assert balance_weights(blocks, 2, micro_batches=2) == [0, 0, 0, 1, 1, 1]
    # A table heavy in memory and light in time: its stage takes two blocks, where by
    # time alone it would take three.
    table = Weight(flops=0, state=120, activations=0)
    assert balance_weights([table, *blocks], 2) == [0, 0, 0, 1, 1, 1, 1]
    assert balance([0, 10, 10, 10, 10, 10, 10], 2) == [0, 0, 0, 0, 1, 1, 1]


def test_every_layer_is_placed_exactly_once():
    plan = plan_of(SPECS / "gpt2.yaml", "pipeline=4", "accumulation=4", "layers=13")
    names = [name for name, _ in layer_stages(plan)]
    assert names == ["wte", "wpe", "drop", *(f"h.{i}" for i in range(13)), "ln_f", "lm_head"]
    stages = [stage for name, stage in layer_stages(plan) if name != "lm_head"]
    assert stages == sorted(stages) and set(stages) == {0, 1, 2, 3}


def test_placing_a_layer_keeps_every_field_but_its_module_and_stage():
    """LayerStep.on_stage spells its fields out (for speed): a field added later must
    not be dropped there."""
    result = api.check(str(SPECS / "gpt2.yaml"))
    assert result.plan is not None
    steps = [s for c in result.plan.classes for s in c.steps if isinstance(s, LayerStep)]
    module = Call("Moved")
    for step in steps:
        assert step.on_stage(3, module) == dataclasses.replace(step, module=module, stage=3)
    assert len(steps) > 5


def test_seven_equal_layers_on_two_stages_cut_unevenly():
    assert balance([5] * 7, 2) == [0, 0, 0, 1, 1, 1, 1]


def test_a_stack_of_blocks_is_cut_between_stages():
    plan = plan_of(SPECS / "vit_base16.yaml", "pipeline=2", "accumulation=2")
    blocks = [stage for name, stage in layer_stages(plan) if name.startswith("blocks.")]
    assert blocks == [0] * 6 + [1] * 6


def test_explicit_stages_per_layer_and_per_repetition(tmp_path):
    spec = tmp_path / "explicit.yaml"
    spec.write_text(
        "specc: 1\nname: explicit\nparallel: {pipeline: 3}\n"
        "inputs: [{name: x, shape: [8, 16]}]\n"
        "layers:\n"
        "  - {kind: linear, in_features: 16, out_features: 16}\n"
        "  - kind: repeat\n    name: body\n    times: 4\n    stages: [0, 1, 1, 2]\n"
        "    layers: [{kind: linear, in_features: 16, out_features: 16}, {kind: relu}]\n"
        "  - {kind: layernorm, stage: 2}\n"
        "training: {micro_batch: 2, accumulation: 4}\n"
    )
    plan = plan_of(spec)
    assert layer_stages(plan) == [
        ("linear_0", 0),
        ("body.0", 0),
        ("body.1", 1),
        ("body.2", 1),
        ("body.3", 2),
        ("layernorm_2", 2),
    ]
    built = tmp_path / "out"
    assert specc("build", str(spec), "-o", str(built)).code == 0
    text = (built / "explicit" / "model.py").read_text()
    assert "BODY_STAGES = [0] * 1 + [1] * 2 + [2] * 1" in text


def test_plan_text_lists_stages_with_their_parameters():
    run = specc("plan", str(CASES / "mlp_pipeline.yaml"))
    assert "  stage 0: ranks [[0, 1], [2, 3]], 544 parameters: up, gelu_1\n" in run.stdout
    assert "  stage 1: ranks [[4, 5], [6, 7]], 696 parameters: down, norm, head\n" in run.stdout


@pytest.fixture(scope="module")
def pipelined(tmp_path_factory):
    """Tiny GPT-2 and the pipelined MLP, for 2 and for 8 processes, with their plans."""
    built = {}
    for world, extra in ((2, ["data=1", "tensor=1"]), (8, ["data=2", "tensor=2"])):
        out = tmp_path_factory.mktemp(f"pipeline{world}")
        for spec, pairs in ((SPECS / "gpt2.yaml", GPT2_TINY), (CASES / "mlp_pipeline.yaml", [])):
            arguments = [*sets(pairs + extra)]
            assert specc("build", str(spec), "-o", str(out), *arguments).code == 0
            plan = specc("plan", "--json", str(spec), *arguments).stdout
            (out / f"{spec.stem}.json").write_text(plan, encoding="utf-8")
        built[world] = out
    return built


@pytest.mark.launcher
@pytest.mark.parametrize("world", [2, 8])
def test_pipelined_models_match_the_twin_eager_and_as_a_graph(pipelined, world):
    pytest.importorskip("oneflow")
    out = pipelined[world]
    started = time.monotonic()
    run = launch(
        world,
        [str(PARITY), "--graph", f"gpt2={out}/gpt2.json", f"mlp_pipeline={out}/mlp_pipeline.json"],
        pythonpath=[out],
        cwd=out,
        timeout=600,
    )
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.explain()
    records = run.records()
    assert len(records) == 2 * 2 * world  # two packages, eager and graph, on every rank
    for record in records:
        assert record["errors"] == [], record
    graph = [r for r in records if r.get("mode") == "graph"]
    worst = max(r["max_relative"] for r in graph)
    assert worst < 1e-4
    print(
        f"{world} processes: {elapsed:.1f} s, largest graph loss difference {worst:.2g} "
        f"(relative), largest eager difference "
        f"{max(r['max_diff'] for r in records if 'max_diff' in r):.2g}"
    )


@pytest.mark.launcher
def test_tutorial_mlp_cut_into_two_stages_prints_its_shapes(tmp_path):
    pytest.importorskip("oneflow")
    text = (SPECS / "huge_mlp_2d.yaml").read_text()
    text = text.replace("pipeline: 1", "pipeline: 2").replace("world_size: 4", "world_size: 8")
    spec = tmp_path / "huge_mlp_2d.yaml"
    spec.write_text(text)
    out = tmp_path / "out"
    run = specc("build", str(spec), "-o", str(out))
    assert run.code == 0, run.stderr
    launched = launch(8, ["-m", "huge_mlp_2d"], pythonpath=[out], cwd=out, timeout=600)
    assert launched.returncode == 0, launched.explain()
    shapes = dict(
        re.findall(
            r"rank (\d+) \(stage 1 of 2\): local output shape (\[[\d, ]+\])", launched.stdout
        )
    )
    assert shapes == {str(rank): "[16, 1024]" for rank in range(4, 8)}, launched.stdout
    waiting = re.findall(r"rank (\d) \(stage 0 of 2\): the output is on stage 1", launched.stdout)
    assert sorted(waiting) == ["0", "1", "2", "3"]
