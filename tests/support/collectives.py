"""The collectives OneFlow 0.9 inserts in a compiled nn.Graph, read from its job.

Run inside launched processes, after the graph's first call (which compiles it).
On CPU no communication op appears in the job: OneFlow inserts the communication
("boxing") when it turns the job into a plan, for exactly the producer->consumer edges
whose SBP or placement differ, and the Python API does not expose the plan. So the
collectives are derived from the job (`graph._full_job_proto`, after every job pass):
each edge's SBP on both ends, its placement, and its tensor's shape and dtype. The
numbers were checked against the compiler's own boxing log (/work/notes/oneflow-apis.md,
section 2). On CUDA, OneFlow puts `_nccl_logical_*` ops into the job instead; those
are read directly (untested here: no GPU).

Every rank compiles the same job, so every rank gets the same list. The job describes
one micro-batch: with gradient accumulation, forward and backward collectives run once
per micro-batch and the optimizer's once per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from math import prod
from typing import Any

# oneflow/core/common/data_type.proto numbers -> bytes per element.
_DTYPE_BYTES = {1: 1, 2: 4, 3: 8, 4: 1, 5: 4, 6: 8, 7: 1, 9: 2, 11: 2, 12: 1, 17: 2}

# A change of one mesh axis's SBP -> what moves the data (None: local, no traffic).
_AXIS_CHANGE = {
    ("P", "B"): "all-reduce",
    ("P", "S"): "reduce-scatter",
    ("S", "B"): "all-gather",
    ("S", "S"): "all-to-all",
    ("B", "S"): None,  # each rank keeps its slice
    ("B", "P"): None,  # one rank keeps the value, the others zeros
    ("S", "P"): None,  # zero-padded slices
}

# `_nccl_logical_<name>` ops (CUDA only) by the words in their name.
_NCCL_KINDS = (
    ("reduce_scatter", "reduce-scatter"),
    ("all_reduce", "all-reduce"),
    ("all_gather", "all-gather"),
    ("s2s", "all-to-all"),
    ("send_recv", "send"),
)

Placement = tuple[tuple[int, ...], tuple[int, ...]]  # (ranks in mesh order, mesh shape)


@dataclass(frozen=True)
class Collective:
    """One collective of one training step (per micro-batch).

    `tensor` is OneFlow's logical blob name, "<producing op>/<output>", whose op name
    starts with the module path (`model.h.0.attn.dense-...`). `bytes` is what each rank
    holds of the tensor before the collective (its largest shard). `groups` are the
    rank groups that communicate together (one per replica of the other mesh axes);
    for a `send` it is (source ranks, destination ranks).
    """

    kind: str  # all-reduce, all-gather, reduce-scatter, all-to-all, send, broadcast, ...
    tensor: str
    shape: tuple[int, ...]
    bytes: int
    groups: tuple[tuple[int, ...], ...]
    phase: str  # forward or backward (gradients, their synchronisation, the optimizer)
    sbp: str  # e.g. "(S(0), P) -> (S(0), B)"
    system: bool  # OneFlow's own tensors (System-Train-*: the learning rate, the step)


def collectives(graph: Any, *, include_system: bool = False) -> list[Collective]:
    """The collectives of a compiled graph's job, in job order.

    System tensors (the learning rate broadcast from rank 0 to the optimizer's ranks,
    4 bytes) are left out unless `include_system`.
    """
    job = graph._full_job_proto
    signatures = job.job_parallel_view_conf.op_name2nd_sbp_signature_conf
    placements = _placements(job)
    blobs = job.helper.lbn2logical_blob_desc
    forward = _forward_ops(job)
    found: list[Collective] = []
    seen: set[tuple[str, tuple[str, ...], Placement | None]] = set()
    for op in job.net.op:
        phase = "forward" if op.name in forward else "backward"
        if op.HasField("user_conf") and op.user_conf.op_type_name.startswith("_nccl_logical"):
            tensor = op.user_conf.input["in"].s[0]
            ranks = placements[op.name][0]
            kind = _nccl_kind(op.user_conf.op_type_name)
            found.append(_record(kind, tensor, blobs, (ranks,), phase, "nccl", ()))
            continue
        if op.name not in signatures:
            continue
        for key, tensor in _inputs(op):
            producer, output = tensor.split("/", 1)
            if producer not in signatures:
                continue
            source_sbp = signatures[producer].bn_in_op2nd_sbp.get(output)
            target_sbp = signatures[op.name].bn_in_op2nd_sbp.get(key)
            if source_sbp is None or target_sbp is None:
                continue
            src, dst = _nd_sbp(source_sbp), _nd_sbp(target_sbp)
            src_at, dst_at = placements.get(producer), placements.get(op.name)
            # The compiler boxes a tensor once per (target SBP, target placement).
            if (src, src_at) == (dst, dst_at) or (tensor, dst, dst_at) in seen:
                continue
            seen.add((tensor, dst, dst_at))
            assert src_at is not None and dst_at is not None, tensor
            sbp = f"({', '.join(src)}) -> ({', '.join(dst)})"
            for kind, groups in _classify(src, dst, src_at, dst_at):
                found.append(_record(kind, tensor, blobs, groups, phase, sbp, src, src_at[1]))
    return [c for c in found if include_system or not c.system]


def summary(found: list[Collective]) -> dict[str, int]:
    """{kind: count}, e.g. {"all-reduce": 5}."""
    counts: dict[str, int] = {}
    for collective in found:
        counts[collective.kind] = counts.get(collective.kind, 0) + 1
    return counts


def _record(
    kind: str,
    tensor: str,
    blobs: Any,
    groups: tuple[tuple[int, ...], ...],
    phase: str,
    sbp: str,
    src: tuple[str, ...],
    mesh: tuple[int, ...] = (),
) -> Collective:
    desc = blobs[tensor]
    shape = tuple(int(d) for d in desc.shape.dim)
    local = list(shape)
    for axis_sbp, size in zip(src, mesh, strict=False):  # the largest shard, as OneFlow splits
        if axis_sbp.startswith("S"):
            dim = int(axis_sbp[2:-1])
            local[dim] = -(-local[dim] // size)
    size = prod(local) * _DTYPE_BYTES.get(desc.data_type, 0)
    system = tensor.startswith("System-")
    return Collective(kind, tensor, shape, size, groups, phase, sbp, system)


def _classify(
    src: tuple[str, ...], dst: tuple[str, ...], src_at: Placement, dst_at: Placement
) -> list[tuple[str, tuple[tuple[int, ...], ...]]]:
    """What one edge's SBP or placement change costs: (kind, rank groups) each."""
    if src_at != dst_at:
        sources, targets = src_at[0], dst_at[0]
        if len(sources) == 1 and len(targets) > 1:
            return [("broadcast", (sources, targets))]
        if set(sources).isdisjoint(targets):
            return [("send", (sources, targets))]  # a pipeline stage boundary
        return [("reshard", (sources, targets))]
    if len(src) != len(dst):
        return [("reshard", (src_at[0],))]
    moves = []
    for axis, (a, b) in enumerate(zip(src, dst, strict=True)):
        if a == b or src_at[1][axis] == 1:
            continue
        kind = _AXIS_CHANGE.get((a[0], b[0]), f"{a}->{b}")
        if kind is not None:
            moves.append((kind, axis))
    # (P, P) -> (B, B): one all-reduce over the whole mesh, not one per axis.
    if len(moves) > 1 and all(kind == "all-reduce" for kind, _ in moves):
        return [("all-reduce", _groups(src_at, tuple(axis for _, axis in moves)))]
    return [(kind, _groups(src_at, (axis,))) for kind, axis in moves]


