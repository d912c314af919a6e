"""The planner, `specc plan SPEC --world N`: every layout of N devices the spec allows,
estimated and ranked, with the reason each rejected one fails; `--apply` writes the
chosen sizes into the spec and changes nothing else."""

from __future__ import annotations

import contextlib
import io

import pytest

from specc import planner
from specc.cli import main
from tests.support.cli import specc
from tests.support.paths import SPECS

GIB = 2**30
ZOO = {
    "gpt2": ["vocab_multiple=128"],
    "bert_base": ["vocab_multiple=128"],
    "vit_base16": [],
}


def plan(name, world, batch, overrides=None, memory=80 * GIB):
    path = SPECS / f"{name}.yaml"
    return planner.plan_world(
        str(path),
        path.read_text(),
        ZOO[name] if overrides is None else overrides,
        world=world,
        gpus_per_node=8,
        device_memory=memory,
        global_batch=batch,
    )


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize(
    "world, batch", [(8, 64), (16, 128), pytest.param(64, 512, marks=pytest.mark.slow)]
)
def test_every_layout_is_ranked_or_rejected_with_its_reason(name, world, batch):
    planned = plan(name, world, batch)
    meshes = {(o.data, o.tensor, o.pipeline) for o in planned.ranked + planned.rejected}
    assert meshes == set(planner._meshes(world))
    assert planned.ranked, planned.rejected
    for option in planned.ranked:
        assert option.data * option.tensor * option.pipeline == world
        assert option.micro_batch * option.data * option.accumulation == batch
        assert option.tensor <= 8
        assert option.report is not None and option.reason is None
    for option in planned.rejected:
        assert option.reason
    keys = [planner._rank(option) for option in planned.ranked]
    assert keys == sorted(keys)
    # Tensor groups stay inside a node of 8.
    assert all("does not fit in a node of 8" in o.reason for o in planned.rejected if o.tensor > 8)


def test_gpt2_small_on_64_devices():
    planned = plan("gpt2", 64, 512)
    best = planned.best_per_mesh
    # 124M parameters fit on one device many times over: data parallelism exposes no
    # communication the backward pass does not hide, and has no bubble.
    assert (best[0].data, best[0].tensor, best[0].pipeline) == (64, 1, 1)
    assert best[0].fits and best[0].bubble == 0
    reasons = {(o.data, o.tensor, o.pipeline): o.reason for o in planned.rejected}
    assert reasons[(8, 8, 1)].startswith("E301 heads 12 of attention `attn`")
    assert reasons[(1, 1, 64)].startswith("E315 pipeline 64 needs at least 64 layers")
    assert reasons[(4, 16, 1)] == "a tensor group of 16 does not fit in a node of 8"


def test_the_step_time_paces_the_slowest_stage_over_a_1f1b_schedule():
    planned = plan("gpt2", 16, 64)
    for option in planned.ranked:
        assert option.report is not None
        slowest = max(3 * stage.flops for stage in option.report.stages) / planner.DEVICE_FLOPS
        slots = option.accumulation + option.pipeline - 1
        assert option.step == pytest.approx(slowest * slots + option.exposed)
    # Data 16 spans two nodes of 8: its gradient reduction crosses the slower link and
    # outlasts the backward pass. Two stages of data 8 keep it inside a node and win,
    # bubble and all.
    best = {(o.data, o.tensor, o.pipeline): o for o in planned.best_per_mesh}
    flat, staged = best[16, 1, 1], best[8, 1, 2]
    assert flat.bubble == 0 < staged.bubble
    assert flat.exposed > staged.exposed
    assert planned.ranked.index(staged) < planned.ranked.index(flat)


def test_data_parallel_step_time_is_the_known_flops_formula():
    """6 x parameters x tokens, plus 12 x layers x seq x hidden x tokens for attention
    (Kaplan et al.; Megatron's MFU), over the devices: an estimate from the layers'
    own cost formulas must land on it."""
    planned = plan("gpt2", 64, 512)
    best = planned.best_per_mesh[0]
    assert (best.data, best.tensor, best.pipeline) == (64, 1, 1)
    parameters, tokens, layers, seq, hidden = 124_439_808, 512 * 1024, 12, 1024, 768
    flops = 6 * parameters * tokens + 12 * layers * seq * hidden * tokens
    assert best.step == pytest.approx(flops / (64 * planner.DEVICE_FLOPS), rel=0.05)


def test_what_does_not_fit_comes_last():
    planned = plan("gpt2", 8, 64, memory=3 * GIB)
    fits = [option.fits for option in planned.ranked]
    assert fits == sorted(fits, reverse=True)
    assert fits[0] and not fits[-1]


