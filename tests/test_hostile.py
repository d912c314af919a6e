"""Specs built to hurt: they end in a located error within bounded time and memory."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest

from tests.support.cli import specc
from tests.support.paths import SPECS


def run_bounded(tmp_path, text: str | bytes, seconds: float = 20):
    """Validate a spec in a fresh process capped at 1 GiB, and time it."""
    spec = tmp_path / "hostile.yaml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "specc", "validate", spec.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=seconds,
        preexec_fn=cap_memory,
        check=False,
    )
    return result, time.monotonic() - start


def test_billion_laughs_is_bounded(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    result, _ = run_bounded(tmp_path, "\n".join(lines) + "\n")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error[E104]: document expands to more than 200,000 nodes" in result.stderr


@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_deep_nesting_is_bounded(tmp_path, opener):
    closer = "]" if opener == "[" else "}"
    result, _ = run_bounded(tmp_path, opener * 5000 + closer * 5000 + "\n")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error[E104]" in result.stderr


def test_nesting_that_would_overflow_libyaml_is_bounded(tmp_path):
    """libyaml's composer recurses in C: 100,000 brackets were a segfault (exit -11)."""
    result, _ = run_bounded(tmp_path, "[" * 100_000 + "]" * 100_000 + "\n")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error[E104]: document nests deeper than 64 levels" in result.stderr


def test_moderately_deep_document_names_the_limit(tmp_path):
    result, _ = run_bounded(tmp_path, "a: " + "[" * 100 + "]" * 100 + "\n")
    assert result.returncode == 2
    assert "hostile.yaml:1:" in result.stderr and "nests deeper than 64 levels" in result.stderr


def test_fifty_megabyte_spec_is_refused_quickly(tmp_path):
    result, seconds = run_bounded(tmp_path, "# " + "x" * (50 * 1024 * 1024) + "\n")
    assert result.returncode == 2 and seconds < 10
    assert "error[E103]: spec is 52,428,803 bytes" in result.stderr


def test_binary_file_is_refused(tmp_path):
    result, _ = run_bounded(tmp_path, b"specc: 1\nname: \xff\xfe\n")
    assert result.returncode == 2
    assert "error[E107]: hostile.yaml is not UTF-8 text (byte 15)" in result.stderr


def test_directory_instead_of_file(tmp_path):
    run = specc("validate", str(tmp_path))
    assert run.code == 2 and "error[E107]: cannot read" in run.stderr


def test_output_path_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("")
    run = specc("build", str(SPECS / "huge_fc.yaml"), "-o", str(tmp_path / "out"))
    assert run.code == 2 and "is not a directory" in run.stderr
