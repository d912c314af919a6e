"""A non-editable install carries the templates: the wheel alone can build a package."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.support.paths import REPO, SPECS


@pytest.mark.slow
def test_wheel_ships_templates_and_builds_without_the_checkout(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), "."],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("specc-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(unpacked)
    assert "specc/templates/package/model.py.jinja" in names
    assert "specc/kinds/linear.py" in names  # the classes of layers.py live in the kinds
    result = subprocess.run(
        [sys.executable, "-m", "specc", "build", str(SPECS / "huge_fc.yaml"), "-o", "out"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(unpacked), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "huge_fc" / "model.py").is_file()
