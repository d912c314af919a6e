"""Run under the launcher: compare generated models with single-process twins.

Usage: parity.py PACKAGE=PLAN_JSON ...

For each package: build `Model()`, check that every parameter and the output have the
SBP and local shape the plan promised, run forward and backward on the package's
random inputs, and compare the output, the loss and every gradient with a twin: plain
local OneFlow ops, interpreting the plan, holding the same (gathered) weights. Then
take three SGD steps on both and compare the losses. Each rank prints one JSON line
per package; the test reads them.
"""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import oneflow as flow

from specc import kinds
from specc.kinds.base import Twin as LayerTwin

RTOL, ATOL = 1e-4, 1e-5
STEPS, LR = 3, 0.1


def whole(tensor: flow.Tensor) -> np.ndarray:
    """The full value of a global tensor, on every rank (also those of other stages)."""
    tensor = tensor.to_global(sbp=[flow.sbp.broadcast] * len(tensor.sbp))
    everyone = list(range(flow.env.get_world_size()))
    if tensor.placement.ranks.size != len(everyone):
        placement = flow.placement(tensor.placement.type, ranks=everyone)
        tensor = tensor.to_global(placement=placement, sbp=flow.sbp.broadcast)
    return tensor.to_local().numpy()


def sbp_text(sbp: tuple) -> list[str]:
    names = []
    for entry in sbp:
        text = str(entry)
        if "split" in text:
            names.append(f"S({text.split('=')[1].rstrip(')')})")
        else:
            names.append({"oneflow.sbp.broadcast": "B", "oneflow.sbp.partial_sum": "P"}[text])
    return names


class Twin:
    """The model as one device computes it: the plan's steps on local tensors."""

    def __init__(self, plan: dict, params: dict[str, flow.Tensor]) -> None:
        self.classes = {c["name"]: c for c in plan["classes"]}
        self.params = params

    def __call__(self, inputs: dict[str, flow.Tensor]) -> list[flow.Tensor]:
        """Every output the model returns, in order."""
        return self.run("Model", "", dict(inputs), inputs)

    def run(self, name: str, prefix: str, variables: dict, inputs: dict) -> list[flow.Tensor]:
        cls = self.classes[name]
        for step in cls["steps"]:
            kind = step["step"]
            if kind in ("relayout", "stage_move"):  # layouts and placements: nothing locally
                variables["hidden"] = variables[step["reads"]]
            elif kind == "residual_begin":
                variables[step["variable"]] = variables[step["reads"]]
            elif kind == "residual_end":
                variables["hidden"] = variables[step["variable"]] + variables["hidden"]
            elif kind == "keep":
                variables[step["variable"]] = variables[step["reads"]]
            elif kind == "repeat":
                hidden = variables[step["reads"]]
                for index in range(step["times"]):
                    scope = {"hidden": hidden, **inputs}
                    (hidden,) = self.run(
                        step["module"], f"{prefix}{step['name']}.{index}.", scope, inputs
                    )
                variables["hidden"] = hidden
            else:
                hidden = variables[step["reads"]]
                variables["hidden"] = self.layer(step, prefix + step["name"], hidden, inputs)
        return [variables[name] for name in cls["returns"]]

    def layer(self, step: dict, name: str, x: flow.Tensor, inputs: dict) -> flow.Tensor:
        """What the layer's kind computes on one device (its module's `reference`)."""
        p = {k[len(name) + 1 :]: v for k, v in self.params.items() if k.startswith(name + ".")}
        reference = kinds.BY_NAME[step["kind"]].reference
        assert reference is not None, f"kind {step['kind']} has no reference"
        return reference(LayerTwin(flow, x, p, step["attributes"], inputs, self.params))


def listed(outputs: flow.Tensor | tuple) -> list[flow.Tensor]:
    """What a model returned, as a list: one output or several."""
    return list(outputs) if isinstance(outputs, tuple) else [outputs]


def promised_params(plan: dict) -> dict[str, tuple[dict, int]]:
    """Every parameter's layout and pipeline stage, as the plan states them."""
    return {p["name"]: (p["layout"], p["stage"]) for p in plan["parameters"]}


def rank_stage(plan: dict) -> int:
    mesh = plan["mesh"]
    return flow.env.get_rank() // (mesh["data"] * mesh["tensor"])


def expected_local(layout: dict, stage: int, plan: dict) -> list[int]:
    """The plan's local shape on this rank's stage; nothing on the other stages."""
    if stage == rank_stage(plan):
        return layout["local_shape"]
    return [0] * len(layout["local_shape"])