def _groups(at: Placement, axes: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The rank groups along mesh `axes`: ranks that differ only in those coordinates."""
    ranks, mesh = at
    strides = [prod(mesh[i + 1 :]) for i in range(len(mesh))]
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, rank in enumerate(ranks):
        coords = [index // strides[i] % mesh[i] for i in range(len(mesh))]
        rest = tuple(c for i, c in enumerate(coords) if i not in axes)
        groups.setdefault(rest, []).append(rank)
    return tuple(tuple(g) for g in groups.values())


def _forward_ops(job: Any) -> set[str]:
    """The ops the graph's outputs depend on: the forward pass (and the variables).

    Gradients, their synchronisation and the optimizer's updates feed no output.
    """
    producers_of = {op.name: [t.split("/", 1)[0] for _, t in _inputs(op)] for op in job.net.op}
    stack = [op.name for op in job.net.op if op.WhichOneof("op_type") == "output_conf"]
    forward: set[str] = set()
    while stack:
        name = stack.pop()
        if name not in forward:
            forward.add(name)
            stack.extend(producers_of.get(name, ()))
    return forward


def _inputs(op: Any) -> Iterator[tuple[str, str]]:
    """(key in the op's SBP signature, tensor name) for each data input of an op."""
    if op.HasField("user_conf"):
        # A protobuf map: sorted, since its order differs from process to process.
        for argument, tensors in sorted(op.user_conf.input.items()):
            for index, tensor in enumerate(tensors.s):
                yield f"{argument}_{index}", tensor
        return
    conf = getattr(op, op.WhichOneof("op_type"))
    for field in ("in", "train_step"):  # output, identity, learning-rate schedule ops
        if field in conf.DESCRIPTOR.fields_by_name and isinstance(getattr(conf, field), str):
            if getattr(conf, field):
                yield field, getattr(conf, field)


def _placements(job: Any) -> dict[str, Placement]:
    """Op name -> (ranks in mesh order, mesh shape); devices are "@<rank>:<device>"."""
    found = {}
    for group in job.placement.placement_group:
        conf = group.parallel_conf
        ranks = tuple(int(device.lstrip("@").split(":")[0]) for device in conf.device_name)
        mesh = tuple(int(d) for d in conf.hierarchy.dim) or (len(ranks),)
        for name in group.op_set.op_name:
            found[name] = (ranks, mesh)
    return found


def _nd_sbp(nd_sbp: Any) -> tuple[str, ...]:
    """An nd-SBP proto as strings, one per mesh axis: "B", "P", "S(1)"."""
    spelled = []
    for sbp in nd_sbp.sbp_parallel:
        which = sbp.WhichOneof("parallel_type")
        if which == "split_parallel":
            spelled.append(f"S({sbp.split_parallel.axis})")
        else:
            spelled.append("B" if which == "broadcast_parallel" else "P")
    return tuple(spelled)


def _nccl_kind(op_type: str) -> str:
    for words, kind in _NCCL_KINDS:
        if words in op_type:
            return kind
    return op_type
