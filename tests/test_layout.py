"""specc.layout writes the plan's statements as `ruff format` would: checked against ruff.

Random calls, comprehensions, sums, lists, long strings, signatures, imports and
comments (the shapes generated code takes, with names up to the 32 characters the
naming authority allows) go through one `ruff format` call and one `ruff check` with
the line length enforced; ruff must leave every one unchanged and find nothing.
"""

from __future__ import annotations

import random
import subprocess
import sys

from specc import layout
from specc.plan import (
    Assign,
    Call,
    Comprehension,
    ImportFrom,
    ListOf,
    ModuleClass,
    Ref,
    Repeated,
    Subscript,
    Sum,
    TupleOf,
)


def forward_of(rng: random.Random, names: list[str]) -> ModuleClass:
    """A class whose forward takes `names`, the last ones optional, returning one or two
    values (as the spec orders them: an optional input comes after the required ones)."""
    optional = tuple(names[rng.randint(0, len(names)) :])
    returns = ("y",) if rng.random() < 0.7 else ("y", "z")
    return ModuleClass("M", "", None, False, tuple(names), (), returns, (), optional)


def sample(rng: random.Random) -> str:
    constant = "A" * rng.randint(1, 32) + "_STAGES"
    terms = tuple(Repeated(stage, rng.randint(1, 999)) for stage in range(rng.randint(1, 14)))
    module = "C" * rng.randint(1, 32) + "Layer"
    attribute = "x" * rng.randint(1, 32)
    if rng.random() < 0.5:
        element = Call(module, kwargs=(("placement", Subscript(Ref("STAGES"), Ref("stage"))),))
        instances = Comprehension(element, "stage", Ref(constant))
    else:
        element = Call(module, kwargs=(("placement", Ref("PLACEMENT")),))
        instances = Comprehension(element, "_", Call("range", (rng.randint(1, 99),)))
    arguments = tuple(rng.randint(1, 2**40) for _ in range(rng.randint(0, 6)))
    nested = Call("nn.GELU", kwargs=(("approximate", "tanh"),)) if rng.random() < 0.3 else 1e-05
    kwargs = (("eps", nested), ("placement", Ref("PLACEMENT")))
    names = ["n" * rng.randint(1, 30) + str(i) for i in range(rng.randint(0, 5))]
    command = "python -m oneflow.distributed.launch " + "z" * rng.randint(1, 60)
    imported = ImportFrom(".layers", tuple("K" * rng.randint(1, 20) + str(i) for i in range(8)))
    lines = [
        layout.imports(imported),
        "",
        layout.statement(Assign(constant, Sum(terms))),
        layout.statement(Assign("NODE_COUNTS", ListOf(tuple(range(2, rng.randint(3, 40)))))),
        layout.statement(Assign("LAUNCH_COMMAND", command)),
        "",
        "",
        "class Model:",
        "    def __init__(self):",
        layout.statement(Assign(f"self.{attribute}", Call("nn.ModuleList", (instances,))), 8),
        layout.statement(Assign(f"self.{attribute}", Call(module, arguments, kwargs)), 8),
        "",
        layout.signature(forward_of(rng, names), 4),
        layout.comment("x" * rng.randint(1, 40) + ": " + "word " * rng.randint(1, 30), 8),
        layout.statement(Assign("y", Call("flow.randint", (0, 5, TupleOf(arguments)))), 8),
        "        return y",
    ]
    return "\n".join(lines) + "\n"


def test_layouts_are_what_ruff_writes(tmp_path):
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
    path = tmp_path / "sample.py"
    path.write_text(source, encoding="utf-8")
    check = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "E501",
         str(path)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout
