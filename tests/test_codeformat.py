"""specc.codeformat lays out generated lines as `ruff format` would: checked against ruff.

Random calls, comprehensions and sums (the shapes generated code takes, with names up
to the 32 characters the naming authority allows) go through one `ruff format` call;
it must leave every one unchanged.
"""

from __future__ import annotations

import random
import subprocess
import sys

from specc.codeformat import call_lines, comprehension_lines, sum_lines


def sample(rng: random.Random) -> str:
    constant = "A" * rng.randint(1, 32) + "_STAGES"
    terms = [f"[{stage}] * {rng.randint(1, 999)}" for stage in range(rng.randint(1, 14))]
    module = "C" * rng.randint(1, 32) + "Layer"
    attribute = "x" * rng.randint(1, 32)
    clause = rng.choice((f"for stage in {constant}", f"for _ in range({rng.randint(1, 99)})"))
    arguments = [str(rng.randint(1, 2**40)) for _ in range(rng.randint(0, 6))]
    lines = [
        *sum_lines(constant, terms),
        "",
        "",
        "class Model:",
        "    def __init__(self):",
        *comprehension_lines(
            8, f"self.{attribute} = nn.ModuleList", f"{module}(placement=STAGES[stage])", clause
        ),
        *call_lines(8, f"self.{attribute} = {module}", [*arguments, "placement=PLACEMENT"]),
    ]
    return "\n".join(lines) + "\n"


def test_layouts_are_what_ruff_writes():
    rng = random.Random(20261124)
    source = "\n\n".join(sample(rng) for _ in range(200))
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--isolated", "--no-cache", "-"],
        input=source,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == source
