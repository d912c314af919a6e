"""`make bench`: run the three benchmarks and write their tables into benchmarks/RESULTS.md.

  step_time.py      step time of generated packages against hand-written OneFlow, with
                    the all-reduces each training graph compiles to (and, on CUDA,
                    tokens/s and MFU)
  compile_speed.py  specc against libyaml on specs of 10 to 10,000 layers: time and memory
  cold_start.py     a fresh `specc validate` of a small spec

Each runs in its own process, one after the other, so none slows another. Their output
replaces its part of what lies between the two `make bench` markers of RESULTS.md
(`--only` leaves the other benchmarks' tables as they were); the notes around them,
written by hand, stay.

    .venv/bin/python benchmarks/bench.py [--quick] [--only compile cold step]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN = "<!-- make bench: begin (benchmarks/bench.py writes what follows) -->"
END = "<!-- make bench: end -->"
# (title, script, its arguments, with --quick)
BENCHMARKS = {
    "step": ("Step time and collectives", "step_time.py", [], ["--rounds", "5"]),
    "compile": ("Compile time and memory", "compile_speed.py", [], ["--repeat", "2"]),
    "cold": ("Cold start", "cold_start.py", [], ["--runs", "5"]),
}


def machine() -> str:
    """The machine in words: CPUs, GPUs (or none), Python and OneFlow."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    probe = "import oneflow as f; print(f.__version__, f.cuda.device_count())"
    try:
        found = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
        ).stdout.split()
        oneflow, gpus = found[-2], int(found[-1])
    except (subprocess.SubprocessError, OSError, IndexError, ValueError):
        oneflow, gpus = "not installed", 0
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {gpus or 'no'} CUDA GPU{'s' if gpus != 1 else ''}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"OneFlow {oneflow}"
    )


def run(name: str, quick: bool) -> str:
    title, script, arguments, fewer = BENCHMARKS[name]
    command = [sys.executable, f"benchmarks/{script}", *arguments, *(fewer if quick else [])]
    print(f"bench: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    output = subprocess.run(
        command, cwd=HERE.parent, check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    shown = " ".join(["python", *command[1:]])
    return f"### {title}\n\n`{shown}`\n\n{output.strip()}\n"


def write(sections: dict[str, str], quick: bool) -> None:
    """Put `sections` between the markers, keeping the other benchmarks' last tables."""
    text = RESULTS.read_text(encoding="utf-8")
    head, found, rest = text.partition(BEGIN)
    kept, ended, tail = rest.partition(END)
    if not found or not ended:
        raise SystemExit(f"{RESULTS} has no `make bench` markers: {BEGIN} ... {END}")
    earlier = {
        name: f"### {part.strip()}\n"
        for part in kept.split("\n### ")[1:]
        for name, (title, *_) in BENCHMARKS.items()
        if part.startswith(title)
    }
    merged = [sections.get(name) or earlier.get(name) for name in BENCHMARKS]
    runs = "a quick run (--quick: fewer repetitions)" if quick else "`make bench`"
    body = [f"Measured by {runs} on: {machine()}.", "", *(m for m in merged if m)]
    RESULTS.write_text(f"{head}{BEGIN}\n\n" + "\n".join(body) + f"\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, for a try")
    arguments = parser.parse_args()
    write({name: run(name, arguments.quick) for name in arguments.only}, arguments.quick)
    print(f"bench: wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
