"""Run under the launcher: HuggingFace checkpoints loaded into generated packages.

Usage: pretrained.py CASES_JSON

For each case: build nothing (the test built the package), `Model()`, load the fixture's
checkpoint with the package's `load_pretrained`, feed the fixture's inputs and compare
every output with what transformers computed (relative difference: the largest absolute
difference over the largest reference value). A case may also train one SGD step and
`save_pretrained`, writing the model's outputs after the step beside the checkpoint, so
that the test can load that checkpoint into transformers and compare. Each rank prints
one JSON line per case.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import numpy as np
import oneflow as flow
from safetensors.numpy import load_file

TOLERANCE = 1e-5


def whole(tensor: flow.Tensor) -> np.ndarray:
    """The full value of a global tensor, on every rank (also those of other stages)."""
    tensor = tensor.to_global(sbp=[flow.sbp.broadcast] * len(tensor.sbp))
    everyone = list(range(flow.env.get_world_size()))
    if tensor.placement.ranks.size != len(everyone):
        placement = flow.placement(tensor.placement.type, ranks=everyone)
        tensor = tensor.to_global(placement=placement, sbp=flow.sbp.broadcast)
    return tensor.to_local().numpy()


def listed(outputs: flow.Tensor | tuple) -> list[flow.Tensor]:
    return list(outputs) if isinstance(outputs, tuple) else [outputs]


def global_input(package, array: np.ndarray) -> flow.Tensor:
    """An input laid out as the package's own inputs are (batch over data ranks)."""
    parallel = package.parallel
    return flow.tensor(array, placement=parallel.PLACEMENT, sbp=parallel.ACTIVATION)


def compare(got: np.ndarray, want: np.ndarray) -> float:
    got = got[tuple(slice(0, n) for n in want.shape)]  # a padded vocabulary's columns
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def run(case: dict) -> dict:
    package = importlib.import_module(case["package"])
    model = package.Model()
    model.eval()
    package.load_pretrained(model, case["checkpoint"])
    reference = load_file(case["reference"])
    differences, errors = {}, []
    for call in case["calls"]:
        arguments = [global_input(package, reference[name]) for name in call["inputs"]]
        outputs = listed(model(*arguments))
        if len(outputs) != len(call["outputs"]):
            errors.append(f"{len(outputs)} outputs, the reference has {len(call['outputs'])}")
            continue
        for name, output in zip(call["outputs"], outputs, strict=True):
            key = f"{name} ({', '.join(call['inputs'])})"
            differences[key] = compare(whole(output), reference[name])
            if differences[key] > TOLERANCE:
                errors.append(f"{key}: relative difference {differences[key]:.3g}")
    record = {
        "rank": flow.env.get_rank(),
        "case": case["name"],
        "differences": differences,
        "errors": errors,
    }
    if "save" in case:
        record["saved"] = train_and_save(package, model, case, reference)
    return record


def train_and_save(package, model, case: dict, reference: dict) -> str:
    """One SGD step (so the weights are specc's own), then save_pretrained, and the
    model's outputs on the first call's inputs, for transformers to reproduce."""
    model.train()
    optimizer = flow.optim.SGD(model.parameters(), lr=0.05)
    *_, last = listed(model(*package.random_inputs(seed=3)))
    if hasattr(package, "random_labels"):
        objective = model.loss(last, package.random_labels(seed=4))
    else:  # a model without a loss (BertModel): any objective that moves every weight
        objective = (last * last).mean()
    objective.backward()
    optimizer.step()
    model.eval()
    directory = case["save"]
    package.save_pretrained(model, directory)
    call = case["calls"][0]
    arguments = [global_input(package, reference[name]) for name in call["inputs"]]
    outputs = [whole(output) for output in listed(model(*arguments))]
    if flow.env.get_rank() == 0:
        arrays = dict(zip(call["outputs"], outputs, strict=True))
        np.savez(os.path.join(directory, "specc_outputs.npz"), **arrays)
    return directory


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as file:
        cases = json.load(file)
    for case in cases:
        print(json.dumps(run(case)), flush=True)


if __name__ == "__main__":
    main()
