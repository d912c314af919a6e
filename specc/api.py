"""The pipeline as functions: what the CLI runs, and what Python callers can import.

Each function returns the diagnostics of every stage it ran, so callers decide how
to show them; none of them prints or exits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from specc import __version__, lower, source, spec
from specc.diagnostics import Diagnostics
from specc.lower.partial import check_setup
from specc.plan import Plan
from specc.source import Document

# What only some runs need is imported when they need it, so that `specc validate`
# starts fast (issue 17): `fixes` when a spec has diagnostics, `render` (Jinja2) and
# `emit` when a package is written. tests/test_architecture.py holds the line.
if TYPE_CHECKING:
    from specc import fixes


@dataclass
class Result:
    """What a run produced: the diagnostics, and as far as it got, the document and plan."""

    path: str
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    text: str | None = None  # the spec's text, for showing source lines even without a document
    document: Document | None = None
    plan: Plan | None = None
    package_dir: Path | None = None
    # What the plan checks could not see, when the spec has schema errors.
    unchecked: spec.Unchecked | None = None


def check(path: str, overrides: Sequence[str] = ()) -> Result:
    """Read, validate and lower the spec at `path`, with `--set name=value` overrides.

    The values the diagnostics' helps offer are tried on the spec (`specc.fixes`), and
    every diagnostic says which overrides it depends on.
    """
    result = Result(path)
    applied = _read_and_check(result, overrides)
    _try_fixes(result, overrides, applied)
    return result


def _read_and_check(result: Result, overrides: Sequence[str]) -> dict[str, int]:
    result.text = source.read_text(result.path, result.diagnostics)
    return {} if result.text is None else _check_text(result, overrides)


def _try_fixes(result: Result, overrides: Sequence[str], applied: dict[str, int]) -> None:
    """Try the values the diagnostics offer, and say which overrides each depends on."""
    if not result.diagnostics.items or result.text is None:
        return
    from specc import fixes

    path = result.path

    def again(text: str, overrides: Sequence[str]) -> fixes.Outcome:
        trial = Result(path, text=text)
        _check_text(trial, overrides)
        return fixes.Outcome(trial.diagnostics.items, trial.unchecked)

    fixes.settle(
        result.diagnostics,
        result.text,
        result.document,
        overrides,
        applied,
        result.unchecked,
        again,
    )
    fixes.attribute(result.diagnostics, result.text, overrides, applied, again)


def check_text(
    path: str, text: str, overrides: Sequence[str] = ()
) -> tuple[Result, dict[str, int]]:
    """Check a spec's text as if read from `path`, without trying suggestions (quick: the
    planner checks many variants of a spec); the result and the overrides applied."""
    result = Result(path, text=text)
    applied = _check_text(result, overrides)
    return result, applied


def _check_text(result: Result, overrides: Sequence[str]) -> dict[str, int]:
    """Parse, validate and lower `result.text`; return the overrides applied.

    The garbage collector is paused meanwhile: the stages build large graphs of objects
    (nodes, models, plan steps) and leave no cycles behind, and on a long spec the
    collector's passes over them cost more than the stages themselves (issue 17). It
    runs again between the trials of `fixes`, which may be many.
    """
    with source.collector_paused():
        return _run_stages(result, overrides)


def _run_stages(result: Result, overrides: Sequence[str]) -> dict[str, int]:
    assert result.text is not None
    result.document = source.parse_spec_text(result.text, result.path, result.diagnostics)
    if result.document is None:
        result.unchecked = spec.Unchecked(document=True)
        return {}
    parsed = spec.parse(result.document, result.diagnostics, overrides)
    result.unchecked = parsed.unchecked
    if parsed.spec is None:
        return parsed.overrides
    if parsed.unchecked is None:
        plan = lower.lower(parsed.spec, result.document, result.diagnostics)
        result.plan = None if result.diagnostics.has_errors else plan
        return parsed.overrides
    # The spec has schema errors: check what its sound part can tell.
    found = Diagnostics()
    if parsed.scope == "all":
        lower.lower(parsed.spec, result.document, found)
    else:
        check_setup(parsed.spec, result.document, found, inputs=parsed.scope == "setup")
    result.diagnostics.items += [d for d in found.items if not parsed.unchecked.covers(d)]
    return parsed.overrides


def build(
    path: str, out_dir: Path, *, force: bool = False, overrides: Sequence[str] = ()
) -> Result:
    """Check the spec and, if it is valid, write its package into `out_dir`.

    Raises:
        emit.OutputError: the package cannot be written there (nothing is changed).
    """
    from specc import emit, render

    result = Result(path)
    # One pause of the collector for the whole build (see `_check_text`): resumed
    # between checking and rendering, it would first pass over everything the check
    # left, which on a long spec costs as much as rendering.
    with source.collector_paused():
        applied = _read_and_check(result, overrides)
        if result.plan is not None:
            files = render.render(result.plan)
            marker = f"generated by specc {__version__} from {result.plan.spec_file}\n"
            result.package_dir = emit.write_package(
                files, out_dir, result.plan.package, marker, force=force
            )
    _try_fixes(result, overrides, applied)
    return result