def check_layouts(model, plan: dict, errors: list[str]) -> dict[str, flow.Tensor]:
    """Every parameter exists with the SBP, stage and local shape the plan promised."""
    promised = promised_params(plan)
    actual = dict(model.named_parameters())
    if sorted(promised) != sorted(actual):
        errors.append(f"parameters {sorted(actual)} != plan {sorted(promised)}")
    for name, (layout, stage) in promised.items():
        if name not in actual:
            continue
        local = list(actual[name].to_local().shape)
        if sbp_text(actual[name].sbp) != layout["sbp"]:
            errors.append(f"{name}: sbp {sbp_text(actual[name].sbp)} != plan {layout['sbp']}")
        if local != expected_local(layout, stage, plan):
            errors.append(
                f"{name}: local shape {local} on stage {rank_stage(plan)}, plan says "
                f"{layout['local_shape']} on stage {stage}"
            )
    return actual


class Objective:
    """The model's own loss when the spec has one, else a fixed weighting of the output."""

    def __init__(self, package, plan: dict, out: flow.Tensor, twin_shape: tuple) -> None:
        self.plan = plan
        self.twin_shape = tuple(twin_shape)
        if plan["loss"] is not None:
            self.labels = package.random_labels(seed=2)
            self.twin_labels = flow.tensor(whole(self.labels))
            return
        out = self.unpadded(out)
        shape = tuple(out.shape)
        values = np.cos(np.arange(int(np.prod(shape)), dtype=np.float32)).reshape(shape)
        broadcast = [flow.sbp.broadcast] * len(out.sbp)
        self.probe = flow.tensor(values).to_global(placement=out.placement, sbp=broadcast)
        self.probe = self.probe.to_global(sbp=out.sbp)
        self.twin_probe = flow.tensor(values)

    def unpadded(self, out: flow.Tensor) -> flow.Tensor:
        """Logits over a padded vocabulary without the padding (-1e9) columns."""
        if tuple(out.shape) == self.twin_shape:
            return out
        return flow.narrow(out, dim=out.dim() - 1, start=0, length=self.twin_shape[-1])

    def __call__(self, model, out: flow.Tensor) -> flow.Tensor:
        if self.plan["loss"] is not None:
            return model.loss(out, self.labels)
        out = self.unpadded(out)
        return (out * self.probe).sum() + (out * out).mean()

    def twin(self, out: flow.Tensor) -> flow.Tensor:
        if self.plan["loss"] is not None:
            classes = out.shape[-1]
            return flow.nn.CrossEntropyLoss()(
                out.reshape(-1, classes), self.twin_labels.reshape(-1)
            )
        return (out * self.twin_probe).sum() + (out * out).mean()


def comparable(out: flow.Tensor, twin_out: flow.Tensor) -> np.ndarray:
    """The model's output cut to the twin's shape (padded vocabulary columns dropped)."""
    got = whole(out)
    return got[tuple(slice(0, n) for n in twin_out.shape)]


def check(package_name: str, plan: dict) -> dict:
    package = importlib.import_module(package_name)
    errors: list[str] = []
    model = package.Model()
    model.eval()
    actual = check_layouts(model, plan, errors)

    inputs = package.random_inputs(seed=1)
    names = [item["name"] for item in plan["inputs"]]
    twin_params = {name: flow.tensor(whole(p), requires_grad=True) for name, p in actual.items()}
    twin = Twin(plan, twin_params)
    twin_inputs = {name: flow.tensor(whole(x)) for name, x in zip(names, inputs, strict=True)}
    outs = listed(model(*inputs))
    twin_outs = twin(twin_inputs)
    diffs = {}
    for promised, out, twin_out in zip(plan["outputs"], outs, twin_outs, strict=True):
        name = f"output {promised['name']}"
        if sbp_text(out.sbp) != promised["layout"]["sbp"]:
            errors.append(f"{name} sbp {sbp_text(out.sbp)} != plan {promised['layout']['sbp']}")
        output_local = expected_local(promised["layout"], promised["stage"], plan)
        if list(out.to_local().shape) != output_local:
            errors.append(f"{name} local shape {list(out.to_local().shape)} != {output_local}")
        diffs[name] = float(np.abs(comparable(out, twin_out) - twin_out.numpy()).max())
        if not np.allclose(comparable(out, twin_out), twin_out.numpy(), rtol=RTOL, atol=ATOL):
            errors.append(f"{name} differs by {diffs[name]}")
    out, twin_out = outs[-1], twin_outs[-1]

    objective = Objective(package, plan, out, twin_out.shape)
    loss, twin_loss = objective(model, out), objective.twin(twin_out)
    diffs["loss"] = abs(float(whole(loss)) - float(twin_loss.numpy()))
    if not np.allclose(float(whole(loss)), float(twin_loss.numpy()), rtol=RTOL, atol=ATOL):
        errors.append(f"loss {float(whole(loss))} != twin {float(twin_loss.numpy())}")
    loss.backward()
    twin_loss.backward()
    for name, param in actual.items():
        got, want = whole(param.grad), twin_params[name].grad.numpy()
        diffs[f"grad {name}"] = float(np.abs(got - want).max())
        if not np.allclose(got, want, rtol=RTOL, atol=ATOL):
            errors.append(f"gradient of {name} differs by {diffs[f'grad {name}']}")

    losses, twin_losses = train(model, twin, twin_params, objective, inputs, twin_inputs)
    # A step's rounding error grows with the size of the losses (and so of the
    # gradients) before it: a spec whose loss swings to -43 may differ by 1e-4 after.
    scale = max(abs(loss) for loss in twin_losses)
    if not np.allclose(losses, twin_losses, rtol=RTOL, atol=ATOL + RTOL * scale):
        errors.append(f"SGD losses {losses} != twin {twin_losses}")
    return {
        "rank": flow.env.get_rank(),
        "package": package_name,
        "local_output_shape": list(out.to_local().shape),
        "max_diff": max(diffs.values()),
        "worst": max(diffs, key=diffs.get),
        "losses": losses,
        "errors": errors,
    }


