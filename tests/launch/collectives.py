"""Run under the launcher: one SGD training step of each package's TrainGraph, and the
collectives OneFlow compiled into it.

Usage: collectives.py PACKAGE ...

The graph compiles on its first call, so one step is enough. Each rank prints one JSON
line per package with every collective (tests/support/collectives.py); the test reads
them and checks that all ranks agree.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys

import oneflow as flow

from tests.support.collectives import collectives


def main(packages: list[str]) -> None:
    rank = flow.env.get_rank()
    for name in packages:
        package = importlib.import_module(name)
        model = package.Model()
        graph = package.TrainGraph(model, flow.optim.SGD(model.parameters(), lr=0.01))
        graph(*package.random_inputs(), package.random_labels())
        found = [dataclasses.asdict(c) for c in collectives(graph)]
        print(json.dumps({"rank": rank, "package": name, "collectives": found}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
