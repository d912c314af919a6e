"""Training-step time of specc's generated packages against hand-written OneFlow.

    python benchmarks/step_time.py [--rounds 7] [--steps 5] [--only gpt2_tp2 ...]

Builds each model's package with `python -m specc build`, then launches once per world
size; inside the launch every model runs as generated code and as its hand-written
twin (benchmarks/reference_models.py), the two holding the same weights. They are
timed alternately (the order flips every round, so drift does not favour either),
eagerly (forward, backward, SGD step) and as an nn.Graph training step, each sample
the mean of `--steps` steps. A sample's time is the slowest rank's; the table gives
the medians and their ratio generated / hand-written. It also gives the all-reduces
each training graph compiles to (tests/support/collectives.py) and the loss difference
between the twins. With CUDA it adds tokens/s and model FLOPs utilisation (MFU) against
the device's FP32 peak (SPECC_BENCH_PEAK_TFLOPS overrides); on CPU it says it skips them.

Set SPECC_LAUNCH_PORTS=first-last to keep the launcher's port in a range.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks` and `tests` importable
    sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Bench:
    """One model on one mesh: how to build it and what a step of it is worth."""

    name: str
    spec: str  # relative to the repository
    package: str
    sizes: dict[str, int] = field(default_factory=dict)  # passed as --set
    seq: int = 1  # tokens per sample (1 for the MLP: a sample is a token)
    # How many of random_inputs() the twins take: GPT-2's optional attention_mask is
    # left out (every token attended to), as the reference has no padding.
    inputs: int = 1

    @property
    def world(self) -> int:
        return self.sizes.get("data", 1) * self.sizes["tensor"]

    @property
    def tokens(self) -> int:
        return self.sizes["micro_batch"] * self.sizes.get("data", 1) * self.seq


MLP_SIZES = {"micro_batch": 32, "features": 1024, "ffn": 4096, "tensor": 2}
GPT2_SIZES = {
    "hidden": 256,
    "heads": 8,
    "layers": 4,
    "vocab": 2048,
    "seq": 64,
    "positions": 64,
    "micro_batch": 4,
    "tensor": 2,
}
BENCHES = {
    b.name: b
    for b in (
        Bench("mlp_tp2", "benchmarks/specs/mlp_2d.yaml", "mlp_2d", {**MLP_SIZES, "data": 1}),
        Bench("mlp_dp2_tp2", "benchmarks/specs/mlp_2d.yaml", "mlp_2d", {**MLP_SIZES, "data": 2}),
        Bench("gpt2_tp2", "specs/gpt2.yaml", "gpt2", GPT2_SIZES, seq=GPT2_SIZES["seq"]),
    )
}
WHO = ("generated", "hand-written")
MODES = ("eager", "graph")
FP32_PEAK_TFLOPS = {"H100": 67.0, "A100": 19.5, "A10": 31.2, "V100": 15.7, "T4": 8.1}


def flops_per_step(bench: Bench) -> float:
    """Model FLOPs of one training step: 6 per parameter per token in the matmuls, plus
    attention's scores and context (12 x layers x seq x hidden per token)."""
    s = bench.sizes
    if bench.package == "mlp_2d":
        return 6.0 * 2 * s["features"] * s["ffn"] * bench.tokens
    hidden, layers = s["hidden"], s["layers"]
    matmul_params = layers * 12 * hidden * hidden + s["vocab"] * hidden  # blocks, LM head
    return (6.0 * matmul_params + 12.0 * layers * s["seq"] * hidden) * bench.tokens


# ---------------------------------------------------------------- inside the launch


def reference_for(bench: Bench, device: str):
    from benchmarks import reference_models as ref

    s = bench.sizes
    mesh = ref.Mesh(s.get("data", 1), s["tensor"], device)
    if bench.package == "mlp_2d":
        return ref.MLP2D(mesh, s["features"], s["ffn"])
    return ref.GPT2(
        mesh,
        vocab=s["vocab"],
        hidden=s["hidden"],
        heads=s["heads"],
        layers=s["layers"],
        positions=s["positions"],
        seq=s["seq"],
    )


