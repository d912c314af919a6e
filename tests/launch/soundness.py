"""Run under the launcher by tests/test_soundness.py.

  soundness.py parity PACKAGE=PLAN_JSON ...
      Each package through parity.py's `check` (layouts as planned, forward, backward
      and SGD steps against a single-process twin). An exception becomes an error record
      for that package instead of ending the run, so one bad package hides no other.
  soundness.py graph PACKAGE=PLAN_JSON ...
      The same with parity.py's `check_graph`: the generated TrainGraph (micro-batches,
      pipeline stages) against the twin, and the EvalGraph against eager.
  soundness.py mistakes CASES_JSON
      The mistakes specc refuses, forced into plain OneFlow code: for each case every
      rank prints the local shapes it got, or the error OneFlow raised.

Every rank prints one JSON line per package or case, starting with {"rank": ...}.
"""

from __future__ import annotations

import json
import sys
import traceback

import oneflow as flow
import oneflow.nn.functional as F
import parity  # tests/launch/parity.py, beside this file

B = flow.sbp.broadcast
S = flow.sbp.split


def run_parity(arguments: list[str], graph: bool = False) -> None:
    """parity.check on every package, or with `graph` its check_graph (nn.Graph
    training with micro-batches and pipeline stages)."""
    check = parity.check_graph if graph else parity.check
    for argument in arguments:
        package_name, plan_path = argument.split("=", 1)
        with open(plan_path, encoding="utf-8") as file:
            plan = json.load(file)
        try:
            record = check(package_name, plan)
        except Exception as error:
            record = {
                "rank": flow.env.get_rank(),
                "package": package_name,
                "errors": [f"{type(error).__name__}: {error}"],
                "traceback": traceback.format_exc()[-3000:],
            }
        print(json.dumps(record), flush=True)


def placement(data: int, tensor: int) -> flow.placement:
    """The mesh's placement as specc lays it out: ranks [d][t] = d * tensor + t."""
    if data > 1 and tensor > 1:
        ranks = [[d * tensor + t for t in range(tensor)] for d in range(data)]
    else:
        ranks = list(range(data * tensor))
    return flow.placement("cpu", ranks=ranks)


def nd(case: dict, data_sbp, tensor_sbp) -> list:
    """LiBai's get_nd_sbp: one entry per mesh axis larger than 1."""
    kept = [
        sbp for size, sbp in ((case["data"], data_sbp), (case["tensor"], tensor_sbp)) if size > 1
    ]
    return kept or [B]


def shape(tensor: flow.Tensor) -> list[int]:
    return list(tensor.to_local().shape)


def force(case: dict) -> dict:
    """Build the mistake of `case` in OneFlow; return this rank's local shapes."""
    kind = case["kind"]
    where = placement(case.get("data", 1), case.get("tensor", 1))
    case = {"data": 1, "tensor": 1, **case}
    data_split = S(0) if case.get("input_split", "data") == "data" else B
    if kind == "col":
        x = flow.randn(
            case["batch"], case["in_features"], placement=where, sbp=nd(case, data_split, B)
        )
        weight = flow.empty(
            (case["out_features"], case["in_features"]), placement=where, sbp=nd(case, B, S(0))
        )
        y = flow.matmul(x, weight, transpose_b=True)
        return {"weight": shape(weight), "output": shape(y), "split": shape(weight)[0]}
    if kind == "row":
        whole = flow.randn(
            case["batch"], case["in_features"], placement=where, sbp=nd(case, data_split, B)
        )
        x = whole.to_global(sbp=nd(case, data_split, S(1)))
        weight = flow.empty(
            (case["out_features"], case["in_features"]), placement=where, sbp=nd(case, B, S(1))
        )
        y = flow.matmul(x, weight, transpose_b=True).to_global(sbp=nd(case, data_split, B))
        return {
            "x": shape(x),
            "weight": shape(weight),
            "output": shape(y),
            "split": shape(weight)[1],
        }
    if kind in ("ffn", "vocab"):
        # mlp's first linear is column-parallel: ffn rows of its weight over tensor
        # ranks; an embedding's table splits its vocabulary rows the same way.
        rows = case["ffn"] if kind == "ffn" else case["vocab"]
        weight = flow.empty((rows, case["hidden"]), placement=where, sbp=nd(case, B, S(0)))
        return {"weight": shape(weight), "split": shape(weight)[0]}
    if kind in ("heads", "heads_split"):
        return force_heads(case, where, data_split)
    if kind == "batch":
        x = flow.randn(case["batch"], case["features"], placement=where, sbp=nd(case, S(0), B))
        return {"x": shape(x), "split": shape(x)[0]}
    x = flow.randn(case["batch"], case["previous"], placement=where, sbp=nd(case, B, B))
    if kind == "in_features":
        weight = flow.randn(
            case["out_features"], case["in_features"], placement=where, sbp=nd(case, B, B)
        )
        return {"output": shape(flow.matmul(x, weight, transpose_b=True))}
    if kind == "features":
        return {"output": shape(F.layer_norm(x, (case["features"],)))}
    raise ValueError(kind)


def force_heads(case: dict, where: flow.placement, data_split) -> dict:
    """Attention's query projection, its rows grouped by head as specc lays them out."""
    batch, seq, hidden, heads = case["batch"], case["seq"], case["hidden"], case["heads"]
    x = flow.randn(batch, seq, hidden, placement=where, sbp=nd(case, data_split, B))
    weight = flow.randn(hidden, hidden, placement=where, sbp=nd(case, B, S(0)))
    query = flow.matmul(x, weight, transpose_b=True)  # split over tensor ranks by columns
    local = query.to_local()
    # As LiBai's attention: heads // tensor heads per rank, of hidden // heads columns.
    per_rank = local.reshape(local.shape[0], seq, heads // case["tensor"], hidden // heads)
    return {"query": shape(query), "heads": list(per_rank.shape), "split": local.shape[-1]}


def run_mistakes(path: str) -> None:
    with open(path, encoding="utf-8") as file:
        cases = json.load(file)
    rank = flow.env.get_rank()
    for case in cases:
        record = {"rank": rank, "case": case["id"], "kind": case["kind"], "error": None}
        record["in_placement"] = rank < case.get("data", 1) * case.get("tensor", 1)
        try:
            record["local"] = force(case)
        except Exception as error:
            record["error"] = f"{type(error).__name__}: {str(error).strip()[:500]}"
        print(json.dumps(record), flush=True)


def main() -> None:
    mode, *arguments = sys.argv[1:]
    if mode in ("parity", "graph"):
        run_parity(arguments, graph=mode == "graph")
    else:
        run_mistakes(arguments[0])


if __name__ == "__main__":
    main()
