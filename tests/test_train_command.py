"""`python -m <package> train`: the recipe on a token file, logged, checkpointed, stopped.

tests/cases/gpt2_train.yaml on tensor 2 trains 6 steps under the launcher: rank 0
prints progress and writes JSON lines whose learning rates follow the recipe's
schedule (2 warmup steps from 0, then cosine to 3e-4 at step 8) and whose first loss
is the true one, near ln 250 for a fresh model, not a tensor rank's half of it; it
evaluates on the held-out part and saves every 3 steps, keeping two checkpoints.
Resumed for a long run, it gets SIGTERM: every rank stops after the same step, saves
it, and exits with 128 + 15. Bad data is a clear error with exit code 2.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.cli import specc
from tests.support.launcher import launch, start
from tests.support.paths import REPO

pytest.importorskip("oneflow", reason="OneFlow is needed to run generated packages")
pytestmark = pytest.mark.launcher

SPEC = REPO / "tests" / "cases" / "gpt2_train.yaml"
LR, MIN_LR, WARMUP, DECAY_END = 3e-3, 3e-4, 2, 8


def scheduled(step: int) -> float:
    """The recipe's learning rate for the step with this index (0 first)."""
    if step < WARMUP:
        return LR * step / WARMUP
    progress = min((step - WARMUP) / (DECAY_END - WARMUP), 1.0)
    return MIN_LR + (LR - MIN_LR) * 0.5 * (1 + math.cos(math.pi * progress))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    done = specc("build", str(SPEC), "-o", str(root))
    assert done.code == 0, done.stderr
    done = specc("build", str(SPEC), "-o", str(root / "one"), "--set=tensor=1")
    assert done.code == 0, done.stderr
    rng = np.random.default_rng(3)
    words = [rng.integers(0, 250, size=rng.integers(2, 7)) for _ in range(40)]
    tokens = np.concatenate([words[i] for i in rng.integers(0, 40, size=3000)])
    tokens.astype("<u2").tofile(root / "corpus.bin")
    meta = {"dtype": "uint16", "vocab_size": 250}
    (root / "corpus.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def records(run: Path) -> list[dict]:
    path = run / "train.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_train_logs_evaluates_and_checkpoints_by_the_recipe(built: Path) -> None:
    arguments = [
        "--data",
        "corpus.bin",
        "--steps",
        "6",
        "--checkpoint-dir",
        "run",
        "--save-every",
        "3",
        "--eval-every",
        "3",
        "--eval-batches",
        "2",
    ]
    done = launch(
        2,
        ["-m", "gpt2_train", "train", *arguments],
        pythonpath=[built],
        cwd=built,
        reset=lambda: shutil.rmtree(built / "run"),  # the log appends
    )
    assert done.returncode == 0, done.explain()
    assert "step 6/6 [" in done.stdout and "held-out loss" in done.stdout
    logged = records(built / "run")
    steps = [r for r in logged if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    for record in steps:
        assert record["lr"] == pytest.approx(scheduled(record["step"] - 1), rel=1e-6)
        assert record["tok_per_second"] > 0 and record["eta_seconds"] >= 0
    assert abs(steps[0]["loss"] - math.log(250)) < 0.05  # the whole loss, not a part
    evaluations = [r for r in logged if "eval_loss" in r]
    assert [r["step"] for r in evaluations] == [3, 6]
    assert evaluations[1]["eval_loss"] < evaluations[0]["eval_loss"]
    saved = [r["checkpoint"] for r in logged if r.get("event") == "saved"]
    assert [Path(p).name for p in saved] == ["step-00000003", "step-00000006"]
    assert json.loads((built / "run" / "latest").read_text())["checkpoint"] == "step-00000006"


def test_sigterm_stops_every_rank_after_one_step_and_saves_it(built: Path) -> None:
    arguments = [
        "--data",
        "corpus.bin",
        "--steps",
        "100000",
        "--checkpoint-dir",
        "run",
        "--resume",
        "--save-every",
        "0",
        "--eval-every",
        "0",
    ]
    process = start(2, ["-m", "gpt2_train", "train", *arguments], pythonpath=[built], cwd=built)
    deadline = time.monotonic() + 300
    while not any(r.get("step", 0) >= 9 and "loss" in r for r in records(built / "run")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)  # as a scheduler stops a job: every process
    process.communicate(timeout=60)
    while time.monotonic() < deadline:  # the workers outlive the launcher to save
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("the ranks did not stop")
    logged = records(built / "run")
    [resumed] = [r for r in logged if r.get("event") == "resumed"]
    assert resumed["step"] == 6  # from the newest checkpoint of the first test
    stopped = [r for r in logged if r.get("event") == "stopped"]
    assert len(stopped) == 1 and stopped[0]["signal"] == "SIGTERM", logged[-5:]
    last = stopped[0]["step"]
    assert [r["step"] for r in logged if "loss" in r][-1] == last
    assert (built / "run" / f"step-{last:08d}" / "checkpoint.json").is_file()


def test_bad_data_is_a_clear_error_with_exit_code_2(built: Path) -> None:
    """On one process (a build for tensor 1): the data is read before any step."""
    one = built / "one"  # run from there: `python -m` looks in the working directory first
    (one / "wide.bin").write_bytes(b"\0\0" * 100)
    (one / "wide.json").write_text('{"dtype": "uint16", "vocab_size": 50257}')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpt2_train",
            "train",
            "--data",
            "wide.bin",
            "--steps",
            "1",
            "--checkpoint-dir",
            "bad",
        ],
        cwd=one,
        env={**os.environ, "PYTHONPATH": str(one)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "error: wide.bin has a vocabulary of 50,257 tokens; the model embeds 250" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


def test_a_tiny_llama_trains_under_the_train_command(built: Path) -> None:
    """specs/llama3_8b.yaml (rotary, grouped KV heads, SwiGLU, an untied head), resized
    to bytes, trains on data 2 x tensor 2 from the same token file; its loss falls."""
    sizes = ["hidden=64", "heads=4", "kv_heads=2", "ffn=176", "layers=2", "vocab=256"]
    sizes += ["seq=16", "micro_batch=2", "data=2", "tensor=2"]
    out = built / "llama"
    done = specc("build", str(REPO / "specs" / "llama3_8b.yaml"), "-o", str(out),
                 *(f"--set={s}" for s in sizes))  # fmt: skip
    assert done.code == 0, done.stderr
    arguments = ["--data", str(built / "corpus.bin"), "--steps", "12", "--checkpoint-dir"]
    arguments += [str(out / "run"), "--eval-every", "0", "--log-every", "1"]
    run = launch(
        4,
        ["-m", "llama3_8b", "train", *arguments],
        pythonpath=[out],
        cwd=out,
        reset=lambda: shutil.rmtree(out / "run"),  # the log appends
    )
    assert run.returncode == 0, run.explain()
    losses = [r["loss"] for r in records(out / "run") if "loss" in r]
    assert len(losses) == 12
    assert abs(losses[0] - math.log(256)) < 0.1  # the true loss of a fresh model
    assert sum(losses[-3:]) < sum(losses[:3])
