"""How long a fresh `specc validate` of a small spec takes, and what it spends it on.

Issue 17: a cold `specc validate` took about 240 ms, nearly all of it imports. This
script times fresh processes, the variants taking turns so that a busy machine's drift
hits them alike, and reports medians:

  python      `python -c pass`: the interpreter alone
  floor       importing PyYAML and pydantic and building one model: what any
              compiler written on them pays before reading a spec
  validate    `python -m specc validate <spec>`
  validate at DIR   the same with specc imported from DIR (`--against`, e.g. an older
              checkout: `git archive <commit> specc | tar -x -C DIR`)

then the imports of `validate` that cost most (`-X importtime`, median of 3 runs).
Bytecode is written and used (PYTHONDONTWRITEBYTECODE is dropped; a first untimed run
writes it), as in an installed specc.

    .venv/bin/python benchmarks/cold_start.py [--runs 21] [--spec specs/gpt2.yaml]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOOR = "import yaml, pydantic\nclass A(pydantic.BaseModel):\n    x: int\nA(x=1)\n"


class Run:
    """A command run in `checkout` (whose specc `-m` and `-c` import: the directory a
    process starts in comes first on its path), with bytecode kept."""

    def __init__(self, command: list[str], checkout: Path = REPO) -> None:
        self.command, self.checkout = command, checkout
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env["PYTHONPATH"] = str(checkout)

    def __call__(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command,
            cwd=self.checkout,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )


def commands(spec: str, against: list[Path]) -> dict[str, Run]:
    validate = [sys.executable, "-m", "specc", "validate", str(REPO / spec)]
    found = {
        "python": Run([sys.executable, "-c", "pass"]),
        "floor (yaml + pydantic + one model)": Run([sys.executable, "-c", FLOOR]),
        "specc validate": Run(validate),
    }
    for directory in against:
        found[f"specc validate at {directory}"] = Run(validate, directory.resolve())
    return found


def timed(runs: int, variants: dict[str, Run]) -> dict[str, float]:
    for run in variants.values():  # writes the bytecode
        run()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(runs):
        order = list(variants) if index % 2 == 0 else list(variants)[::-1]
        for name in order:
            start = time.perf_counter()
            variants[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def costliest_imports(spec: str, count: int = 12) -> list[tuple[str, float, float]]:
    """(module, self s, cumulative s) of `specc validate`, by self time, median of 3."""
    found: dict[str, list[tuple[float, float]]] = {}
    run = Run([sys.executable, "-X", "importtime", "-m", "specc", "validate", spec])
    for _ in range(3):
        for line in run().stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
            if match:
                times = (int(match[1]) / 1e6, int(match[2]) / 1e6)
                found.setdefault(match[4], []).append(times)
    summary = [
        (name, statistics.median(s for s, _ in t), statistics.median(c for _, c in t))
        for name, t in found.items()
    ]
    summary.sort(key=lambda item: -item[1])
    return summary[:count]


def report(spec: str, runs: int, medians: dict[str, float]) -> str:
    floor = medians["floor (yaml + pydantic + one model)"]
    lines = [
        f"Cold start, `python -m specc validate {spec}` (median of {runs} fresh processes"
        " each, variants alternating):",
        "",
        "| process | median (ms) | minus the floor (ms) |",
        "|---|---:|---:|",
    ]
    for name, seconds in medians.items():
        extra = "" if not name.startswith("specc") else f"{(seconds - floor) * 1e3:.0f}"
        lines.append(f"| {name} | {seconds * 1e3:.0f} | {extra} |")
    lines += [
        "",
        "Costliest imports of `specc validate` (`-X importtime`, median of 3 runs, by self time):",
        "",
        "| module | self (ms) | cumulative (ms) |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {name} | {own * 1e3:.1f} | {total * 1e3:.1f} |"
        for name, own, total in costliest_imports(spec)
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="fresh processes per variant")
    parser.add_argument("--spec", default="specs/gpt2.yaml", help="relative to the repository")
    parser.add_argument("--against", type=Path, nargs="*", default=[], help="other checkouts")
    arguments = parser.parse_args()
    medians = timed(arguments.runs, commands(arguments.spec, arguments.against))
    print(report(arguments.spec, arguments.runs, medians))


if __name__ == "__main__":
    main()
