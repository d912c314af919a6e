"""Run under the launcher, on one machine or several: fingerprint a model's step.

Usage: multinode.py PACKAGE[=PLAN_JSON] ...

For each package, every rank:

1. runs the package's own entry point (`python -m PACKAGE`'s `main([])`: one forward
   pass printing "rank R: local output shape [...]");
2. seeds OneFlow, builds `Model()`, runs forward on `random_inputs(SEED)`, a loss no
   layer is invariant to (a fixed weighting of the output plus its square) and
   backward, then gathers the inputs, the output, the loss, every parameter and every
   gradient to its full value (`to_global` with broadcast, `to_local`) and
   fingerprints each: shape, dtype, sha256 of the bytes, sum and sum of absolute values;
3. with a PLAN_JSON, also compares the model with its single-process twin
   (tests/launch/parity.py's `check`).

Each rank prints, per package, one JSON line about the run (where it ran: its network
namespace and the launcher's variables; shapes; the twin's verdict) and one line per
tensor, each short enough to be written at once: the ranks share stdout, and a long
line could interleave with another rank's. A test compares the lines of a run across
two hosts with those of a run on one host: equal fingerprints mean the same numbers.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import socket
import sys
import time


def wait_for_master(timeout: float = 60.0) -> None:
    """On ranks other than 0, wait until rank 0 listens on the master port.

    OneFlow's first call to the master, made while `import oneflow` sets up the
    distributed environment, sleeps 10 s when it finds nobody listening yet; rank 0
    starts at the same moment, so that happens in most launches. Waiting here first
    only saves time: after `timeout` the import goes ahead and OneFlow retries as usual.
    """
    if os.environ.get("RANK", "0") == "0" or "MASTER_ADDR" not in os.environ:
        return
    address = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)


wait_for_master()

import numpy as np  # noqa: E402
import oneflow as flow  # noqa: E402
from parity import check  # noqa: E402

SEED = 7


def holds(tensor: flow.Tensor) -> bool:
    """Whether this rank is in the tensor's placement (with pipelines, not every rank is)."""
    return flow.env.get_rank() in np.asarray(tensor.placement.ranks).ravel().tolist()


def whole(tensor: flow.Tensor) -> np.ndarray:
    """The full value of a global tensor, on the ranks of its placement."""
    return tensor.to_global(sbp=[flow.sbp.broadcast] * len(tensor.sbp)).to_local().numpy()


def fingerprint(value: np.ndarray) -> dict:
    value = np.ascontiguousarray(value)
    return {
        "shape": list(value.shape),
        "dtype": str(value.dtype),
        "sha256": hashlib.sha256(value.tobytes()).hexdigest(),
        "sum": float(value.sum(dtype=np.float64)),
        "abs_sum": float(np.abs(value).sum(dtype=np.float64)),
    }


def loss_of(out: flow.Tensor) -> flow.Tensor:
    """A loss no layer is invariant to: a fixed, position-dependent weighting, plus a square."""
    values = np.cos(np.arange(int(np.prod(out.shape)), dtype=np.float32)).reshape(tuple(out.shape))
    broadcast = [flow.sbp.broadcast] * len(out.sbp)
    probe = flow.tensor(values).to_global(placement=out.placement, sbp=broadcast)
    return (out * probe.to_global(sbp=out.sbp)).sum() + (out * out).mean()


def step(package) -> tuple[dict, dict[str, dict]]:
    """Forward, loss and backward with fixed seeds; every tensor this rank holds, gathered."""
    flow.manual_seed(SEED)
    model = package.Model()
    model.eval()  # dropout off: the run must be reproducible
    inputs = package.random_inputs(seed=SEED)
    out = model(*inputs)
    loss = loss_of(out)
    loss.backward()
    tensors = {f"input {index}": x for index, x in enumerate(inputs)}
    tensors.update(output=out, loss=loss)
    for name, param in model.named_parameters():
        tensors[f"weight {name}"] = param
        tensors[f"grad {name}"] = param.grad
    # Every rank takes part in every gather; a rank records the tensors it holds.
    gathered = {name: (holds(t), whole(t)) for name, t in tensors.items()}
    shapes = {"local_output_shape": list(out.to_local().shape) if holds(out) else None}
    return shapes, {name: fingerprint(value) for name, (held, value) in gathered.items() if held}


def run(argument: str) -> list[dict]:
    package_name, _, plan_path = argument.partition("=")
    package = importlib.import_module(package_name)
    entry = importlib.import_module(f"{package_name}.__main__")
    record = {
        "rank": flow.env.get_rank(),
        "package": package_name,
        "world_size": flow.env.get_world_size(),
        "netns": os.readlink("/proc/self/ns/net"),
        "launcher": {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR")},
        "entry_exit": entry.main([]),
    }
    shapes, tensors = step(package)
    record.update(shapes)
    if plan_path:
        with open(plan_path, encoding="utf-8") as file:
            twin = check(package_name, json.load(file))
        record["twin"] = {k: twin.get(k) for k in ("errors", "max_diff", "losses")}
    where = {"rank": record["rank"], "package": package_name}
    return [record] + [{**where, "tensor": name, **fp} for name, fp in tensors.items()]


def main() -> None:
    for argument in sys.argv[1:]:
        for line in run(argument):
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
