"""Rewrite the expected outputs from the current compiler: `make regen`.

Golden trees (tests/golden/<spec>/), and the exact diagnostics of every invalid spec
(tests/invalid/<case>.txt, plus <case>.json where one exists). Review the diff.
"""

from __future__ import annotations

import shutil

from specc import api
from tests.support.cases import case_arguments
from tests.support.cli import specc
from tests.support.paths import GOLDEN, INVALID, golden_specs, invalid_specs


def regen_golden() -> None:
    shutil.rmtree(GOLDEN, ignore_errors=True)
    for spec in golden_specs():
        target = GOLDEN / spec.stem
        result = api.build(str(spec), target)
        assert result.plan is not None, f"{spec} does not validate"
        plan = specc("plan", str(spec))  # the plan and its estimate, as test_golden reads it
        (target / "plan.txt").write_text(plan.stdout, encoding="utf-8")


def regen_invalid() -> None:
    for spec in invalid_specs():
        args = case_arguments(spec)
        run = specc("validate", spec.name, *args, cwd=INVALID)
        spec.with_suffix(".txt").write_text(run.stderr, encoding="utf-8")
        if spec.with_suffix(".json").exists():
            run = specc("validate", "--format", "json", spec.name, *args, cwd=INVALID)
            spec.with_suffix(".json").write_text(run.stdout, encoding="utf-8")


if __name__ == "__main__":
    regen_golden()
    regen_invalid()
