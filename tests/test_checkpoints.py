"""Training checkpoints move between plans: a run resumed under another plan continues
with the losses of the uninterrupted run.

tests/cases/gpt2_train.yaml (a tiny GPT-2 with AdamW, warmup and cosine decay,
clipping, a seed and no dropout) is built for five plans of one spec: tensor 2,
tensor 4 (its vocabulary padded from 250 to 252), data 2 x tensor 2, pipeline 2 (two
micro-batches, so that every plan's step sees the same 8 windows) and one process.
Each trains 8 steps on a token corpus the test writes, saving at step 4; another plan
resumes from that checkpoint and must give the losses of steps 5..8 within float32
rounding, through the package's own data, recipe and checkpoint code: tensor 2 -> 4
and back, data 2 x tensor 2 -> pipeline 2 and back, tensor 2 -> one process. Each rank
must write no more than its own slices (parameters and AdamW's two moments). A
checkpoint of another spec, a damaged one and one whose save crashed are refused or
skipped, leaving the weights as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.cli import specc
from tests.support.launcher import launch
from tests.support.paths import REPO, SPECS

pytest.importorskip("oneflow", reason="OneFlow is needed to run generated packages")
pytest.importorskip("safetensors", reason="checkpoints are safetensors files")
pytestmark = pytest.mark.launcher

SPEC = REPO / "tests" / "cases" / "gpt2_train.yaml"
DRIVER = REPO / "tests" / "launch" / "resume.py"
STEPS, SAVE_AT = 8, 4
TOLERANCE = 2e-5  # relative, on losses near 5.5: float32 rounding in another order
PLANS = {
    "tp2": ["tensor=2"],
    "tp4": ["tensor=4", "vocab_multiple=4"],
    "dp2tp2": ["data=2", "tensor=2", "micro_batch=4"],
    "pp2": ["tensor=1", "pipeline=2", "micro_batch=4", "accumulation=2"],
    "one": ["tensor=1"],
}
WORLD = {"tp2": 2, "tp4": 4, "dp2tp2": 4, "pp2": 2, "one": 1}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every plan built and copied under its own package name, and a token corpus."""
    root = tmp_path_factory.mktemp("checkpoints")
    for plan, sizes in PLANS.items():
        built = root / "build" / plan
        done = specc("build", str(SPEC), "-o", str(built), *(f"--set={s}" for s in sizes))
        assert done.code == 0, done.stderr
        shutil.copytree(built / "gpt2_train", root / "packages" / f"plan_{plan}")
    other = root / "build" / "other"
    sizes = ["hidden=48", "heads=4", "layers=2", "vocab=250", "positions=16", "seq=16"]
    sets = (f"--set={s}" for s in sizes)
    done = specc("build", str(SPECS / "gpt2.yaml"), "-o", str(other), *sets)
    assert done.code == 0, done.stderr
    shutil.copytree(other / "gpt2", root / "packages" / "other_spec")
    write_corpus(root / "corpus.bin")
    return root


def write_corpus(path: Path) -> None:
    """20,000 tokens below 250 with structure to learn: words of a small lexicon."""
    rng = np.random.default_rng(7)
    words = [rng.integers(0, 250, size=rng.integers(2, 7)) for _ in range(60)]
    tokens = np.concatenate([words[i] for i in rng.integers(0, 60, size=5000)])[:20000]
    tokens.astype("<u2").tofile(path)
    meta = {"dtype": "uint16", "vocab_size": 250}
    path.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")


