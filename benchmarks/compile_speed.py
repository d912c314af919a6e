"""How long specc takes on long specs, measured against libyaml composing the same file.

Issue 17: `specc build` of a spec with thousands of layers took seconds, most of them
in reading YAML. This script generates linear/activation chains like the issue's (two
linears for every activation) of 10 to 10,000 layers in a temporary directory and
times, alternating the variants within one process so that drift on a busy machine
hits them alike, and reporting medians:

  compose  `yaml.compose` with libyaml's CSafeLoader: the floor for any YAML reader
  parse    `specc.source.parse_spec_text`: YAML text to data plus every node's span
  check    `specc.api.check`: read, validate and lower
  build    `specc.api.build`: check, render and write the package

then the peak memory of each (tracemalloc, one separate run, as tracing slows the
code down), the ratio build / compose, and the cold start of
`python -m specc validate specs/huge_mlp_2d.yaml` with the imports that cost most.

    make bench                     # or: .venv/bin/python benchmarks/compile_speed.py
    .venv/bin/python benchmarks/compile_speed.py --sizes 10 100 --repeat 3 --cold 3
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import yaml

from specc import api, source
from specc.diagnostics import Diagnostics

REPO = Path(__file__).resolve().parents[1]
COLD_SPEC = "specs/huge_mlp_2d.yaml"
ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
WIDTH = 64


def chain_spec(layers: int) -> str:
    """A valid spec of `layers` layers: linear, linear, activation, linear, linear, ..."""
    lines = [
        f"# {layers} layers: two linears for every activation (issue 17)",
        "specc: 1",
        f"name: chain_{layers}",
        "device: cpu",
        "inputs:",
        "  - name: x",
        f"    shape: [8, {WIDTH}]",
        "layers:",
    ]
    for i in range(layers):
        if i % 3 == 2:
            lines.append(f"  - kind: {ACTIVATIONS[(i // 3) % len(ACTIVATIONS)]}")
        else:
            lines += [
                "  - kind: linear",
                f"    name: fc{i}",
                f"    in_features: {WIDTH}",
                f"    out_features: {WIDTH}",
            ]
    return "\n".join(lines) + "\n"


def variants(path: Path, out: Path) -> dict[str, Callable[[], object]]:
    text = path.read_text(encoding="utf-8")

    def build() -> object:
        result = api.build(str(path), out, force=True)
        assert result.package_dir is not None, result.diagnostics.items[:3]
        return result

    def check() -> object:
        result = api.check(str(path))
        assert result.plan is not None, result.diagnostics.items[:3]
        return result

    def parse() -> object:
        document = source.parse_spec_text(text, str(path), Diagnostics())
        assert document is not None
        return document

    return {
        "compose": lambda: yaml.compose(text, Loader=yaml.CSafeLoader),
        "parse": parse,
        "check": check,
        "build": build,
    }


def timed(run: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def peak_bytes(run: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def repetitions(layers: int, repeat: int) -> int:
    """More repetitions for the small specs, which time in milliseconds."""
    return max(repeat, {10: 5 * repeat, 100: 3 * repeat}.get(layers, repeat))


def measure(sizes: list[int], repeat: int, workdir: Path) -> list[dict[str, object]]:
    rows = []
    for layers in sizes:
        path = workdir / f"chain_{layers}.yaml"
        path.write_text(chain_spec(layers), encoding="utf-8")
        runs = variants(path, workdir / f"out_{layers}")
        for run in runs.values():  # warm up: imports, template compilation, caches
            run()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repetitions(layers, repeat)):
            for name, run in runs.items():
                times[name].append(timed(run))
        row: dict[str, object] = {"layers": layers, "bytes": path.stat().st_size}
        for name in runs:
            row[name] = statistics.median(times[name])
        for name, run in runs.items():
            row[f"{name}_peak"] = peak_bytes(run)
        rows.append(row)
        print(f"  {layers:>6,} layers done", file=sys.stderr, flush=True)
    return rows


def cold_start(count: int) -> tuple[float, list[tuple[str, float, float]]]:
    """Median wall time of a fresh `specc validate`, and its costliest imports."""
    command = [sys.executable, "-m", "specc", "validate", COLD_SPEC]
    times = []
    for _ in range(count):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    imports: dict[str, list[tuple[float, float]]] = {}
    for _ in range(3):
        run = subprocess.run(
            [sys.executable, "-X", "importtime", *command[1:]],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
        for line in run.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
            if match:
                name = match[4]
                imports.setdefault(name, []).append((int(match[1]) / 1e6, int(match[2]) / 1e6))
    summary = [
        (name, statistics.median(s for s, _ in t), statistics.median(c for _, c in t))
        for name, t in imports.items()
    ]
    summary.sort(key=lambda item: -item[1])
    return statistics.median(times), summary[:10]


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"PyYAML {yaml.__version__} (libyaml: {yaml.__with_libyaml__}), "
        f"load average {load:.2f} at the start"
    )


def report(rows: list[dict[str, object]]) -> str:
    names = ("compose", "parse", "check", "build")
    lines = [
        "| layers | bytes | " + " | ".join(f"{n} (s)" for n in names) + " | build / compose |",
        "|---:|---:|" + "---:|" * len(names) + "---:|",
    ]
    for row in rows:
        cells = [f"{row['layers']:,}", f"{row['bytes']:,}"]
        cells += [f"{row[n]:.4f}" for n in names]
        cells.append(f"{row['build'] / row['compose']:.1f}x")  # type: ignore[operator]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Peak memory (tracemalloc, MiB):",
        "",
        "| layers | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for row in rows:
        peaks = [f"{row[f'{n}_peak'] / 2**20:.1f}" for n in names]  # type: ignore[operator]
        lines.append(f"| {row['layers']:,} | " + " | ".join(peaks) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per variant")
    parser.add_argument("--cold", type=int, default=10, help="fresh processes to time")
    arguments = parser.parse_args()
    print(machine())
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    with tempfile.TemporaryDirectory(prefix="specc-bench-") as workdir:
        rows = measure(arguments.sizes, arguments.repeat, Path(workdir))
    print(report(rows))
    if arguments.cold:
        wall, imports = cold_start(arguments.cold)
        print(f"\nCold `python -m specc validate {COLD_SPEC}`: {wall:.3f} s ", end="")
        print(f"(median of {arguments.cold})\n")
        print("Costliest imports (`-X importtime`, median of 3 runs, by self time):\n")
        print("| module | self (s) | cumulative (s) |\n|---|---:|---:|")
        for name, own, cumulative in imports:
            print(f"| {name} | {own:.4f} | {cumulative:.4f} |")


if __name__ == "__main__":
    main()
