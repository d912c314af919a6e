"""Every invalid spec in tests/invalid/ gives exactly its expected diagnostics.

Adding a case is adding two files: <case>.yaml and <case>.txt (written by `make regen`
and reviewed). A <case>.json beside them also pins the JSON output, a <case>.args the
extra arguments it is validated with (`--set`, one argument per line).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.cases import case_arguments
from tests.support.cli import specc
from tests.support.paths import INVALID, invalid_specs


@pytest.mark.parametrize("case", invalid_specs(), ids=lambda p: p.stem)
def test_exact_diagnostics(case):
    run = specc("validate", case.name, *case_arguments(case), cwd=INVALID)
    assert run.code == 2
    assert run.stderr == case.with_suffix(".txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "case", [p for p in invalid_specs() if p.with_suffix(".json").exists()], ids=lambda p: p.stem
)
def test_exact_json(case):
    run = specc("validate", "--format", "json", case.name, *case_arguments(case), cwd=INVALID)
    assert run.code == 2
    assert run.stdout == case.with_suffix(".json").read_text(encoding="utf-8")


def test_corpus_covers_every_error_code():
    from specc.codes import CODES

    seen = set()
    for case in invalid_specs():
        text = case.with_suffix(".txt").read_text(encoding="utf-8")
        seen |= {code for code in CODES if f"[{code}]" in text}
    # Too large, too deep, unreadable: test_hostile.
    unreachable_here = {"E103", "E104", "E107"}
    missing = set(CODES) - seen - unreachable_here
    assert not missing, f"no invalid case shows {sorted(missing)}"


def test_no_invalid_spec_prints_a_traceback(tmp_path):
    """validate through the real entry point, build in-process: exit 2, no traceback, no file."""
    names = [p.name for p in invalid_specs() if not case_arguments(p)]
    result = subprocess.run(
        [sys.executable, "-m", "specc", "validate", *names],
        cwd=INVALID,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    for case in invalid_specs():
        name = case.name
        run = specc("build", name, "-o", str(tmp_path / "out"), *case_arguments(case), cwd=INVALID)
        assert run.code == 2, (name, run.stderr)
        assert "Traceback" not in run.stderr + run.stdout
    assert not (tmp_path / "out").exists(), "an invalid spec wrote something"
