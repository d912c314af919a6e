"""Run under the launcher (or alone, for one process): train a pretrained model with the
package's own recipe on fixed batches, as tests/fixtures/hf/gpt2_train did in torch.

Usage: recipe.py JOBS_JSON

Each job names a generated package (a directory on PYTHONPATH), the HF checkpoint to
start from, the reference file holding the batches (`tokens`, [steps, batch, seq + 1])
and optionally a directory to save the trained weights into (save_pretrained, the
checkpoint's names) and how many of the batches to train (`steps`). The model trains in
train mode with `TrainGraph(model)`, nothing given: the optimizer, schedule, clipping,
precision and ZeRO stage are the package's. Each rank prints one JSON line per job: the
loss (mean_loss) and learning rate (learning_rate) of every step, and what the compiled
graph is made of: the dtypes its casts convert to, its loss-scaling ops, the dtypes of
the parameters and the bytes of parameters and optimizer state this rank holds.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections import Counter

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
    for step, batch in enumerate(tokens[: job.get("steps", len(tokens))]):
        inputs, labels = like(input_example, batch[:, :-1]), like(label_example, batch[:, 1:])
        losses.append(package.mean_loss(graph(inputs, labels)))
        lrs.append(package.training.learning_rate(graph.schedule, step))
    if "save" in job:
        package.save_pretrained(model, job["save"])
    record = {"rank": flow.env.get_rank(), "job": job["name"], "losses": losses, "lrs": lrs}
    return record | compiled(graph) | held(package, model, graph)


def compiled(graph: flow.nn.Graph) -> dict:
    """What the compiled job holds: casts by target dtype, loss-scaling ops."""
    ops = [op for op in graph._full_graph_proto.net.op if op.HasField("user_conf")]
    casts = Counter(
        str(op.user_conf.attr["dtype"].at_data_type)
        for op in ops
        if op.user_conf.op_type_name == "cast"
    )
    scaling = sorted(
        {op.user_conf.op_type_name for op in ops if "loss_scale" in op.user_conf.op_type_name}
    )
    # Forward ops run again in backward (activation recomputation) carry this prefix;
    # the modules they belong to, e.g. "model.h.0".
    fake = "Sys-Checkpointing-Fake-Fw-Op_"
    recomputed = sorted(
        {".".join(op.name[len(fake) :].split("-")[0].split(".")[:3])
         for op in graph._full_graph_proto.net.op if op.name.startswith(fake)}
    )  # fmt: skip
    return {
        "casts": {_dtype_name(k): n for k, n in casts.items()},
        "loss_scaling": scaling,
        "recomputed": recomputed,
    }


def _dtype_name(number: str) -> str:
    from oneflow.core.common import data_type_pb2

    return data_type_pb2.DataType.Name(int(number))


def held(package, model: flow.nn.Module, graph: flow.nn.Graph) -> dict:
    """The parameters' dtypes, and the bytes of parameters and optimizer state here."""
    moments = tuple(package.checkpoint.MOMENTS)
    state = [t for k, t in graph.state_dict().items() if k.endswith(moments)]
    return {
        "parameter_dtypes": sorted({str(p.dtype) for p in model.parameters()}),
        "parameter_bytes": sum(_local_bytes(p) for p in model.parameters()),
        "moment_bytes": sum(_local_bytes(t) for t in state),
        "moment_tensors": len(state),
    }


def _local_bytes(tensor: flow.Tensor) -> int:
    local = tensor.to_local()
    return local.numel() * local.element_size()


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as file:
        jobs = json.load(file)
    for job in jobs:
        print(json.dumps(run(job)), flush=True)


if __name__ == "__main__":
    main()
