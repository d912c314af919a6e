"""`make train-demo`: a tiny GPT-2 learns Python's documentation, resumed under another plan.

specs/gpt2.yaml, resized to a byte-level model (256 tokens, 2 layers of width 64, 64
positions), is built for data 2 x tensor 2. Python's own pydoc_data/topics.py (the text of
`help()`, shipped with every Python) becomes a byte-level token file with the package's
`prepare-text`. The package's `train` command runs the spec's recipe (nanoGPT's AdamW,
warmup and cosine decay, clipping) for the first steps, checkpointing; a second
build, tensor 4, resumes from the checkpoint to the end. The held-out loss is then
compared with the text's unigram entropy: what a model knowing only byte frequencies
would reach.

Usage: python scripts/train_demo.py [--steps N] [--port P]; writes build/train-demo/.
"""

from __future__ import annotations

import argparse
import json
import math
import pydoc_data.topics
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "build" / "train-demo"
SIZES = ["vocab=256", "hidden=64", "heads=4", "layers=2", "positions=64", "seq=64", "micro_batch=8"]
EVAL_FRACTION = 0.1


def build(plan: str, *sizes: str) -> Path:
    target = OUT / plan
    shutil.rmtree(target, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "specc",
        "build",
        str(REPO / "specs" / "gpt2.yaml"),
        "-o",
        str(target),
        *(f"--set={s}" for s in (*SIZES, *sizes)),
    ]
    subprocess.run(command, check=True)
    return target


def train(package_dir: Path, port: int, *arguments: str) -> None:
    command = [
        sys.executable,
        "-m",
        "oneflow.distributed.launch",
        "--nproc_per_node",
        "4",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "gpt2",
        "train",
        *arguments,
    ]
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, cwd=package_dir, check=True)


def unigram_entropy(data: bytes) -> float:
    """Nats per byte of a model that knows only how often each byte occurs."""
    counts, total = Counter(data), len(data)
    return -sum(n / total * math.log(n / total) for n in counts.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--port", type=int, default=29510)
    arguments = parser.parse_args()
    steps, first = arguments.steps, arguments.steps * 3 // 4
    schedule = [f"train_steps={steps}", f"warmup={max(steps // 20, 1)}"]
    OUT.mkdir(parents=True, exist_ok=True)
    run = OUT / "run"
    shutil.rmtree(run, ignore_errors=True)
    data_parallel = build("data2_tensor2", "data=2", "tensor=2", *schedule)
    tensor_parallel = build("tensor4", "tensor=4", "micro_batch=16", *schedule)
    text = Path(pydoc_data.topics.__file__)
    corpus = OUT / "topics.bin"
    subprocess.run(
        [sys.executable, "-m", "gpt2", "prepare-text", str(text), str(corpus)],
        cwd=data_parallel,
        check=True,
    )
    common = [
        "--data",
        str(corpus),
        "--checkpoint-dir",
        str(run),
        "--eval-every",
        "50",
        "--eval-batches",
        "8",
        "--save-every",
        "100",
        "--log-every",
        "25",
    ]
    train(data_parallel, arguments.port, *common, "--steps", str(first))
    print(f"\n--- resuming at step {first} under tensor 4 ---\n", flush=True)
    train(tensor_parallel, arguments.port, *common, "--steps", str(steps), "--resume")
    held_out = text.read_bytes()[-int(text.stat().st_size * EVAL_FRACTION) :]
    entropy = unigram_entropy(held_out)
    records = [json.loads(line) for line in (run / "train.jsonl").open(encoding="utf-8")]
    curve = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    print("\nheld-out loss (nats per byte):")
    for step, loss in curve:
        print(f"  step {step:>4}  {loss:.3f}")
    print(f"unigram entropy of the held-out text: {entropy:.3f} nats per byte")
    final = curve[-1][1]
    verdict = "below" if final < entropy else "NOT below"
    print(f"final held-out loss {final:.3f}: {entropy - final:.3f} nats {verdict} it")
    return 0 if final < entropy else 1


if __name__ == "__main__":
    sys.exit(main())
