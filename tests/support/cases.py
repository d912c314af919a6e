"""How an invalid case is run: its file, and the command-line flags it needs, if any.

A case `tests/invalid/<case>.yaml` may come with `<case>.args`, the extra arguments of
`specc validate` (one per line, e.g. `--set` and `tensor=16`), for mistakes that only a
`--set` makes.
"""

from __future__ import annotations

from pathlib import Path


def case_arguments(case: Path) -> list[str]:
    """The extra arguments `case` is validated with."""
    args = case.with_suffix(".args")
    if not args.exists():
        return []
    return [line for line in args.read_text(encoding="utf-8").splitlines() if line.strip()]
