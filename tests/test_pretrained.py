"""The zoo computes what HuggingFace transformers computes, from the same checkpoints.

The fixtures in tests/fixtures/hf/ are tiny GPT-2, BERT, BERT-MLM, ViT, Llama and Qwen2
models made by transformers (`make hf-fixtures`), with their inputs (padded ones
included) and outputs.
Each zoo spec, resized to the fixture with --set, is built for four plans (one
process; tensor 2; data 2 x tensor 2; pipeline 2), loads the fixture with its
generated `load_pretrained` (each rank reading only its slices) and must return every
output within 1e-5 of transformers' (relative to the largest value). The tensor-2 run
also trains one step and saves the weights back; transformers' `from_pretrained` then
loads them and must compute what specc computed (tests/support/hf.py runs it in the
separate environment .venv-hf, made by `make hf-venv`). A checkpoint with a tensor
missing, one too many or one of the wrong shape is refused with every problem named,
and the model is left as it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import specc
from tests.support.hf import HF_PYTHON, hf_unavailable_reason
from tests.support.launcher import launch
from tests.support.paths import REPO, SPECS

pytest.importorskip("oneflow", reason="OneFlow is needed to run generated packages")
pytest.importorskip("safetensors", reason="load_pretrained reads safetensors")
pytestmark = pytest.mark.launcher

FIXTURES = REPO / "tests" / "fixtures" / "hf"
DRIVER = REPO / "tests" / "launch" / "pretrained.py"
BATCH = 4
# The tiny Llama and Qwen2 of the fixtures: grouped-query (4 heads, 2 KV heads), SwiGLU.
DECODER = ["hidden=64", "heads=4", "kv_heads=2", "ffn=176", "layers=2", "vocab=128", "seq=16"]
# Each zoo spec resized to its fixture, what it reads, and which inputs give which
# outputs (the names of tests/fixtures/hf/<case>/reference.safetensors).
ZOO = {
    "gpt2": {
        "spec": "gpt2.yaml",
        "sizes": ["hidden=64", "heads=4", "layers=2", "vocab=125", "positions=16", "seq=16",
                  "vocab_multiple=4"],
        "fixture": "gpt2",
        "calls": [
            {"inputs": ["input_ids"], "outputs": ["logits"]},
            {"inputs": ["input_ids", "attention_mask"], "outputs": ["logits_masked"]},
        ],
    },
    "bert_base": {
        "spec": "bert_base.yaml",
        "sizes": ["hidden=64", "heads=4", "ffn=256", "layers=2", "vocab=100", "positions=16",
                  "seq=16"],
        "fixture": "bert",
        "calls": [
            {
                "inputs": ["input_ids", "token_type_ids", "attention_mask"],
                "outputs": ["last_hidden_state", "pooler_output"],
            }
        ],
    },
    "bert_mlm": {
        "spec": "bert_mlm.yaml",
        "sizes": ["hidden=64", "heads=4", "ffn=256", "layers=2", "vocab=100", "positions=16",
                  "seq=16"],
        "fixture": "bert_mlm",
        "padding": ["vocab_multiple=8"],
        "calls": [
            {"inputs": ["input_ids", "token_type_ids", "attention_mask"], "outputs": ["logits"]}
        ],
    },
    "vit_base16": {
        "spec": "vit_base16.yaml",
        "sizes": ["image=32", "patch=8", "hidden=64", "heads=4", "ffn=256", "layers=2",
                  "classes=10"],
        "fixture": "vit",
        "calls": [{"inputs": ["pixel_values"], "outputs": ["last_hidden_state", "logits"]}],
    },
    "llama3_8b": {
        "spec": "llama3_8b.yaml",
        "sizes": DECODER,
        "fixture": "llama",
        "calls": [
            {"inputs": ["input_ids"], "outputs": ["logits"]},
            {"inputs": ["input_ids", "attention_mask"], "outputs": ["logits_masked"]},
        ],
    },
    "qwen2_7b": {
        "spec": "qwen2_7b.yaml",
        "sizes": DECODER,
        "fixture": "qwen2",
        "calls": [
            {"inputs": ["input_ids"], "outputs": ["logits"]},
            {"inputs": ["input_ids", "attention_mask"], "outputs": ["logits_masked"]},
        ],
    },
}  # fmt: skip
PLANS = {
    "one process": (1, ["data=1", "tensor=1", "pipeline=1"]),
    "tensor 2": (2, ["data=1", "tensor=2", "pipeline=1"]),
    "data 2 x tensor 2": (4, ["data=2", "tensor=2", "pipeline=1"]),
    "pipeline 2": (2, ["data=1", "tensor=1", "pipeline=2"]),
}


def overrides(pairs: list[str]) -> list[str]:
    return [part for pair in pairs for part in ("--set", pair)]


def build(out: Path, plan: list[str], names: list[str]) -> None:
    data = int(next(p for p in plan if p.startswith("data=")).split("=")[1])
    for name in names:
        model = ZOO[name]
        pairs = [*model["sizes"], *model.get("padding", []), *plan]
        pairs.append(f"micro_batch={BATCH // data}")
        run = specc("build", str(SPECS / model["spec"]), "-o", str(out), *overrides(pairs))
        assert run.code == 0, run.stderr


def cases(names: list[str], save: Path | None = None) -> list[dict]:
    found = []
    for name in names:
        model = ZOO[name]
        fixture = FIXTURES / model["fixture"]
        case = {
            "name": name,
            "package": name,
            "checkpoint": str(fixture),
            "reference": str(fixture / "reference.safetensors"),
            "calls": model["calls"],
        }
        if save is not None:
            case["save"] = str(save / name)
        found.append(case)
    return found


@pytest.mark.parametrize("plan", list(PLANS))
def test_zoo_computes_what_transformers_computes(plan, tmp_path):
    world, sizes = PLANS[plan]
    names = list(ZOO)
    build(tmp_path, sizes, names)
    save = tmp_path / "saved" if plan == "tensor 2" else None
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps(cases(names, save)), encoding="utf-8")
    run = launch(world, [str(DRIVER), str(spec)], pythonpath=[tmp_path], cwd=tmp_path)
    assert run.returncode == 0, run.explain()
    records = run.records()
    assert sorted((r["case"], r["rank"]) for r in records) == sorted(
        (n, rank) for n in names for rank in range(world)
    )
    for record in records:
        assert record["errors"] == [], record
    worst = {r["case"]: max(r["differences"].values()) for r in records if r["rank"] == 0}
    print(f"{plan}: largest relative difference from transformers per model: {worst}")
    if save is not None:
        check_saved_weights_load_in_transformers(save, names)


def check_saved_weights_load_in_transformers(saved: Path, names: list[str]) -> None:
    reason = hf_unavailable_reason()
    if reason:
        pytest.skip(reason)
    for name in names:
        model = ZOO[name]
        fixture = FIXTURES / model["fixture"]
        reference = json.loads((fixture / "reference.json").read_text(encoding="utf-8"))
        call = model["calls"][0]
        result = subprocess.run(
            [str(HF_PYTHON), str(REPO / "tests" / "support" / "hf.py"), str(saved / name),
             reference["model_class"], str(fixture / "reference.safetensors"),
             ",".join(call["inputs"]), ",".join(call["outputs"])],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        differences = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"{name}: transformers on specc's saved weights, relative difference {differences}")
        assert max(differences.values()) <= 1e-5, differences


def test_a_checkpoint_that_does_not_fit_is_refused_whole(tmp_path):
    """Missing, unexpected and misshaped tensors are each named; nothing is loaded."""
    from safetensors.numpy import load_file, save_file

    build(tmp_path, PLANS["one process"][1], ["gpt2"])
    tensors = load_file(str(FIXTURES / "gpt2" / "model.safetensors"))
    broken = tmp_path / "broken"
    broken.mkdir()
    del tensors["transformer.h.1.ln_2.bias"]
    tensors["transformer.h.0.attn.c_proj.weight"] = tensors["transformer.h.0.attn.c_proj.weight"][
        :, :32
    ]
    tensors["transformer.extra.weight"] = tensors["transformer.ln_f.weight"]
    save_file(tensors, str(broken / "model.safetensors"))
    script = (
        "import json, numpy as np, gpt2\n"
        "model = gpt2.Model()\n"
        "before = {k: v.to_local().numpy().copy() for k, v in model.state_dict().items()}\n"
        "try:\n"
        f"    gpt2.load_pretrained(model, {str(broken)!r})\n"
        "except gpt2.CheckpointError as error:\n"
        "    message = str(error)\n"
        "after = model.state_dict()\n"
        "same = all(np.array_equal(before[k], v.to_local().numpy()) for k, v in after.items())\n"
        "print(json.dumps({'message': message, 'unchanged': same}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    message = outcome["message"]
    assert "h.1.ln_2.bias: the checkpoint has no tensor `transformer.h.1.ln_2.bias`" in message
    assert (
        "h.0.attn.dense.weight: needs [64, 64] from ['transformer.h.*.attn.c_proj.weight'], "
        "found [(64, 32)]"
    ) in message
    assert "the checkpoint has tensors the model does not use: `transformer.extra.weight`" in (
        message
    )
    assert outcome["unchanged"], "the model changed although the checkpoint was refused"


def test_sharded_checkpoints_load_as_one(tmp_path):
    """`model.safetensors.index.json` and its shards read as the single file does."""
    build(tmp_path, PLANS["one process"][1], ["gpt2"])
    fixture = FIXTURES / "gpt2"
    case = cases(["gpt2"])[0]
    case["checkpoint"] = str(FIXTURES / "gpt2_sharded")
    case["reference"] = str(fixture / "reference.safetensors")
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps([case]), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(DRIVER), str(spec)], cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)}, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["errors"] == [], record
