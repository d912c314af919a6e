"""The model zoo: GPT-2, BERT and ViT specs count right, resize with --set, and match a twin.

Parameter counts are the published ones, computed once from the plan and once from the
built OneFlow model. Tiny versions (2 layers, hidden 64, 4 heads) run under the launcher
with (data, tensor) in {(1, 2), (2, 2)} against the single-process twin of
tests/launch/parity.py: output (logits), loss, every gradient, and three SGD steps;
GPT-2, BERT and the Llama also sequence parallel.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cases import renamed
from tests.support.cli import specc
from tests.support.launcher import Launch, launch
from tests.support.paths import REPO, SPECS

ZOO = ["gpt2", "bert_base", "bert_mlm", "vit_base16", "llama3_8b", "qwen2_7b"]
# transformers' counts (tests/fixtures/hf/llama3_8b_count.json has those it computed).
COUNTS = {
    "gpt2": 124_439_808,
    "bert_base": 109_482_240,
    "bert_mlm": 109_514_298,
    "vit_base16": 86_567_656,
    "llama3_8b": 8_030_261_248,
    "qwen2_7b": 7_615_616_512,
}
# Built at full size to count what OneFlow allocates: the ones that fit in this machine.
BUILT = ["gpt2", "bert_base", "bert_mlm", "vit_base16"]
DECODER = ["hidden=64", "heads=4", "kv_heads=2", "ffn=176", "layers=2", "vocab=128", "seq=16",
           "micro_batch=2"]  # fmt: skip
GPT2_PADDED = 124_475_904
PARITY = REPO / "tests" / "launch" / "parity.py"
TINY = {
    "gpt2": [
        "hidden=64",
        "heads=4",
        "layers=2",
        "vocab=125",
        "vocab_multiple=4",
        "seq=16",
        "positions=16",
        "micro_batch=2",
    ],
    "bert_base": [
        "hidden=64",
        "heads=4",
        "ffn=256",
        "layers=2",
        "vocab=100",
        "positions=16",
        "seq=16",
        "micro_batch=2",
    ],
    "vit_base16": [
        "image=32",
        "patch=8",
        "hidden=64",
        "heads=4",
        "ffn=256",
        "layers=2",
        "classes=10",
        "micro_batch=2",
    ],
    "llama3_8b": DECODER,
}


# Run sequence parallel too: token types and a pooler (BERT), rotary and GQA (Llama).
SEQUENCE_PARALLEL = ["gpt2", "bert_base", "llama3_8b"]


def sequence_parallel(name: str, out: Path, package: str | None = None) -> tuple[str, Path]:
    """A copy of a zoo spec with `sequence: true` under `parallel:`, named <name>_sp."""
    package = package or f"{name}_sp"
    return package, renamed(SPECS / f"{name}.yaml", package, out, parallel="sequence: true")


def overrides(pairs: list[str]) -> list[str]:
    return [part for pair in pairs for part in ("--set", pair)]


@pytest.mark.parametrize("name", ZOO)
def test_plan_counts_the_published_parameters(name):
    run = specc("plan", "--json", str(SPECS / f"{name}.yaml"))
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["parameter_count"] == COUNTS[name]


@pytest.mark.parametrize("name", ZOO)
def test_the_resize_hint_in_each_spec_works(name):
    """The command a zoo spec's header suggests for resizing it validates as written."""
    text = (SPECS / f"{name}.yaml").read_text(encoding="utf-8")
    (hint,) = [line for line in text.splitlines() if line.startswith("#   specc build ")]
    run = specc("validate", *hint.removeprefix("#   specc build ").split(), cwd=REPO)
    assert run.code == 0, run.stderr


def test_gpt2_with_padded_vocabulary_counts_the_padding():
    run = specc("plan", "--json", str(SPECS / "gpt2.yaml"), "--set", "vocab_multiple=128")
    plan = json.loads(run.stdout)
    assert plan["parameter_count"] == GPT2_PADDED
    (embedding,) = [s for s in plan["classes"][-1]["steps"] if s.get("kind") == "embedding"]
    assert embedding["attributes"] == {"vocab_size": 50257, "padded_vocab_size": 50304}