def worker(names: list[str], rounds: int, steps: int, warmup: int, same: bool) -> None:
    """Time each bench's two twins, eager and graph; print JSON lines per rank.

    With `same`, the "hand-written" twin is a second generated model: an A/A run.
    """
    import oneflow as flow

    from benchmarks import reference_models as ref
    from tests.support.collectives import collectives

    rank = flow.env.get_rank()

    def sync() -> None:
        flow._oneflow_internal.eager.Sync()
        if flow.cuda.is_available():
            flow.cuda.synchronize()

    def emit(**record: object) -> None:
        print(json.dumps({"rank": rank, **record}), flush=True)

    for name in names:
        bench = BENCHES[name]
        package = importlib.import_module(bench.package)
        device = package.parallel.DEVICE
        twin = package.Model() if same else reference_for(bench, device)
        models = {"generated": package.Model(), "hand-written": twin}
        for model in models.values():
            model.eval()  # dropout off (specs/gpt2.yaml has it; the reference does not)
        ref.load_generated(models["hand-written"], models["generated"])
        inputs = package.random_inputs(seed=1)[: bench.inputs]
        batch = (*inputs, package.random_labels(seed=1))
        losses = {who: m.loss(m(*batch[:-1]), batch[-1]) for who, m in models.items()}
        values = [float(ref.whole(loss).to_local().numpy()) for loss in losses.values()]
        # Eager first: OneFlow 0.9 fails in eager backward on a module once a graph
        # has been compiled on it ("This is a oneflow bug"), so graphs come second.
        samples: dict[str, list[float]] = {}
        steppers = {
            (who, "eager"): eager_step(m, flow.optim.SGD(m.parameters(), lr=1e-3), batch)
            for who, m in models.items()
        }
        samples.update(alternate(steppers, "eager", rounds, steps, warmup, sync))
        steppers, allreduces = {}, {}
        for who, model in models.items():
            graph_type = package.TrainGraph if same or who == "generated" else ref.TrainGraph
            graph = graph_type(model, flow.optim.SGD(model.parameters(), lr=1e-3))
            graph(*batch)  # compiles
            check_updates(graph, model)
            allreduces[who] = sum(c.kind == "all-reduce" for c in collectives(graph))
            steppers[(who, "graph")] = lambda graph=graph, batch=batch: graph(*batch)
        samples.update(alternate(steppers, "graph", rounds, steps, warmup, sync))
        parameters = {w: sum(p.numel() for p in m.parameters()) for w, m in models.items()}
        emit(
            bench=name,
            device=device,
            device_name=flow.cuda.get_device_name() if flow.cuda.is_available() else None,
            loss=values,
            allreduces=allreduces,
            parameters=parameters,
            samples=samples,
        )


def alternate(steppers, mode, rounds, steps, warmup, sync):
    """{"<who>/<mode>": seconds per step of each sample}, the twins taking turns."""
    for step in steppers.values():
        for _ in range(warmup):
            step()
    sync()
    samples: dict[str, list[float]] = {f"{who}/{mode}": [] for who in WHO}
    for index in range(rounds):
        for who in WHO if index % 2 == 0 else WHO[::-1]:
            step = steppers[(who, mode)]
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            samples[f"{who}/{mode}"].append((time.perf_counter() - start) / steps)
    return samples


def check_updates(graph, model) -> None:
    """Fail unless the compiled graph updates every parameter (see eager_step)."""
    job = graph._full_job_proto
    updates = sum(op.user_conf.op_type_name == "sgd_update" for op in job.net.op)
    parameters = len(list(model.parameters()))
    if updates != parameters:
        raise RuntimeError(f"{type(graph).__name__}: {updates} SGD updates for {parameters}")


def eager_step(model, optimizer, batch):
    def step() -> None:
        loss = model.loss(model(*batch[:-1]), batch[-1])
        loss.backward()
        optimizer.step()
        # None, not zeros: a graph compiled on parameters that still hold a gradient
        # accumulates into it and leaves out the optimizer (OneFlow 0.9, measured).
        optimizer.zero_grad(set_to_none=True)

    return step


# ---------------------------------------------------------------- the driver


def build(bench: Bench, out: Path) -> None:
    sets = [part for k, v in bench.sizes.items() for part in ("--set", f"{k}={v}")]
    command = [sys.executable, "-m", "specc", "build", bench.spec, "-o", str(out), *sets]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)


def run(
    names: list[str], rounds: int, steps: int, warmup: int, same: bool, out: Path
) -> list[dict]:
    """Build, launch once per world size, and return every rank's record."""
    from tests.support.launcher import launch

    records = []
    for world in sorted({BENCHES[n].world for n in names}):
        group = [n for n in names if BENCHES[n].world == world]
        directory = out / f"world{world}"
        directory.mkdir(parents=True, exist_ok=True)
        for name in group:
            build(BENCHES[name], directory)
        program = [str(Path(__file__).resolve()), "--worker", *group]
        program += ["--rounds", str(rounds), "--steps", str(steps), "--warmup", str(warmup)]
        program += ["--aa"] if same else []
        launched = launch(world, program, pythonpath=[directory, REPO], cwd=directory, timeout=3600)
        if launched.returncode != 0:
            raise SystemExit(f"launch on {world} processes failed:\n{launched.explain()}")
        records += launched.records()
    return records


