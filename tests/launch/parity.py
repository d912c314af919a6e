"""Run under the launcher: compare generated models with single-process twins.

Usage: parity.py PACKAGE=PLAN_JSON ...

For each package: build `Model()`, check that every parameter and the output have the
SBP and local shape the plan promised, run forward and backward on the package's
random inputs, and compare the output and every gradient with a twin made of plain
local OneFlow ops, driven by the plan and holding the same (gathered) weights. Then
take three SGD steps on both and compare the losses. Each rank prints one JSON line
per package; the test reads them.
"""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import oneflow as flow
import oneflow.nn.functional as F

RTOL, ATOL = 1e-4, 1e-5
STEPS, LR = 3, 0.1


def whole(tensor: flow.Tensor) -> np.ndarray:
    """The full value of a global tensor, on every rank."""
    return tensor.to_global(sbp=[flow.sbp.broadcast] * len(tensor.sbp)).to_local().numpy()


def sbp_text(sbp: tuple) -> list[str]:
    names = []
    for entry in sbp:
        text = str(entry)
        if "split" in text:
            names.append(f"S({text.split('=')[1].rstrip(')')})")
        else:
            names.append({"oneflow.sbp.broadcast": "B", "oneflow.sbp.partial_sum": "P"}[text])
    return names


def loss_of(out: flow.Tensor, probe: flow.Tensor) -> flow.Tensor:
    """A loss no layer is invariant to (a layernorm makes plain sums constant)."""
    return (out * probe).sum() + (out * out).mean()


def probe_like(out: flow.Tensor) -> tuple[flow.Tensor, flow.Tensor]:
    """A fixed, position-dependent weighting of the output: global (on out's layout) and local."""
    values = np.cos(np.arange(int(np.prod(out.shape)), dtype=np.float32)).reshape(tuple(out.shape))
    local = flow.tensor(values)
    broadcast = [flow.sbp.broadcast] * len(out.sbp)
    glob = local.to_global(placement=out.placement, sbp=broadcast).to_global(sbp=out.sbp)
    return glob, local


def twin_forward(plan: dict, params: dict[str, flow.Tensor], hidden: flow.Tensor) -> flow.Tensor:
    """The model as a single device computes it, with nothing distributed."""
    for step in plan["steps"]:
        if step["step"] == "relayout":
            continue
        kind, name = step["kind"], step["name"]
        options = dict(a.split("=") for a in step["arguments"] if "=" in a)
        if kind == "linear":
            hidden = F.linear(hidden, params[f"{name}.weight"], params.get(f"{name}.bias"))
        elif kind == "layernorm":
            weight, bias = params.get(f"{name}.weight"), params.get(f"{name}.bias")
            hidden = F.layer_norm(hidden, (hidden.shape[-1],), weight, bias, float(options["eps"]))
        elif kind == "dropout":
            pass  # both models run in eval mode
        else:
            hidden = {
                "gelu": F.gelu,
                "relu": F.relu,
                "silu": F.silu,
                "tanh": flow.tanh,
                "sigmoid": flow.sigmoid,
            }[kind](hidden)
    return hidden


def check_layouts(model, plan: dict, errors: list[str]) -> dict[str, flow.Tensor]:
    """Every parameter exists with the SBP and local shape the plan promised."""
    promised = {
        f"{step['name']}.{param['name']}": param["layout"]
        for step in plan["steps"]
        if step["step"] == "layer"
        for param in step["params"]
    }
    actual = dict(model.named_parameters())
    if sorted(promised) != sorted(actual):
        errors.append(f"parameters {sorted(actual)} != plan {sorted(promised)}")
    for name, layout in promised.items():
        if name not in actual:
            continue
        local = list(actual[name].to_local().shape)
        if sbp_text(actual[name].sbp) != layout["sbp"]:
            errors.append(f"{name}: sbp {sbp_text(actual[name].sbp)} != plan {layout['sbp']}")
        if local != layout["local_shape"]:
            errors.append(f"{name}: local shape {local} != plan {layout['local_shape']}")
    return actual


def train(model, twin: dict, plan: dict, x, twin_x, probe, twin_probe) -> tuple[list, list]:
    """STEPS steps of SGD on the model and on its twin; their losses."""
    optimizer = flow.optim.SGD(model.parameters(), lr=LR)
    twin_optimizer = flow.optim.SGD(list(twin.values()), lr=LR)
    losses, twin_losses = [], []
    for _ in range(STEPS):
        optimizer.zero_grad()
        twin_optimizer.zero_grad()
        loss = loss_of(model(x), probe)
        loss.backward()
        optimizer.step()
        twin_loss = loss_of(twin_forward(plan, twin, twin_x), twin_probe)
        twin_loss.backward()
        twin_optimizer.step()
        losses.append(float(whole(loss)))
        twin_losses.append(float(twin_loss.numpy()))
    return losses, twin_losses


def check(package_name: str, plan: dict) -> dict:
    package = importlib.import_module(package_name)
    errors: list[str] = []
    model = package.Model()
    model.eval()
    actual = check_layouts(model, plan, errors)

    (x,) = package.random_inputs(seed=1)
    twin = {name: flow.tensor(whole(p), requires_grad=True) for name, p in actual.items()}
    twin_x = flow.tensor(whole(x))
    out = model(x)
    twin_out = twin_forward(plan, twin, twin_x)
    if sbp_text(out.sbp) != plan["output"]["sbp"]:
        errors.append(f"output sbp {sbp_text(out.sbp)} != plan {plan['output']['sbp']}")
    if list(out.to_local().shape) != plan["output"]["local_shape"]:
        errors.append(f"output local shape {list(out.to_local().shape)}")
    diffs = {"output": float(np.abs(whole(out) - twin_out.numpy()).max())}
    if not np.allclose(whole(out), twin_out.numpy(), rtol=RTOL, atol=ATOL):
        errors.append(f"output differs by {diffs['output']}")

    probe, twin_probe = probe_like(out)
    loss_of(out, probe).backward()
    loss_of(twin_out, twin_probe).backward()
    for name, param in actual.items():
        got, want = whole(param.grad), twin[name].grad.numpy()
        diffs[f"grad {name}"] = float(np.abs(got - want).max())
        if not np.allclose(got, want, rtol=RTOL, atol=ATOL):
            errors.append(f"gradient of {name} differs by {diffs[f'grad {name}']}")

    losses, twin_losses = train(model, twin, plan, x, twin_x, probe, twin_probe)
    if not np.allclose(losses, twin_losses, rtol=RTOL, atol=ATOL):
        errors.append(f"SGD losses {losses} != twin {twin_losses}")
    return {
        "rank": flow.env.get_rank(),
        "package": package_name,
        "local_output_shape": list(out.to_local().shape),
        "max_diff": max(diffs.values()),
        "losses": losses,
        "errors": errors,
    }


def main() -> None:
    for argument in sys.argv[1:]:
        package_name, plan_path = argument.split("=", 1)
        with open(plan_path, encoding="utf-8") as file:
            plan = json.load(file)
        print(json.dumps(check(package_name, plan)), flush=True)


if __name__ == "__main__":
    main()