def run_jobs(lab: Path, world: int, jobs: list[dict]) -> list[dict]:
    for job in jobs:
        job.setdefault("corpus", str(lab / "corpus.bin"))
        job.setdefault("steps", STEPS)
    spec = lab / f"jobs-{abs(hash(json.dumps(jobs)))}.json"
    spec.write_text(json.dumps(jobs), encoding="utf-8")
    packages = lab / "packages"
    if world == 1:
        done = subprocess.run(
            [sys.executable, str(DRIVER), str(spec)],
            cwd=lab,
            env={**os.environ, "PYTHONPATH": str(packages)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    run = launch(world, [str(DRIVER), str(spec)], pythonpath=[packages], cwd=lab, timeout=900)
    assert run.returncode == 0, run.explain()
    return run.records()


def full(plan: str, lab: Path, **extra: object) -> dict:
    return {
        "name": f"{plan} full",
        "package": f"plan_{plan}",
        "save_at": [SAVE_AT],
        "root": str(lab / "runs" / plan),
        **extra,
    }


def resumed(plan: str, source: str, lab: Path) -> dict:
    checkpoint = lab / "runs" / source / f"step-{SAVE_AT:08d}"
    return {"name": f"{plan} from {source}", "package": f"plan_{plan}", "resume": str(checkpoint)}


def by_job(records: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for record in records:
        found.setdefault(record["job"], []).append(record)
    return found


@pytest.fixture(scope="module")
def runs(lab: Path) -> dict[str, list[dict]]:
    """Three launches: sources on 2 processes, resumes and sources on 4, resumes on 2."""
    found = by_job(run_jobs(lab, 2, [full("tp2", lab), full("pp2", lab)]))
    found |= by_job(
        run_jobs(
            lab,
            4,
            [
                resumed("tp4", "tp2", lab),
                resumed("dp2tp2", "pp2", lab),
                full("tp4", lab),
                full("dp2tp2", lab),
            ],
        )
    )
    found |= by_job(run_jobs(lab, 2, [resumed("tp2", "tp4", lab), resumed("pp2", "dp2tp2", lab)]))
    found |= by_job(run_jobs(lab, 1, [resumed("one", "tp2", lab)]))
    return found


def losses(records: list[dict]) -> dict[int, float]:
    """The losses of a job, the same on every rank."""
    first = {int(k): v for k, v in records[0]["losses"].items()}
    for record in records[1:]:
        assert {int(k): v for k, v in record["losses"].items()} == first
    return first


@pytest.mark.parametrize(
    ("source", "target"),
    [("tp2", "tp4"), ("tp4", "tp2"), ("pp2", "dp2tp2"), ("dp2tp2", "pp2"), ("tp2", "one")],
)
def test_a_run_resumed_under_another_plan_continues_with_the_same_losses(
    runs: dict[str, list[dict]], source: str, target: str
) -> None:
    uninterrupted = losses(runs[f"{source} full"])
    continued = losses(runs[f"{target} from {source}"])
    assert sorted(continued) == list(range(SAVE_AT + 1, STEPS + 1))
    assert len(runs[f"{target} from {source}"]) == WORLD[target]
    worst = max(abs(continued[s] - uninterrupted[s]) / uninterrupted[s] for s in continued)
    print(f"{source} -> {target}: largest relative loss difference {worst:.2e}")
    assert worst <= TOLERANCE, (uninterrupted, continued)
    assert uninterrupted[STEPS] < uninterrupted[1]  # it learned


@pytest.mark.parametrize("plan", ["tp2", "tp4", "dp2tp2", "pp2"])
def test_each_rank_writes_only_its_slices(runs: dict[str, list[dict]], plan: str) -> None:
    """Parameters and AdamW's two moments: at most 3x the bytes a rank holds, plus the
    file's header; replicas (data ranks) leave writing to one of them."""
    records = runs[f"{plan} full"]
    total_held = sum(r["held"] for r in records)
    for record in records:
        print(
            f"{plan} rank {record['rank']}: wrote {record['written']:,} B, "
            f"holds {record['held']:,} B of parameters"
        )
        assert record["written"] <= 3 * record["held"] + 16_384
    if plan == "dp2tp2":  # ranks 2 and 3 replicate ranks 0 and 1
        written = {r["rank"]: r["written"] for r in records}
        assert written[2] == written[3] == 0 and written[0] > 0 and written[1] > 0
    else:
        assert sum(r["written"] for r in records) <= 3 * total_held + 16_384 * len(records)


def test_a_checkpoint_of_another_spec_is_refused_and_nothing_changes(lab: Path) -> None:
    other_root = lab / "runs" / "other"
    run_jobs(
        lab,
        1,
        [
            {
                "name": "other",
                "package": "other_spec",
                "save_at": [1],
                "steps": 1,
                "root": str(other_root),
            }
        ],
    )
    [record] = run_jobs(
        lab,
        1,
        [
            {
                "name": "refuse",
                "package": "plan_one",
                "expect_refusal": str(other_root / "step-00000001"),
            }
        ],
    )
    assert record["unchanged"]
    message = record["refused"]
    assert "`wte.weight` is [250, 48] in it, the model needs [250, 32]" in message
    assert "h.0.attn.query_key_value.weight" in message


def test_a_damaged_checkpoint_is_refused_naming_the_tensor(lab: Path, runs: dict) -> None:
    source = lab / "runs" / "tp2" / f"step-{SAVE_AT:08d}"
    damaged = lab / "damaged"
    shutil.copytree(source, damaged)
    data = bytearray((damaged / "rank-00001.safetensors").read_bytes())
    data[-5] ^= 0xFF  # a flipped byte in the last tensor's data
    (damaged / "rank-00001.safetensors").write_bytes(bytes(data))
    [record] = run_jobs(
        lab, 1, [{"name": "damaged", "package": "plan_one", "expect_refusal": str(damaged)}]
    )
    assert record["unchanged"]
    assert "is damaged" in record["refused"] and "rank-00001.safetensors" in record["refused"]
    (damaged / "rank-00000.safetensors").unlink()
    [record] = run_jobs(
        lab, 1, [{"name": "missing", "package": "plan_one", "expect_refusal": str(damaged)}]
    )
    assert record["unchanged"] and "cannot read rank-00000.safetensors" in record["refused"]


def test_a_save_that_crashes_leaves_the_previous_checkpoint(lab: Path) -> None:
    root = lab / "runs" / "crash"
    records = run_jobs(
        lab,
        1,
        [
            {
                "name": "crash",
                "package": "plan_one",
                "save_at": [2, 3],
                "steps": 3,
                "crash_while_saving_at": 3,
                "root": str(root),
            }
        ],
    )
    assert records == []  # died before printing
    assert (root / ".step-00000003.partial").is_dir()  # the slices it wrote
    assert not (root / "step-00000003").exists()
    assert json.loads((root / "latest").read_text())["checkpoint"] == "step-00000002"
    [record] = run_jobs(
        lab,
        1,
        [{"name": "after crash", "package": "plan_one", "steps": 3, "resume_latest": str(root)}],
    )
    assert sorted(int(s) for s in record["losses"]) == [3]
