"""Run under the launcher (or alone, for one process): train a pretrained model with the
package's own recipe on fixed batches, as tests/fixtures/hf/gpt2_train did in torch.

Usage: recipe.py JOBS_JSON

Each job names a generated package (a directory on PYTHONPATH), the HF checkpoint to
start from, the reference file holding the batches (`tokens`, [steps, batch, seq + 1])
and a directory to save the trained weights into (save_pretrained, the checkpoint's
names). The model trains in train mode with `TrainGraph(model)`, nothing given: the
optimizer, schedule and clipping are the package's. Each rank prints one JSON line per
job: the loss (mean_loss) and learning rate (learning_rate) of every step.
"""

from __future__ import annotations

import importlib
import json
import sys

import oneflow as flow
from safetensors.numpy import load_file


def like(example: flow.Tensor, array) -> flow.Tensor:
    """`array` laid out as `example` (the package's own inputs and labels) is."""
    return flow.tensor(array, placement=example.placement, sbp=example.sbp)


def run(job: dict) -> dict:
    package = importlib.import_module(job["package"])
    model = package.Model()
    package.load_pretrained(model, job["checkpoint"])
    model.train()
    graph = package.TrainGraph(model)
    tokens = load_file(job["reference"])["tokens"]
    (input_example,), label_example = package.random_inputs(), package.random_labels()
    losses, lrs = [], []
    for step, batch in enumerate(tokens):
        inputs, labels = like(input_example, batch[:, :-1]), like(label_example, batch[:, 1:])
        losses.append(package.mean_loss(graph(inputs, labels)))
        lrs.append(package.training.learning_rate(graph.schedule, step))
    package.save_pretrained(model, job["save"])
    return {"rank": flow.env.get_rank(), "job": job["name"], "losses": losses, "lrs": lrs}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as file:
        jobs = json.load(file)
    for job in jobs:
        print(json.dumps(run(job)), flush=True)


if __name__ == "__main__":
    main()
