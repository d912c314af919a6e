"""How long specc takes on long specs, measured against libyaml composing the same file.

Issue 17: `specc build` of a spec with thousands of layers took seconds, most of them
in reading YAML. This script generates linear/activation chains like the issue's (two
linears for every activation) of 10 to 10,000 layers in a temporary directory and
times, alternating the variants within one process so that drift on a busy machine
hits them alike, and reporting medians:

  compose  `yaml.compose` with libyaml's CSafeLoader: the floor for any YAML reader
  paused   the same with Python's cyclic collector paused, as specc pauses it: on a
           long file the collector's passes over the growing node graph cost compose
           more than composing, so `build / paused` is the ratio of the work itself
  parse    `specc.source.parse_spec_text`: YAML text to data plus every node's span
  check    `specc.api.check`: read, validate and lower
  build    `specc.api.build`: check, render and write the package

then the peak memory of each (tracemalloc, one separate run, as tracing slows the
code down), the ratios build / compose and build / paused (medians of the ratios
within each round), and time and memory per layer, which stay flat where both grow
linearly. The cold start of `specc validate` is benchmarks/cold_start.py's.

    make bench-compile             # or: .venv/bin/python benchmarks/compile_speed.py
    .venv/bin/python benchmarks/compile_speed.py --sizes 10 100 --repeat 3
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
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
        "paused": lambda: paused(lambda: yaml.compose(text, Loader=yaml.CSafeLoader)),
        "parse": parse,
        "check": check,
        "build": build,
    }


def paused(run: Callable[[], object]) -> object:
    with source.collector_paused():
        return run()


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
        # Ratios within a round, where the machine's drift hits both alike.
        for reference in ("compose", "paused"):
            rounds = zip(times["build"], times[reference], strict=True)
            row[f"build/{reference}"] = statistics.median(b / r for b, r in rounds)
        for name, run in runs.items():
            row[f"{name}_peak"] = peak_bytes(run)
        rows.append(row)
        print(f"  {layers:>6,} layers done", file=sys.stderr, flush=True)
    return rows


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
    names = ("compose", "paused", "parse", "check", "build")
    lines = [
        "| layers | bytes | "
        + " | ".join(f"{n} (s)" for n in names)
        + " | build / compose | build / paused | build per layer (µs) |",
        "|---:|---:|" + "---:|" * len(names) + "---:|---:|---:|",
    ]
    for row in rows:
        cells = [f"{row['layers']:,}", f"{row['bytes']:,}"]
        cells += [f"{row[n]:.4f}" for n in names]
        cells.append(f"{row['build/compose']:.1f}x")
        cells.append(f"{row['build/paused']:.1f}x")
        cells.append(f"{row['build'] / row['layers'] * 1e6:.0f}")  # type: ignore[operator]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Peak memory (tracemalloc, MiB):",
        "",
        "| layers | " + " | ".join(names) + " | build per layer (KiB) |",
        "|---:|" + "---:|" * len(names) + "---:|",
    ]
    for row in rows:
        peaks = [f"{row[f'{n}_peak'] / 2**20:.1f}" for n in names]  # type: ignore[operator]
        peaks.append(f"{row['build_peak'] / row['layers'] / 2**10:.1f}")  # type: ignore[operator]
        lines.append(f"| {row['layers']:,} | " + " | ".join(peaks) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per variant")
    arguments = parser.parse_args()
    print(machine())
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    with tempfile.TemporaryDirectory(prefix="specc-bench-") as workdir:
        rows = measure(arguments.sizes, arguments.repeat, Path(workdir))
    print(report(rows))


if __name__ == "__main__":
    main()