def machine() -> str:
    """What the numbers were measured on."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()},"
        f" OneFlow {metadata.version('oneflow')}, {platform.system()} {platform.release()}"
    )


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


def report(records: list[dict], rounds: int, steps: int, same: bool) -> str:
    """The table: per bench and mode, the medians of the slowest rank's sample times.

    The ratio is the median over rounds of generated / twin, each round's two samples
    taken back to back, with its interquartile range (an A/A run, `--aa`, shows the
    noise: on the 2-core machine of RESULTS.md, medians 0.95-1.02).
    """
    twin = "generated again (A/A run)" if same else "hand-written"
    lines = [
        f"Machine: {machine()}",
        f"{rounds} rounds x {steps} steps per sample; a sample is the slowest rank's mean step;"
        f" twin: {twin}.",
        "",
        "| model | ranks | mode | generated ms | twin ms | ratio gen/twin (IQR) "
        "| all-reduces gen / twin |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    extras = []
    for name, bench in BENCHES.items():
        mine = [r for r in records if r["bench"] == name]
        if not mine:
            continue
        first = mine[0]
        for mode in MODES:
            slowest = {
                who: [
                    max(s) for s in zip(*(r["samples"][f"{who}/{mode}"] for r in mine), strict=True)
                ]
                for who in WHO
            }
            gen, hand = (statistics.median(slowest[who]) for who in WHO)
            paired = [
                g / h for g, h in zip(slowest["generated"], slowest["hand-written"], strict=True)
            ]
            low, median, high = statistics.quantiles(paired, n=4)
            lines.append(
                f"| {name} | {bench.world} | {mode} | {gen * 1e3:.1f} | {hand * 1e3:.1f} "
                f"| {median:.2f} ({low:.2f}-{high:.2f}) "
                f"| {first['allreduces']['generated']} / {first['allreduces']['hand-written']} |"
            )
            extras.append(throughput(bench, mode, first, gen, hand))
        loss_gen, loss_hand = first["loss"]
        params = first["parameters"]
        extras.append(
            f"{name}: loss generated {loss_gen:.6f}, twin {loss_hand:.6f} (same weights;"
            f" diff {abs(loss_gen - loss_hand):.1e}); parameters {params['generated']:,} and"
            f" {params['hand-written']:,}; device {first['device_name'] or first['device']}"
        )
    return "\n".join([*lines, "", *extras])


def throughput(bench: Bench, mode: str, record: dict, gen: float, hand: float) -> str:
    """tokens/s and MFU on CUDA; on CPU, the reason there are none."""
    if record["device"] != "cuda":
        return f"{bench.name} {mode}: tokens/s and MFU skipped: no CUDA device (ran on cpu)"
    peak = os.environ.get("SPECC_BENCH_PEAK_TFLOPS")
    if peak is None:
        found = [v for k, v in FP32_PEAK_TFLOPS.items() if k in record["device_name"]]
        peak = str(found[0]) if found else None
    parts = []
    for who, seconds in zip(WHO, (gen, hand), strict=True):
        text = f"{who} {bench.tokens / seconds:,.0f} tokens/s"
        if peak is not None:
            mfu = flops_per_step(bench) / seconds / (bench.world * float(peak) * 1e12)
            text += f", MFU {mfu:.1%}"
        parts.append(text)
    note = "" if peak else " (MFU: unknown device peak, set SPECC_BENCH_PEAK_TFLOPS)"
    return f"{bench.name} {mode}: " + "; ".join(parts) + note


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed sample")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each twin")
    parser.add_argument("--only", nargs="*", choices=list(BENCHES), default=list(BENCHES))
    parser.add_argument("--out", type=Path, help="build directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write every rank's record here")
    parser.add_argument("--aa", action="store_true", help="twin = a second generated model")
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.rounds, args.steps, args.warmup, args.aa)
        return
    with tempfile.TemporaryDirectory(prefix="specc-bench-") as temporary:
        out = args.out or Path(temporary)
        records = run(args.only, args.rounds, args.steps, args.warmup, args.aa, out)
    if args.json:
        args.json.write_text(json.dumps(records, indent=1), encoding="utf-8")
    print(report(records, args.rounds, args.steps, args.aa))


if __name__ == "__main__":
    main(sys.argv[1:])
