"""specc's own code passes its linters (the generated code is checked in test_golden)."""

import subprocess
import sys

from tests.support.paths import REPO


def test_ruff_check_and_format():
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "specc", "tests"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
