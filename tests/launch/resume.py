"""Run under the launcher (or alone, for one process): train, checkpoint and resume.

Usage: resume.py JOBS_JSON

Each job names a generated package (a directory on PYTHONPATH; plans of one spec are
copied under different names), the token corpus, how many steps to train, and either
the steps to save a checkpoint at (`save_at`, into `root`) or a checkpoint to resume
from (`resume`, or the newest under `resume_latest`). It trains with the package's own
recipe (`TrainGraph(model)`), data (`Data`) and checkpoints, and each rank prints one
JSON line per job: the loss of every step it ran, and for a save the bytes it wrote
against the parameter bytes it holds. A job may instead `expect_refusal`: loading
must raise CheckpointError and leave the weights as they were; or
`crash_while_saving_at` a step: the process dies in the middle of saving it.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import numpy as np
import oneflow as flow


def held_bytes(model: flow.nn.Module) -> int:
    """The bytes of the parameters this rank holds (its local parts)."""
    return sum(p.to_local().numel() * p.element_size() for p in model.parameters())


def snapshot(model: flow.nn.Module) -> dict[str, np.ndarray]:
    return {name: p.to_local().numpy().copy() for name, p in model.named_parameters()}


def run(job: dict) -> dict:
    package = importlib.import_module(job["package"])
    rank = flow.env.get_rank()
    model = package.Model()
    graph = package.TrainGraph(model)
    record: dict = {"rank": rank, "job": job["name"], "losses": {}}
    step, position, seed = 0, 0, package.model.SEED
    if "expect_refusal" in job:
        before = snapshot(model)
        try:
            package.load_checkpoint(graph, job["expect_refusal"])
        except package.CheckpointError as error:
            record["refused"] = str(error)
        after = snapshot(model)
        record["unchanged"] = all(np.array_equal(before[k], after[k]) for k in before)
        return record
    if "resume_latest" in job:
        job["resume"] = package.latest_checkpoint(job["resume_latest"])
    if "resume" in job:
        manifest = package.load_checkpoint(graph, job["resume"])
        step, position, seed = manifest["step"], manifest["position"], manifest["seed"]
    corpus = importlib.import_module(f"{job['package']}.data")
    data = corpus.Data(job["corpus"], seed=seed)
    while step < job["steps"]:
        losses = graph(*data.batch(position))
        step, position = step + 1, position + corpus.BATCH
        record["losses"][step] = package.mean_loss(losses)
        if step in job.get("save_at", ()):
            path = package.save_checkpoint(
                graph, job["root"], step=step, position=position, seed=seed
            )
            mine = os.path.join(path, f"rank-{rank:05d}.safetensors")
            record["written"] = os.path.getsize(mine) if os.path.exists(mine) else 0
            record["held"] = held_bytes(model)
        if step + 1 == job.get("crash_while_saving_at"):
            # Die once the ranks wrote their slices, before the checkpoint is whole.
            package.checkpoint._index = lambda *_: os._exit(3)
    return record


def main() -> None:
    jobs = json.loads(open(sys.argv[1], encoding="utf-8").read())
    for job in jobs:
        print(json.dumps(run(job)), flush=True)


if __name__ == "__main__":
    main()