@pytest.mark.slow
def test_built_models_count_the_same(tmp_path):
    pytest.importorskip("oneflow")
    for name in BUILT:
        assert specc("build", str(SPECS / f"{name}.yaml"), "-o", str(tmp_path)).code == 0
    script = (
        "import importlib, json\n"
        f"for name in {BUILT!r}:\n"
        "    model = importlib.import_module(name).Model()\n"
        "    print(json.dumps({name: sum(p.numel() for p in model.parameters())}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    counted = {k: v for line in result.stdout.splitlines() for k, v in json.loads(line).items()}
    assert counted == {name: COUNTS[name] for name in BUILT}


def test_layer_count_does_not_change_the_code_size(tmp_path):
    sizes = []
    for layers in (12, 96):
        out = tmp_path / str(layers)
        assert (
            specc(
                "build", str(SPECS / "gpt2.yaml"), "-o", str(out), "--set", f"layers={layers}"
            ).code
            == 0
        )
        text = (out / "gpt2" / "model.py").read_text()
        assert f"for _ in range({layers})" in text
        sizes.append(len(re.sub(r"\d", "", text)))
    assert sizes[0] == sizes[1]


def test_overrides_are_validated_and_named(tmp_path):
    run = specc("validate", str(SPECS / "gpt2.yaml"), "--set", "heads=5", "--set", "hiden=64")
    assert run.code == 2
    assert "error[E210]: --set hiden=64: the spec has no size `hiden`" in run.stderr
    assert "did you mean `--set hidden=64`?" in run.stderr
    assert "heads 5 (heads=5 from --set)" not in run.stderr  # the note goes after the message
    assert "is not divisible by heads 5 in attention `attn` (heads=5 from --set)" in run.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny zoo packages per (data, tensor), with their plans for the twin."""
    built = {}
    specs = tmp_path_factory.mktemp("zoo_sequence_parallel")
    for data in (1, 2):
        out = tmp_path_factory.mktemp(f"zoo_data{data}")
        mesh = ["tensor=2", f"data={data}"]
        packages = [(name, SPECS / f"{name}.yaml", [*sizes, *mesh]) for name, sizes in TINY.items()]
        packages += [
            (*sequence_parallel(name, specs), [*TINY[name], *mesh]) for name in SEQUENCE_PARALLEL
        ]
        if data == 2:  # four processes: also the stream split over the sequence, staged
            staged = sequence_parallel("gpt2", specs, "gpt2_sp_pipeline")
            staging = ["tensor=2", "pipeline=2", "accumulation=2"]
            packages.append((*staged, [*TINY["gpt2"], *staging]))
        for package, spec, pairs in packages:
            assert specc("build", str(spec), "-o", str(out), *overrides(pairs)).code == 0
            plan = specc("plan", "--json", str(spec), *overrides(pairs))
            (out / f"{package}.json").write_text(plan.stdout, encoding="utf-8")
        built[data] = out
    return built


@pytest.mark.launcher
@pytest.mark.parametrize("data", [1, 2])
def test_tiny_zoo_matches_single_process_twin(tiny, data):
    pytest.importorskip("oneflow")
    out, world = tiny[data], 2 * data
    packages = [*TINY, *(f"{name}_sp" for name in SEQUENCE_PARALLEL)]
    packages += ["gpt2_sp_pipeline"] if data == 2 else []
    run: Launch = launch(
        world, [str(PARITY), *(f"{n}={out / n}.json" for n in packages)], pythonpath=[out], cwd=out
    )
    assert run.returncode == 0, run.explain()
    records = run.records()
    assert sorted((r["package"], r["rank"]) for r in records) == sorted(
        (n, rank) for n in packages for rank in range(world)
    )
    for record in records:
        assert record["errors"] == [], record
    worst = max(records, key=lambda r: r["max_diff"])
    print(
        f"largest difference from the twin: {worst['max_diff']:.3g} ({worst['package']}, "
        f"{worst['worst']})"
    )
