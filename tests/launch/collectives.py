"""Run under the launcher: one training step of each package's TrainGraph, the
collectives OneFlow compiled into it, and the bytes each rank holds.

Usage: collectives.py PACKAGE ...

The graph compiles on its first call, so one step is enough. Two graphs per package:
one with plain SGD, whose collectives are counted (tests/support/collectives.py), and
one with the spec's own recipe (its optimizer and schedule), whose state is weighed:
the parameters and the optimizer's moments each rank holds, in bytes. Each rank
prints one JSON line per package; the test reads them and checks that all ranks agree
on the collectives.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from typing import Any

import oneflow as flow

from tests.support.collectives import collectives

MOMENTS = ("-m", "-v", "-momentum")


def main(packages: list[str]) -> None:
    rank = flow.env.get_rank()
    for name in packages:
        package = importlib.import_module(name)
        model = package.Model()
        graph = package.TrainGraph(model, flow.optim.SGD(model.parameters(), lr=0.01))
        graph(*package.random_inputs(), package.random_labels())
        found = [dataclasses.asdict(c) for c in collectives(graph)]
        held = package.TrainGraph(package.Model())  # the recipe's optimizer
        held(*package.random_inputs(), package.random_labels())
        parameters, optimizer = weigh(held.state_dict(), rank)
        record = {
            "rank": rank,
            "package": name,
            "collectives": found,
            "parameters": parameters,
            "optimizer": optimizer,
        }
        print(json.dumps(record), flush=True)


def weigh(state: dict[str, Any], rank: int) -> tuple[int, int]:
    """Bytes of (parameters, optimizer moments) this rank holds of a graph's state."""
    parameters = optimizer = 0
    for key, value in state.items():
        tensors = value.items() if isinstance(value, dict) else [(key, value)]
        for name, tensor in tensors:
            if not isinstance(tensor, flow.Tensor) or name.startswith("System-"):
                continue
            if rank not in tensor.placement.ranks.flatten().tolist():
                continue
            local = tensor.to_local()
            size = local.numel() * local.element_size()
            if name.endswith(MOMENTS):
                optimizer += size
            else:
                parameters += size
    return parameters, optimizer


if __name__ == "__main__":
    main(sys.argv[1:])