def test_a_batch_data_does_not_divide_is_a_reason():
    planned = plan("vit_base16", 16, 8)
    reasons = {(o.data, o.tensor, o.pipeline): o.reason for o in planned.rejected}
    assert reasons[(16, 1, 1)] == "data 16 does not divide the global batch of 8"


def test_apply_writes_only_the_sizes(tmp_path):
    spec = tmp_path / "gpt2.yaml"
    original = (SPECS / "gpt2.yaml").read_text()
    spec.write_text(original)
    run = specc(
        "plan", str(spec), "--world", "8", "--global-batch", "64", "--apply",
        "--set", "vocab_multiple=128",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert "wrote data 8 x tensor 1 x pipeline 1, micro-batch 8 x 1" in run.stderr
    changed = spec.read_text().splitlines(keepends=True)
    before = original.splitlines(keepends=True)
    assert len(changed) == len(before)
    assert [(a, b) for a, b in zip(before, changed, strict=True) if a != b] == [
        ("  data: 1\n", "  data: 8\n")
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["gpt2.yaml"]  # written by a rename
    planned = specc("plan", str(spec), "--set", "vocab_multiple=128")
    assert "mesh: data=8 x tensor=1 x pipeline=1 = 8 ranks" in planned.stdout


def test_apply_keeps_comments_quoting_and_flow_style(tmp_path):
    spec = tmp_path / "mlp.yaml"
    text = (
        "# a comment\nspecc: 1\nname: mlp\n"
        "parallel: {data: '${data}', tensor: 2}  # flow style, a literal size\n"
        "inputs:\n  - {name: x, shape: ['${micro * data * steps}', 16]}\n"
        "sizes: {micro: 8, steps: 1, data: 1}\n"
        "layers:\n  - {kind: linear, in_features: 16, out_features: 64, split: col}\n"
        "  - {kind: relu}\n  - {kind: linear, in_features: 64, out_features: 16, split: row}\n"
        "loss: {kind: cross_entropy}\n"
        'training: {micro_batch: "${micro}", accumulation: "${steps}"}  # quoted\n'
    )
    spec.write_text(text)
    run = specc("plan", str(spec), "--world", "4", "--apply")
    assert run.code == 0, run.stdout + run.stderr
    # Tiny layers expose no communication to speak of: the ties go to no bubble and
    # the largest micro-batch, on tensor 4.
    assert "wrote data 1 x tensor 4 x pipeline 1, micro-batch 8 x 1" in run.stderr
    assert spec.read_text() == text.replace("tensor: 2}", "tensor: 4}")
    run = specc("plan", str(spec), "--world", "4", "--global-batch", "16", "--apply")
    assert "wrote data 1 x tensor 4 x pipeline 1, micro-batch 16 x 1" in run.stderr
    assert spec.read_text() == text.replace("tensor: 2}", "tensor: 4}").replace(
        "{micro: 8,", "{micro: 16,"
    )


def test_apply_refuses_sizes_from_set(tmp_path):
    spec = tmp_path / "gpt2.yaml"
    spec.write_text((SPECS / "gpt2.yaml").read_text())
    run = specc(
        "plan", str(spec), "--world", "8", "--global-batch", "64", "--apply",
        "--set", "vocab_multiple=128", "--set", "data=2",
    )  # fmt: skip
    assert run.code == 2
    assert "data come from --set" in run.stderr
    assert spec.read_text() == (SPECS / "gpt2.yaml").read_text()


@pytest.mark.parametrize(
    "arguments, says",
    [
        (["--world", "0"], "argument --world: 0 is not 1 or more"),
        (["--world", "eight"], "argument --world: 'eight' is not a whole number"),
        (["--world", "8", "--gpus-per-node", "-1"], "argument --gpus-per-node"),
        (["--world", "8", "--device-memory", "80XB"], "argument --device-memory"),
        (["--world", "8", "--global-batch", "0"], "argument --global-batch"),
    ],
)
def test_bad_arguments_are_usage_errors(arguments, says):
    with pytest.raises(SystemExit) as exited, contextlib.redirect_stderr(io.StringIO()) as err:
        main(["plan", str(SPECS / "gpt2.yaml"), *arguments])
    assert exited.value.code == 2
    assert says in err.getvalue() and "Traceback" not in err.getvalue()


def test_apply_needs_world():
    run = specc("plan", str(SPECS / "gpt2.yaml"), "--apply")
    assert run.code == 2
    assert "--apply needs --world N" in run.stderr