def train(model, twin, twin_params, objective, inputs, twin_inputs) -> tuple[list, list]:
    """STEPS steps of SGD on the model and on its twin; their losses."""
    optimizer = flow.optim.SGD(model.parameters(), lr=LR)
    twin_optimizer = flow.optim.SGD(list(twin_params.values()), lr=LR)
    losses, twin_losses = [], []
    for _ in range(STEPS):
        optimizer.zero_grad()
        twin_optimizer.zero_grad()
        loss = objective(model, listed(model(*inputs))[-1])
        loss.backward()
        optimizer.step()
        twin_loss = objective.twin(twin(twin_inputs)[-1])
        twin_loss.backward()
        twin_optimizer.step()
        losses.append(float(whole(loss)))
        twin_losses.append(float(twin_loss.numpy()))
    return losses, twin_losses


def check_graph(package_name: str, plan: dict) -> dict:
    """STEPS steps of the generated TrainGraph (pipelined, micro-batched) against the twin,
    and the EvalGraph against the eager model."""
    package = importlib.import_module(package_name)
    model = package.Model()
    model.eval()
    params = dict(model.named_parameters())
    twin_params = {name: flow.tensor(whole(p), requires_grad=True) for name, p in params.items()}
    twin = Twin(plan, twin_params)
    inputs = package.random_inputs(seed=1)
    labels = package.random_labels(seed=2)
    names = [item["name"] for item in plan["inputs"]]
    twin_inputs = {name: flow.tensor(whole(x)) for name, x in zip(names, inputs, strict=True)}
    twin_labels = flow.tensor(whole(labels))
    graph = package.TrainGraph(model, flow.optim.SGD(model.parameters(), lr=LR))
    twin_optimizer = flow.optim.SGD(list(twin_params.values()), lr=LR)
    losses, twin_losses, errors = [], [], []
    for _ in range(STEPS):
        losses.append(float(whole(graph(*inputs, labels)).mean()))
        twin_optimizer.zero_grad()
        out = twin(twin_inputs)[-1]
        flat = out.reshape(-1, out.shape[-1])
        twin_loss = flow.nn.CrossEntropyLoss()(flat, twin_labels.reshape(-1))
        twin_loss.backward()
        twin_optimizer.step()
        twin_losses.append(float(twin_loss.numpy()))
    relative = max(
        abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses, twin_losses, strict=True)
    )
    if relative > 1e-4:
        errors.append(f"graph losses {losses} != twin {twin_losses}")
    evaluated = listed(package.EvalGraph(model)(*inputs))
    for graph_out, eager_out in zip(evaluated, listed(model(*inputs)), strict=True):
        got, want = whole(graph_out), whole(eager_out)
        if not np.allclose(got, want, rtol=RTOL, atol=ATOL):
            errors.append(f"EvalGraph differs from eager by {np.abs(got - want).max()}")
    return {
        "rank": flow.env.get_rank(),
        "package": package_name,
        "mode": "graph",
        "losses": losses,
        "twin_losses": twin_losses,
        "max_relative": relative,
        "errors": errors,
    }


def main() -> None:
    graph = sys.argv[1:2] == ["--graph"]
    for argument in sys.argv[1 + graph :]:
        package_name, plan_path = argument.split("=", 1)
        with open(plan_path, encoding="utf-8") as file:
            plan = json.load(file)
        print(json.dumps(check(package_name, plan)), flush=True)
        if graph:
            print(json.dumps(check_graph(package_name, plan)), flush=True)


if __name__ == "__main__":
    main()
