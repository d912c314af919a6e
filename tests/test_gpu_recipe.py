"""The parts of the recipe OneFlow 0.9 only does on a GPU: mixed precision with loss
scaling, and ZeRO.

On a CPU, OneFlow's graph inserts no cast for `enable_amp` (the run is fp32 whatever
precision says) and ZeRO aborts every rank once it shards anything
(../shared/research/oneflow-cpu-features.md). So everywhere: specc says so on device
cpu (W504 for precision, E318 for ZeRO over data ranks, neither on device cuda), and a
CPU run of precision fp16 compiles no cast, keeps its loss scaling and computes torch's
fp32 losses, which is what W504 claims; with `device: auto` the TrainGraph refuses
ZeRO on CPUs with a message, where OneFlow would abort. Where CUDA is present,
tests/cases/gpt2_recipe.yaml on device cuda trains the fixture's batches
(tests/fixtures/hf/gpt2_train) and must
  - fp16 (dynamic and static loss scale), bf16: compile casts to the half type, keep
    fp32 weights, loss scaling for fp16 only, and come within 5e-3 (fp16: 11-bit
    mantissa) or 2e-2 (bf16: 8 bits) of torch's fp32 losses on every step, while not
    equal to the fp32 run's (the arithmetic did change);
  - ZeRO stages 1, 2, 3 on data 2 (two GPUs): the fp32 run's losses, and each rank
    holding at most 55% of the optimizer state bytes it holds without ZeRO.
TF32 is turned off (ONEFLOW_EP_CUDA_ENABLE_TF32_EXECUTION=0) so that fp32 is fp32.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import specc
from tests.support.launcher import launch
from tests.support.paths import REPO

flow = pytest.importorskip("oneflow", reason="OneFlow is needed to run generated packages")
pytest.importorskip("safetensors", reason="load_pretrained reads safetensors")
pytestmark = pytest.mark.launcher

SPEC = REPO / "tests" / "cases" / "gpt2_recipe.yaml"
DRIVER = REPO / "tests" / "launch" / "recipe.py"
FIXTURES = REPO / "tests" / "fixtures" / "hf"
REFERENCE = FIXTURES / "gpt2_train"
GPUS = flow.cuda.device_count() if flow.cuda.is_available() else 0
NEEDS_CUDA = "needs CUDA: OneFlow 0.9's amp/ZeRO do nothing/abort on CPU"
needs_cuda = pytest.mark.skipif(GPUS < 1, reason=NEEDS_CUDA)
needs_two_gpus = pytest.mark.skipif(GPUS < 2, reason=f"{NEEDS_CUDA}; ZeRO over data 2 needs 2 GPUs")
FP32_TOLERANCE = 1e-4  # relative: a GPU's fp32 kernels sum in other orders than torch's CPU
HALF_TOLERANCE = {"float16": 5e-3, "bfloat16": 2e-2}
CASTS = {"float16": "kFloat16", "bfloat16": "kBFloat16"}


def torch_losses() -> list[float]:
    reference = json.loads((REFERENCE / "reference.json").read_text(encoding="utf-8"))
    return reference["runs"]["adamw"]["losses"]


def variant(path: Path, device: str, **training: object) -> Path:
    """The case spec on `device`, with more `training:` keys (after its `seed:`)."""
    text = SPEC.read_text(encoding="utf-8")
    text, found = re.subn(r"(?m)^device: cpu$", f"device: {device}", text)
    assert found == 1
    extra = "".join(f"\n  {key}: {json.dumps(value)}" for key, value in training.items())
    text, found = re.subn(r"(?m)^(  seed: \d+)$", lambda m: m.group(1) + extra, text)
    assert found == 1
    path.write_text(text, encoding="utf-8")
    return path


def build(root: Path, name: str, spec: Path, *sizes: str) -> dict:
    """A package of `spec` under the name `name`, and its job for the driver."""
    built = root / "build" / name
    done = specc("build", str(spec), "-o", str(built), *(f"--set={s}" for s in sizes))
    assert done.code == 0, done.stderr
    shutil.copytree(built / "gpt2_recipe", root / "packages" / name)
    return {
        "name": name,
        "package": name,
        "checkpoint": str(FIXTURES / "gpt2"),
        "reference": str(REFERENCE / "reference.safetensors"),
    }


def run_alone(root: Path, jobs: list[dict]) -> dict[str, dict]:
    """The jobs in one process (no launcher): each job's record."""
    job_file = root / "jobs.json"
    job_file.write_text(json.dumps(jobs), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(root / "packages")}
    env["ONEFLOW_EP_CUDA_ENABLE_TF32_EXECUTION"] = "0"
    done = subprocess.run(
        [sys.executable, str(DRIVER), str(job_file)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {record["job"]: record for record in records}


def relative(got: list[float], want: list[float]) -> float:
    assert len(got) == len(want) and all(math.isfinite(x) for x in got), got
    return max(abs(a - b) / abs(b) for a, b in zip(got, want, strict=True))


# --- everywhere: what specc and a CPU say -------------------------------------------------


@pytest.mark.parametrize(
    ("device", "training", "code", "expected"),
    [
        ("cpu", {"precision": "fp16"}, 0, "warning[W504]: precision fp16 computes in fp32"),
        ("cpu", {"precision": "bf16"}, 0, "warning[W504]: precision bf16 computes in fp32"),
        ("cpu", {"zero": 1}, 2, "error[E318]: ZeRO stage 1 shards over data ranks"),
        ("cuda", {"precision": "fp16"}, 0, None),
        ("cuda", {"precision": "bf16", "zero": 3}, 0, None),
    ],
)
def test_specc_says_what_only_a_gpu_does(tmp_path, device, training, code, expected):
    spec = variant(tmp_path / "gpt2_recipe.yaml", device, **training)
    run = specc("validate", str(spec), "--set=data=2", "--set=micro_batch=2")
    assert run.code == code, run.stderr
    if expected is None:
        assert "W504" not in run.stderr and "E318" not in run.stderr, run.stderr
    else:
        assert expected in run.stderr, run.stderr


def test_zero_without_data_ranks_is_accepted_on_cpu(tmp_path):
    """Nothing to shard on one data rank: OneFlow runs it, and specc lets it."""
    spec = variant(tmp_path / "gpt2_recipe.yaml", "cpu", zero=1)
    run = specc("validate", str(spec))
    assert run.code == 0 and "E318" not in run.stderr, run.stderr


def test_cpu_mixed_precision_compiles_no_cast_and_computes_fp32(tmp_path):
    """What W504 says: on CPU, fp16 keeps its loss scaling but no op runs in half."""
    spec = variant(tmp_path / "gpt2_recipe.yaml", "cpu", precision="fp16")
    jobs = [build(tmp_path, "fp16_on_cpu", spec) | {"steps": 3}]
    record = run_alone(tmp_path, jobs)["fp16_on_cpu"]
    assert record["casts"] == {}, record["casts"]
    assert record["loss_scaling"] == ["dynamic_loss_scale_schedule"], record
    assert record["parameter_dtypes"] == ["oneflow.float32"]
    assert relative(record["losses"], torch_losses()[:3]) <= 1e-5, record["losses"]


# --- with CUDA ----------------------------------------------------------------------------


@pytest.mark.skipif(GPUS > 0, reason="on GPUs ZeRO runs: nothing to refuse")
def test_zero_on_cpus_is_refused_by_the_train_graph_not_an_abort(tmp_path):
    """`device: auto` passes validation (it may mean GPUs); on CPUs the TrainGraph says
    why it cannot shard, where OneFlow would abort every rank."""
    build(tmp_path, "zero_auto", variant(tmp_path / "z.yaml", "auto", zero=1), "data=2")
    driver = tmp_path / "refuse_zero.py"
    driver.write_text(
        "import json\n"
        "import oneflow as flow\n"
        "import zero_auto\n"
        "try:\n"
        "    zero_auto.TrainGraph(zero_auto.Model())\n"
        "    said = None\n"
        "except RuntimeError as error:\n"
        "    said = str(error)\n"
        "print(json.dumps({'rank': flow.env.get_rank(), 'said': said}), flush=True)\n",
        encoding="utf-8",
    )
    run = launch(2, [str(driver)], pythonpath=[tmp_path / "packages"], cwd=tmp_path)
    assert run.returncode == 0, run.explain()
    said = {record["said"] for record in run.records()}
    assert len(run.records()) == 2 and len(said) == 1, run.explain()
    (message,) = said
    assert message is not None and message.startswith("ZeRO stage 1 needs GPUs: "), message
    assert "set `zero: 0`" in message


@needs_cuda
def test_mixed_precision_trains_in_half_close_to_fp32(tmp_path):
    recipes = {
        "fp32": {},
        "fp16": {"precision": "fp16"},
        "fp16_static": {"precision": "fp16", "loss_scale": 1024.0},
        "bf16": {"precision": "bf16"},
    }
    jobs = [
        build(tmp_path, name, variant(tmp_path / f"{name}.yaml", "cuda", **training))
        for name, training in recipes.items()
    ]
    records = run_alone(tmp_path, jobs)
    want = torch_losses()
    fp32 = records["fp32"]
    assert not {"kFloat16", "kBFloat16"} & set(fp32["casts"]), fp32["casts"]
    assert relative(fp32["losses"], want) <= FP32_TOLERANCE, fp32["losses"]
    for name, half, scaling in (
        ("fp16", "float16", ["dynamic_loss_scale_schedule"]),
        ("fp16_static", "float16", []),
        ("bf16", "bfloat16", []),
    ):
        record = records[name]
        print(f"{name}: casts {record['casts']}, losses {record['losses']}")
        assert record["casts"].get(CASTS[half], 0) > 0, (name, record["casts"])
        assert record["loss_scaling"] == scaling, (name, record["loss_scaling"])
        assert record["parameter_dtypes"] == ["oneflow.float32"], name  # fp32 master weights
        assert relative(record["losses"], want) <= HALF_TOLERANCE[half], (name, record)
        assert record["losses"] != fp32["losses"], f"{name} computed exactly what fp32 did"


@needs_two_gpus
def test_zero_shards_the_optimizer_state_over_data_ranks(tmp_path, monkeypatch):
    monkeypatch.setenv("ONEFLOW_EP_CUDA_ENABLE_TF32_EXECUTION", "0")
    sizes = ("data=2", "micro_batch=2")
    jobs = [
        build(tmp_path, f"zero{stage}", variant(tmp_path / f"z{stage}.yaml", "cuda", zero=stage),
              *sizes)
        for stage in (0, 1, 2, 3)
    ]  # fmt: skip
    job_file = tmp_path / "jobs.json"
    job_file.write_text(json.dumps(jobs), encoding="utf-8")
    run = launch(2, [str(DRIVER), str(job_file)], pythonpath=[tmp_path / "packages"],
                 cwd=tmp_path, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.explain()
    records: dict[tuple[str, int], dict] = {(r["job"], r["rank"]): r for r in run.records()}
    want = torch_losses()
    for stage in (0, 1, 2, 3):
        for rank in (0, 1):
            record, plain = records[(f"zero{stage}", rank)], records[("zero0", rank)]
            assert relative(record["losses"], want) <= FP32_TOLERANCE, record
            assert relative(record["losses"], plain["losses"]) <= FP32_TOLERANCE, record
            assert record["moment_tensors"] == plain["moment_tensors"] > 0
            if stage:
                share = record["moment_bytes"] / plain["moment_bytes"]
                print(f"ZeRO stage {stage}, rank {rank}: optimizer state {share:.0%} of plain")
                assert share <= 0.55, (stage, rank, record["moment_bytes"], plain["moment_bytes"])
