"""Specs as tests use them: the flags an invalid case needs, and copies of a spec.

A case `tests/invalid/<case>.yaml` may come with `<case>.args`, the extra arguments of
`specc validate` (one per line, e.g. `--set` and `tensor=16`), for mistakes that only a
`--set` makes. A copy of a spec under another package name lets one process import
two builds of it (`renamed`).
"""

from __future__ import annotations

from pathlib import Path


def case_arguments(case: Path) -> list[str]:
    """The extra arguments `case` is validated with."""
    args = case.with_suffix(".args")
    if not args.exists():
        return []
    return [line for line in args.read_text(encoding="utf-8").splitlines() if line.strip()]


def renamed(spec: Path, package: str, directory: Path, *, parallel: str | None = None) -> Path:
    """`spec` copied into `directory` as `<package>.yaml`, its `name:` the package's;
    `parallel`, a line such as `sequence: true`, goes first under `parallel:`."""
    text = spec.read_text(encoding="utf-8")
    named = f"\nname: {spec.stem}\n"
    assert named in text, f"{spec} is not named {spec.stem}"
    text = text.replace(named, f"\nname: {package}\n", 1)
    if parallel is not None:
        assert "\nparallel:\n" in text, f"{spec} has no block `parallel:`"
        text = text.replace("\nparallel:\n", f"\nparallel:\n  {parallel}\n", 1)
    copy = directory / f"{package}.yaml"
    copy.write_text(text, encoding="utf-8")
    return copy
